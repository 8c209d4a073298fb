"""The committed reference results (``results/*/``): every table is what the renderer makes of the folder's
own records today, so a change to the tables' layout or to a folder's records cannot leave a stale table
behind. Refresh a folder with ``python run_bench.py report results/<folder>``."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pytest

from reporting.records import read_records
from reporting.tables import TABLE_FILES

RESULTS = Path(__file__).resolve().parents[1] / "results"
TABLES = [(folder.name, name) for folder in sorted(RESULTS.iterdir()) if (folder / "results.jsonl").is_file()
          for name in sorted(TABLE_FILES) if (folder / name).is_file()]


def test_reference_folders_are_found():
    assert {folder for folder, _ in TABLES} >= {"cmnist-paper", "cmnist-lff-paper", "cifar10c-short"}


@pytest.mark.parametrize(("folder", "name"), TABLES)
def test_committed_table_matches_its_records(folder, name):
    records = read_records(RESULTS / folder / "results.jsonl")
    assert (RESULTS / folder / name).read_text() == TABLE_FILES[name](records), (
        f"results/{folder}/{name} is stale: python run_bench.py report results/{folder}")


def test_cmnist_paper_is_the_full_grid_at_three_seeds_from_one_commit():
    """Issue 26: the main table on PGD's protocol, every method x ratio x seed exactly once, from one commit."""
    records = read_records(RESULTS / "cmnist-paper" / "results.jsonl")
    cells = Counter((r["method"], r["ratio"], r["seed"]) for r in records)
    assert cells == Counter(itertools.product(("erm", "lff", "jtt", "dfa", "pgd"), (0.005, 0.01, 0.05), (0, 1, 2)))
    assert {r["env"]["git_commit"] for r in records} == {records[0]["env"]["git_commit"]}
    assert {(r["status"], r["preset"], r["schedule"], r["numerics"]) for r in records} == {
        ("ok", "paper", "paper", "portable")}
