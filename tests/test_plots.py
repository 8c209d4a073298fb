"""Each plot is a valid PNG showing the expected series."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from reporting.plots import accuracy_vs_ratio, time_per_phase, training_curves
from reporting.records import read_records

RECORDS = read_records(Path(__file__).parent / "fixtures" / "records.jsonl")


def with_epochs(records):
    out = json.loads(json.dumps(records))
    for record in out:
        if record["status"] == "ok":
            record["epochs"] = [{"valid_acc": 0.5}, {"valid_acc": record["test_acc"]}]
    return out


def assert_png(path: Path):
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 300 and image.size[1] > 200


def test_accuracy_vs_ratio(tmp_path):
    drawn = accuracy_vs_ratio(RECORDS, tmp_path / "a.png")
    assert_png(tmp_path / "a.png")
    assert set(drawn) == {"cmnist/erm", "cmnist/pgd"}
    assert drawn["cmnist/erm"] == [(0.5, pytest.approx(36.0)), (5.0, pytest.approx(81.0))]


def test_training_curves_one_run_per_method(tmp_path):
    drawn = training_curves(with_epochs(RECORDS), tmp_path / "c.png")
    assert_png(tmp_path / "c.png")
    assert [label.split(" ")[0] for label in drawn] == ["erm", "pgd"]
    assert all(len(series) == 2 for series in drawn.values())


def test_runs_without_validation_are_drawn_from_their_oracle_curve(tmp_path):
    records = with_epochs(RECORDS)
    for record in records:
        if record["method"] == "pgd":
            record["epochs"] = [{"valid_acc": None}]
            record["oracle"] = {"curve": [[1, 0.25], [500, 0.5], [900, 0.75]]}
    drawn = training_curves(records, tmp_path / "c.png")
    assert_png(tmp_path / "c.png")
    pgd = next(series for label, series in drawn.items() if label.startswith("pgd"))
    assert pgd == [25.0, 50.0, 75.0]


def test_time_per_phase_stacks_mean_seconds(tmp_path):
    means = time_per_phase(RECORDS, tmp_path / "t.png")
    assert_png(tmp_path / "t.png")
    assert means["erm"]["train"] == pytest.approx((7.5 * 3 + 10.0) / 4)  # the superseded duplicate is out
    assert set(means["pgd"]) == {"data", "train", "eval"}
