"""Across seeds: mean ± std (n) with a 95 % confidence interval per cell, and for each dataset x ratio
whether the best method's lead over the runner-up is significant.

The interval is the t-interval of the mean over seeds (mean ± t(0.975, n - 1) * std / sqrt(n)). The test
is a two-sided paired t-test (``scipy.stats.ttest_rel``) on the seeds both methods ran, at level 0.05:
seeds share their dataset (``data_seed``) and seed, so pairing removes the seed's own effect.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from scipy import stats
from tabulate import tabulate

from reporting.tables import ACCURACY_METRICS, ok_runs, ratio_label

ALPHA = 0.05
TEST_NAME = "two-sided paired t-test over seeds (scipy.stats.ttest_rel), alpha 0.05"


def confidence_halfwidth(std: float, n: int) -> float | None:
    """Half-width of the 95 % t-interval of a mean over n seeds; None for n < 2."""
    if n < 2 or std != std:
        return None
    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def paired_test(a: list[float], b: list[float]) -> float | None:
    """p-value of the paired t-test of a against b (same seeds, same order); None for fewer than 2 pairs."""
    if len(a) < 2:
        return None
    differences = [x - y for x, y in zip(a, b, strict=True)]
    if max(differences) == min(differences):  # no spread: the t statistic is undefined
        return 0.0 if differences[0] != 0 else 1.0
    return float(stats.ttest_rel(a, b).pvalue)


def leads(records: list[dict[str, Any]], metric: str = "test_acc") -> list[dict[str, Any]]:
    """Per dataset x ratio: the best method by mean ``metric``, the runner-up, the lead in points, the seeds
    paired and the test's p-value (None when it cannot be run)."""
    runs = ok_runs(records).dropna(subset=[metric])
    out = []
    for (dataset, ratio), cell in runs.groupby(["dataset", "ratio"], sort=False):
        means = cell.groupby("method", sort=False)[metric].mean().sort_values(ascending=False)
        if len(means) < 2:
            continue
        best, second = means.index[0], means.index[1]
        by_seed = cell.pivot_table(index="seed", columns="method", values=metric, aggfunc="last")
        paired = by_seed[[best, second]].dropna()
        p_value = paired_test(paired[best].tolist(), paired[second].tolist())
        out.append({
            "dataset": dataset, "ratio": ratio, "best": best, "runner_up": second,
            "lead": float(means.iloc[0] - means.iloc[1]) * 100, "pairs": len(paired), "p_value": p_value,
            "significant": None if p_value is None else p_value < ALPHA,
        })
    return out


def render_seed_statistics(records: list[dict[str, Any]], metric: str = "test_acc") -> str:
    """Markdown: per method and dataset x ratio, mean ± std (n) [95 % CI], then the lead of the best."""
    runs = ok_runs(records).dropna(subset=[metric])
    if runs.empty:
        return "(no completed runs)\n"
    grouped = runs.groupby(["method", "dataset", "ratio"], sort=False)[metric]
    summary = grouped.agg(mean="mean", std="std", n="count").reset_index()
    table: dict[str, dict[str, str]] = {}
    for row in summary.itertuples(index=False):
        mean, std = row.mean * 100, row.std * 100
        half = confidence_halfwidth(std, int(row.n))
        interval = "" if half is None else f" [{mean - half:.2f}, {mean + half:.2f}]"
        text = f"{mean:.2f}" if half is None else f"{mean:.2f} ± {std:.2f} ({row.n}){interval}"
        table.setdefault(row.method, {})[f"{row.dataset} {ratio_label(row.ratio)}"] = text
    body = tabulate(pd.DataFrame(table).T.fillna("–"), headers="keys", tablefmt="github", disable_numparse=True)
    lines = []
    for lead in leads(records, metric):
        where = f"{lead['dataset']} {ratio_label(lead['ratio'])}"
        if lead["p_value"] is None:
            verdict = f"not tested ({lead['pairs']} paired seed{'s' if lead['pairs'] != 1 else ''})"
        else:
            verdict = (f"{'significant' if lead['significant'] else 'not significant'} "
                       f"(p = {lead['p_value']:.3g}, {lead['pairs']} paired seeds)")
        marker = " *" if lead["significant"] else ""
        lines.append(f"- {where}: {lead['best']}{marker} leads {lead['runner_up']} by {lead['lead']:+.2f} points, "
                     f"{verdict}")
    title = ACCURACY_METRICS[metric]
    return (f"{title}: mean ± sample std (n seeds) [95 % t-interval of the mean].\n\n{body}\n\n"
            f"Best against runner-up ({TEST_NAME}; * = significant):\n\n" + "\n".join(lines) + "\n")
