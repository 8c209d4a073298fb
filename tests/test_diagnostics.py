"""Diagnostics: conflict-detection metrics, JTT's set figures, the bias probe, the group map, significance,
and reports of records made before the diagnostics existed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import DeviceSplit
from bench.diagnostics import bias_probe, conflict_detection, ranking_quality, set_quality
from bench.metrics import evaluate
from datasets import Split
from reporting.diagnostics import render_bias_probe, render_conflict_detection
from reporting.plots import conflict_pr_curves, group_accuracy_maps
from reporting.records import read_records
from reporting.significance import (
    confidence_halfwidth,
    focus_against_each,
    gaps_to_bias_supervised,
    leads,
    paired_test,
    render_seed_statistics,
)

FIXTURE = read_records(Path(__file__).parent / "fixtures" / "records.jsonl")
POSITIVE = np.array([0, 0, 1, 0, 1, 0, 0, 1, 0, 0], dtype=bool)


def test_perfect_reversed_and_random_rankings():
    perfect = ranking_quality(POSITIVE.astype(float) + np.linspace(0, 0.1, 10), POSITIVE)
    assert perfect["roc_auc"] == 1.0 and perfect["average_precision"] == 1.0
    assert all(precision == 1.0 for _, precision in perfect["pr_curve"])
    reversed_ = ranking_quality(-POSITIVE.astype(float), POSITIVE)
    assert reversed_["roc_auc"] == 0.0 and reversed_["average_precision"] < 0.5
    rng = np.random.default_rng(0)
    labels = rng.random(20_000) < 0.05
    random = ranking_quality(rng.random(20_000), labels)
    assert abs(random["roc_auc"] - 0.5) < 0.02
    assert abs(random["average_precision"] - labels.mean()) < 0.01  # AP of chance = the prevalence
    assert random["prevalence"] == pytest.approx(labels.mean())
    assert ranking_quality(np.ones(4), np.zeros(4, dtype=bool))["roc_auc"] is None


def test_jtt_error_set_precision_recall_and_size_by_hand():
    chosen = np.array([0, 0, 1, 1, 0, 0, 0, 1, 0, 1], dtype=bool)  # hits 2 of 3 positives, with 2 false
    quality = set_quality(chosen, POSITIVE)
    assert (quality["size"], quality["precision"], quality["recall"]) == (4, 0.5, pytest.approx(2 / 3))
    signals = {"error_set": torch.from_numpy(chosen), "loss": torch.arange(10.0)}
    detected = conflict_detection(signals, torch.from_numpy(POSITIVE))
    assert detected["error_set"]["precision"] == 0.5 and "precision" not in detected["loss"]


def test_bias_probe_finds_bias_in_separable_features_and_not_in_shuffled_ones():
    rng = np.random.default_rng(0)
    biases = rng.integers(0, 4, 2000)
    separable = np.eye(4)[biases] * 3 + rng.normal(0, 0.3, (2000, 4))
    noise = rng.normal(0, 1, (2000, 8))
    found = bias_probe(np.hstack([separable, noise]), biases)
    assert found["accuracy"] > 0.97 and (found["n_fit"], found["n_score"]) == (1000, 1000)
    shuffled = bias_probe(np.hstack([separable[rng.permutation(2000)], noise]), biases)
    assert abs(shuffled["accuracy"] - 0.25) < 0.06 and shuffled["chance"] == pytest.approx(0.25, abs=0.05)


def group_record(method, seed, matrix):
    return {"key": f"{method}{seed}", "method": method, "dataset": "cmnist", "ratio": 0.01, "seed": seed,
            "status": "ok", "test_acc": 0.5, "test_group_acc": matrix}


def test_group_accuracy_map_has_the_expected_cells(tmp_path):
    # 2 classes: the (1, 0) cell is empty in seed 0 and 0.25 in seed 1; a cell empty everywhere stays blank.
    records = [group_record("erm", 0, [[1.0, 0.5], [None, 0.0]]), group_record("erm", 1, [[0.5, None], [0.25, 1.0]]),
               group_record("pgd", 0, [[1.0, 1.0], [1.0, None]])]
    drawn = group_accuracy_maps(records, tmp_path)
    assert list(drawn) == ["group_accuracy_cmnist_1pct.png"]
    np.testing.assert_allclose(drawn["group_accuracy_cmnist_1pct.png"]["erm"], [[75.0, 50.0], [25.0, 50.0]])
    pgd = drawn["group_accuracy_cmnist_1pct.png"]["pgd"]
    assert pgd[0, 0] == 100.0 and np.isnan(pgd[1, 1])
    with Image.open(tmp_path / "group_accuracy_cmnist_1pct.png") as image:
        assert image.format == "PNG" and image.size[0] > 400


def test_evaluation_records_the_group_map_by_target_and_bias():
    targets, biases = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 0])
    split = DeviceSplit(Split(np.zeros((5, 1, 1, 1), np.uint8), targets, biases), torch.device("cpu"))
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 0, 1]), 2).float()
    stats = evaluate(lambda x: logits[: len(x)], split, num_classes=2)
    assert stats["group_acc"] == [[1.0, 0.0], [1.0, 0.5]]
    single = DeviceSplit(Split(np.zeros((1, 1, 1, 1), np.uint8), np.array([1]), np.array([1])), torch.device("cpu"))
    assert evaluate(lambda x: logits[:1] * 0, single, num_classes=2)["group_acc"] == [[None, None], [None, 0.0]]


def seed_record(method, ratio, seed, acc):
    return {"key": f"{method}{ratio}{seed}", "method": method, "dataset": "cmnist", "ratio": ratio, "seed": seed,
            "status": "ok", "test_acc": acc, "test_conflicting_acc": acc}


def test_significance_marks_a_consistent_lead_and_not_a_noisy_one():
    # 1 %: pgd beats lff by 2 points on every seed, give or take 0.1 -> significant.
    # 5 %: pgd's lead is +0.2 on average, but seeds disagree -> not significant.
    records = [seed_record("pgd", 0.01, s, 0.90 + d) for s, d in enumerate((0.001, -0.001, 0.0))]
    records += [seed_record("lff", 0.01, s, 0.88 + d) for s, d in enumerate((0.0, 0.001, -0.001))]
    records += [seed_record("pgd", 0.05, s, a) for s, a in enumerate((0.95, 0.93, 0.966))]
    records += [seed_record("lff", 0.05, s, a) for s, a in enumerate((0.93, 0.96, 0.95))]
    by_ratio = {lead["ratio"]: lead for lead in leads(records)}
    assert by_ratio[0.01]["best"] == "pgd" and by_ratio[0.01]["significant"] is True
    assert by_ratio[0.01]["lead"] == pytest.approx(2.0)
    assert by_ratio[0.05]["significant"] is False and by_ratio[0.05]["pairs"] == 3
    text = render_seed_statistics(records)
    assert "cmnist 1%: pgd * leads lff by +2.00 points, significant" in text
    assert "cmnist 5%: pgd leads lff" in text and "not significant" in text
    assert "paired t-test" in text


def test_pgd_against_each_method_and_every_method_against_the_bias_supervised_bound():
    # pgd: 0.90, 0.92, 0.94; lc: 2 points lower on every seed; dpr: the same mean as pgd, seeds shuffled;
    # groupdro (bias-supervised): 0.95 on every seed.
    pgd = (0.90, 0.92, 0.94)
    records = [seed_record("pgd", 0.01, s, a) for s, a in enumerate(pgd)]
    records += [seed_record("lc", 0.01, s, a - 0.02) for s, a in enumerate(pgd)]
    records += [seed_record("dpr", 0.01, s, a) for s, a in enumerate((0.94, 0.90, 0.92))]
    records += [{**seed_record("groupdro", 0.01, s, 0.95), "bias_supervised": True} for s in range(3)]
    each = {row["other"]: row for row in focus_against_each(records)}
    assert set(each) == {"lc", "dpr"}  # never the upper bound
    assert each["lc"]["difference"] == pytest.approx(2.0) and each["lc"]["p_value"] == 0.0
    assert each["dpr"]["difference"] == pytest.approx(0.0, abs=1e-9) and each["dpr"]["significant"] is False
    gaps = {row["method"]: row["gap"] for row in gaps_to_bias_supervised(records)}
    assert gaps == pytest.approx({"pgd": -3.0, "lc": -5.0, "dpr": -3.0})
    text = render_seed_statistics(records)
    assert "PGD minus each other method" in text and "| lc  | +2.00 (p = 0 *)" in text
    assert "Each method minus groupdro (bias-supervised, upper bound)" in text and "| lc  | -5.00" in text
    assert "Each method minus" not in render_seed_statistics(records[:-3])  # no bound ran: no gap table


def test_confidence_interval_and_paired_test_edge_cases():
    assert confidence_halfwidth(1.0, 3) == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    assert confidence_halfwidth(1.0, 1) is None
    assert paired_test([1.0], [0.0]) is None
    assert paired_test([1.0, 2.0], [0.0, 1.0]) == 0.0  # the same lead on every seed
    assert "not tested (1 paired seed)" in render_seed_statistics(
        [seed_record("pgd", 0.01, 0, 0.9), seed_record("erm", 0.01, 0, 0.5)])


def diagnosed(method, seed, auc):
    curve = [[r, 1.0 - 0.5 * r] for r in np.linspace(0, 1, 51).tolist()]
    detection = {"train_loss": {"roc_auc": auc, "average_precision": auc / 2, "prevalence": 0.01, "pr_curve": curve}}
    if method == "jtt":
        detection["error_set"] = {"roc_auc": 0.8, "average_precision": 0.3, "prevalence": 0.01, "pr_curve": curve,
                                  "precision": 0.6, "recall": 0.9, "size": 150}
    return {"key": f"{method}{seed}", "method": method, "dataset": "cmnist", "ratio": 0.01, "seed": seed,
            "status": "ok", "test_acc": 0.5, "diagnostics": {
                "conflict_detection": detection,
                "bias_probe": {"accuracy": 0.4, "chance": 0.1, "n_fit": 5, "n_score": 5, "feature_dim": 3}}}


def test_diagnostics_tables_average_seeds_and_say_not_recorded_for_old_records(tmp_path):
    records = [diagnosed("erm", 0, 0.9), diagnosed("erm", 1, 0.7), diagnosed("jtt", 0, 0.6)]
    old = json.loads(json.dumps(FIXTURE[0]))
    old.update(method="pgd", ratio=0.01)
    table = render_conflict_detection([*records, old])
    assert "| erm      | train_loss (baseline) | 0.800     | 0.400 |" in table
    jtt = "| jtt      | error_set             | 0.800     | 0.300 | 0.600       | 0.900    | 150    | 1       |"
    assert jtt in table
    assert "| pgd      | not recorded" in table
    probe = render_bias_probe([*records, old])
    assert "40.0 (chance 10.0)" in probe and "not recorded" in probe
    drawn = conflict_pr_curves(records, tmp_path)
    assert set(drawn["conflict_pr_cmnist_1pct.png"]) == {"erm: train_loss", "jtt: train_loss", "jtt: error_set"}


def test_report_on_records_without_diagnostics_says_not_recorded(tmp_path):
    from bench.cli import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text((Path(__file__).parent / "fixtures" / "records.jsonl").read_text())
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "## Diagnostics" in report and "not recorded" in report
    assert "## Across seeds" in report
