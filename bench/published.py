"""Published accuracies, read from ``results/reference/published.csv``, set next to ours.

One CSV row is one number a paper prints: the cell (dataset, ratio, method, metric), the value and its
std in percent, and where it comes from (paper, table) and under which protocol it was measured, since a
published number is only comparable to ours when the protocols match. ``metric`` uses the records'
names (``test_acc``: the unbiased test split; ``test_conflicting_acc``: its bias-conflicting part).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from bench.tables import ACCURACY_METRICS, ratio_label, summarize

PUBLISHED_CSV = Path(__file__).resolve().parents[1] / "results" / "reference" / "published.csv"
COLUMNS = ["dataset", "ratio", "method", "metric", "value", "std", "paper", "table", "protocol", "note"]


class PublishedError(ValueError):
    """A malformed published-numbers file; the message names the file, the line and the problem."""


def load_published(path: Path | None = None) -> pd.DataFrame:
    """The rows of ``path`` (default ``PUBLISHED_CSV``; an empty frame when it does not exist), validated."""
    path = PUBLISHED_CSV if path is None else path
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    if list(table.columns) != COLUMNS:
        raise PublishedError(f"{path}: header must be {','.join(COLUMNS)}")
    for line, row in zip(range(2, len(table) + 2), table.itertuples(index=False), strict=True):
        where = f"{path} line {line}"
        if row.metric not in ACCURACY_METRICS:
            raise PublishedError(f"{where}: unknown metric {row.metric!r}; valid: {', '.join(ACCURACY_METRICS)}")
        if not row.paper or not row.table:
            raise PublishedError(f"{where}: every number needs its paper and table")
        try:
            ratio, value = float(row.ratio), float(row.value)
            std = float(row.std) if row.std else None
        except ValueError as error:
            raise PublishedError(f"{where}: {error}") from None
        if not 0 < ratio < 1 or not 0 <= value <= 100 or (std is not None and std < 0):
            raise PublishedError(f"{where}: ratio must be in (0, 1), value in [0, 100] and std >= 0")
    table["ratio"] = table["ratio"].astype(float)
    table["value"] = table["value"].astype(float)
    table["std"] = pd.to_numeric(table["std"].replace("", None))
    return table


def render_comparison(records: list[dict[str, Any]], published: pd.DataFrame) -> str:
    """Markdown: every cell with both our result and a published number, and the difference."""
    ours = summarize(records)
    if ours.empty or published.empty:
        return "(no published numbers on file for these cells)\n"
    both = ours.merge(published, on=["dataset", "ratio", "method", "metric"])
    if both.empty:
        return "(no published numbers on file for these cells)\n"
    rows = [{
        "method": r.method, "dataset": r.dataset, "ratio": ratio_label(r.ratio), "metric": r.metric,
        "ours": f"{r.mean:.2f}" if r.n < 2 else f"{r.mean:.2f} ± {r.std_x:.2f} (n={r.n})",
        "published": f"{r.value:.2f}" if pd.isna(r.std_y) else f"{r.value:.2f} ± {r.std_y:.2f}",
        "ours − published": f"{r.mean - r.value:+.2f}",
        "source": f"{r.paper}, {r.table}", "published protocol": r.protocol,
    } for r in both.itertuples(index=False)]
    body = tabulate(pd.DataFrame(rows), headers="keys", tablefmt="github", showindex=False, disable_numparse=True)
    return body + "\n\nA difference is meaningful only where the published protocol matches this suite's.\n"
