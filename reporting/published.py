"""Published accuracies, read from ``results/reference/published.csv``, set next to ours.

One CSV row is one number a paper prints: the cell (dataset, ratio, method, metric), the value and its
std in percent, and where it comes from (paper, table) and under which protocol it was measured, since a
published number is only comparable to ours when the protocols match. ``metric`` uses the records'
names (``test_acc``: the unbiased test split; ``test_conflicting_acc``: its bias-conflicting part).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from datasets import DATASETS
from methods import METHODS
from reporting.tables import (
    ACCURACY_METRICS,
    BIAS_SUPERVISED_LABEL,
    ORACLE_METRICS,
    format_cell,
    ratio_label,
    summarize,
)

PUBLISHED_CSV = Path(__file__).resolve().parents[1] / "results" / "reference" / "published.csv"
PUBLISHED_METRICS = tuple(m for m in ACCURACY_METRICS if m not in ORACLE_METRICS)
COLUMNS = ["dataset", "ratio", "method", "metric", "value", "std", "paper", "table", "protocol", "note"]


class PublishedError(ValueError):
    """A malformed published-numbers file; the message names the file, the line and the problem."""


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite")
    return value


def _row(fields: list[str]) -> dict[str, Any]:
    row = dict(zip(COLUMNS, (f.strip() for f in fields), strict=True))
    if row["dataset"] not in DATASETS:
        raise ValueError(f"unknown dataset {row['dataset']!r}; valid: {', '.join(DATASETS)}")
    if row["method"] not in METHODS:
        raise ValueError(f"unknown method {row['method']!r}; valid: {', '.join(METHODS)}")
    if row["metric"] not in PUBLISHED_METRICS:
        raise ValueError(f"unknown metric {row['metric']!r}; valid: {', '.join(PUBLISHED_METRICS)}")
    if not (row["paper"] and row["table"] and row["protocol"]):
        raise ValueError("every number needs its paper, table and protocol")
    row["ratio"] = _number(row["ratio"], "ratio")
    row["value"] = _number(row["value"], "value")
    row["std"] = _number(row["std"], "std") if row["std"] else math.nan
    if not 0 < row["ratio"] < 0.5:
        raise ValueError("ratio is the bias-conflicting fraction, in (0, 0.5): 0.005 for 0.5 %")
    if not 0 <= row["value"] <= 100 or row["std"] < 0:
        raise ValueError("value must be in [0, 100] (percent) and std >= 0")
    return row


def load_published(path: Path | None = None) -> pd.DataFrame:
    """The rows of ``path`` (default ``PUBLISHED_CSV``; an empty frame when it does not exist), validated;
    a bad row raises PublishedError naming its line."""
    path = PUBLISHED_CSV if path is None else path
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader, None)
            if header != COLUMNS:
                raise PublishedError(f"{path} line 1: header must be {','.join(COLUMNS)}")
            for fields in reader:
                if not any(f.strip() for f in fields):
                    continue
                try:
                    if len(fields) != len(COLUMNS):
                        raise ValueError(f"{len(fields)} fields, expected {len(COLUMNS)}")
                    rows.append(_row(fields))
                except ValueError as error:
                    raise PublishedError(f"{path} line {reader.line_num}: {error}") from None
        except (csv.Error, UnicodeDecodeError) as error:
            raise PublishedError(f"{path}: {error}") from None
    return pd.DataFrame(rows, columns=COLUMNS)


def render_comparison(records: list[dict[str, Any]], published: pd.DataFrame) -> str:
    """Markdown: every cell with both our result and a published number: ours as selected (never on
    test), the published value, the difference, and for unbiased accuracy our oracle (best test accuracy
    over the run's evaluations, selected on test, as the DFA code selects) with its difference."""
    cell = ["dataset", "ratio", "method", "metric"]
    ours = summarize(records)
    ours = ours[ours["n"] > 0].assign(method=lambda t: t["method"].str.removesuffix(BIAS_SUPERVISED_LABEL))
    selected = ours[~ours["metric"].isin(ORACLE_METRICS)]
    oracle = ours[ours["metric"] == "oracle_test_acc"].assign(metric="test_acc")
    both = selected.merge(published, on=cell) if not selected.empty else selected
    if both.empty:
        return "(no published numbers on file for these cells)\n"
    both = both.merge(oracle[[*cell, "mean", "std", "n"]].rename(columns=lambda c: c if c in cell else f"oracle_{c}"),
                      on=cell, how="left")
    rows, sources = [], {}
    for r in both.sort_values(["dataset", "ratio"], kind="stable").itertuples(index=False):
        has_oracle = not pd.isna(r.oracle_mean)
        # A paper's protocol is long and the same for many cells: printed once, under the table.
        source = f"{r.paper}, {r.table}: {r.protocol}" + (f" ({r.note})" if r.note else "")
        number = sources.setdefault(source, len(sources) + 1)
        rows.append({
            "method": r.method, "dataset": r.dataset, "ratio": ratio_label(r.ratio), "metric": r.metric,
            "ours (selected)": format_cell(r.mean, r.std_x, r.n, r.n > 1),
            "published": f"{r.value:.2f}" if pd.isna(r.std_y) else f"{r.value:.2f} ± {r.std_y:.2f}",
            "ours − published": f"{r.mean - r.value:+.2f}",
            "oracle (selected on test)": (format_cell(r.oracle_mean, r.oracle_std, int(r.oracle_n), r.oracle_n > 1)
                                          if has_oracle else "not recorded"),
            "oracle − published": f"{r.oracle_mean - r.value:+.2f}" if has_oracle else "–",
            "source": f"[{number}]",
        })
    body = tabulate(pd.DataFrame(rows), headers="keys", tablefmt="github", showindex=False, disable_numparse=True)
    notes = "\n".join(f"- [{number}] {source}" for source, number in sources.items())
    return (body + "\n\nSources and their protocols:\n\n" + notes + "\n\nA difference is meaningful only where "
            "the published protocol matches this suite's, selection included: a number published as the best "
            "test accuracy during training compares with the oracle column (selected on test), never with "
            "ours as selected.\n")
