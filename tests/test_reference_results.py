"""The committed reference results (``results/*/``): every table is what the renderer makes of the folder's
own records today, so a change to the tables' layout or to a folder's records cannot leave a stale table
behind. Refresh a folder with ``python run_bench.py report results/<folder>``."""

from __future__ import annotations

from pathlib import Path

import pytest

from reporting.records import read_records
from reporting.tables import render_csv, render_latex, render_markdown, render_timing

RESULTS = Path(__file__).resolve().parents[1] / "results"
RENDERERS = {
    "table.md": render_markdown,
    "table.csv": render_csv,
    "table.tex": render_latex,
    "timing.md": render_timing,
}
TABLES = [(folder.name, name) for folder in sorted(RESULTS.iterdir()) if (folder / "results.jsonl").is_file()
          for name in sorted(RENDERERS) if (folder / name).is_file()]


def test_reference_folders_are_found():
    assert {folder for folder, _ in TABLES} >= {"cmnist-paper", "cmnist-lff-paper", "cifar10c-short"}


@pytest.mark.parametrize(("folder", "name"), TABLES)
def test_committed_table_matches_its_records(folder, name):
    records = read_records(RESULTS / folder / "results.jsonl")
    assert (RESULTS / folder / name).read_text() == RENDERERS[name](records), (
        f"results/{folder}/{name} is stale: python run_bench.py report results/{folder}")
