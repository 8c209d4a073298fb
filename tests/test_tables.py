"""Table rendering pinned by golden files. Regenerate after an intended change with
``UPDATE_GOLDEN=1 pytest tests/test_tables.py`` and review the diff."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reporting.records import read_records
from reporting.tables import TABLE_FILES, render_markdown, render_timing, selection_rules, summarize

HERE = Path(__file__).parent
RECORDS = read_records(HERE / "fixtures" / "records.jsonl")


@pytest.mark.parametrize("name", sorted(TABLE_FILES))
def test_rendering_matches_golden(name):
    rendered = TABLE_FILES[name](RECORDS)
    golden = HERE / "golden" / name
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(rendered)
    assert rendered == golden.read_text()


def test_summary_statistics():
    summary = summarize(RECORDS).set_index(["method", "ratio", "metric"])
    erm = summary.loc[("erm", 0.05, "test_acc")]
    assert erm["n"] == 2  # the superseded duplicate and nothing else dropped
    assert erm["mean"] == pytest.approx(81.0)
    assert erm["std"] == pytest.approx(0.7071, abs=1e-4)
    assert summary.loc[("pgd", 0.05, "test_acc")]["n"] == 1  # the failed seed is left out


def test_empty_records_render():
    assert "no completed runs" in render_markdown([])
    assert "no completed runs" in render_timing([])


def test_selection_rules_name_the_methods_when_they_differ():
    assert selection_rules(RECORDS) == ["cmnist: best_valid_loss"]
    mixed = [*RECORDS, {**RECORDS[0], "method": "lff", "selection": "last_epoch"}]
    assert selection_rules(mixed) == ["cmnist: best_valid_loss (erm, pgd); last_epoch (lff)"]
    assert "cmnist: best_valid_loss (erm, pgd); last_epoch (lff)." in render_markdown(mixed)


def test_cells_name_their_seed_count_only_when_the_counts_differ():
    mixed = render_markdown(RECORDS)  # ERM has two seeds per cell, PGD one
    assert "| erm      | 36.00 ± 1.24 (n=2) | 81.00 ± 0.71 (n=2) |" in mixed
    assert "| pgd      | 62.01 (n=1)" in mixed
    uniform = render_markdown([r for r in RECORDS if r["method"] == "erm"])
    assert "| erm      | 36.00 ± 1.24  | 81.00 ± 0.71 |" in uniform
    assert "(n=" not in uniform
