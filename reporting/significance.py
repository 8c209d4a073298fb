"""Across seeds: mean ± std (n) with a 95 % confidence interval per cell, and for each dataset x ratio
whether the best method's lead over the runner-up is significant, whether PGD (the suite's headline
method, ``FOCUS``) differs significantly from the strongest other method and from each other method, and
how far every method stands from a bias-supervised upper bound (GroupDRO) where one ran.

The interval is the t-interval of the mean over seeds (mean ± t(0.975, n - 1) * std / sqrt(n)). The test
is a two-sided paired t-test (``scipy.stats.ttest_rel``) on the seeds both methods ran, at level 0.05:
seeds share their dataset (``data_seed``) and seed, so pairing removes the seed's own effect.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
from tabulate import tabulate

from reporting.tables import ACCURACY_METRICS, ok_runs, ratio_label

ALPHA = 0.05
FOCUS = "pgd"
TEST_NAME = "two-sided paired t-test over seeds (scipy.stats.ttest_rel), alpha 0.05"


def confidence_halfwidth(std: float, n: int) -> float | None:
    """Half-width of the 95 % t-interval of a mean over n seeds; None for n < 2."""
    if n < 2 or std != std:
        return None
    from scipy import stats  # where used: most of a second of start-up, which a sweep needs only at its end

    return float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))


def paired_test(a: list[float], b: list[float]) -> float | None:
    """p-value of the paired t-test of a against b (same seeds, same order); None for fewer than 2 pairs."""
    if len(a) < 2:
        return None
    differences = [x - y for x, y in zip(a, b, strict=True)]
    if max(differences) == min(differences):  # no spread: the t statistic is undefined
        return 0.0 if differences[0] != 0 else 1.0
    from scipy import stats

    return float(stats.ttest_rel(a, b).pvalue)


def _compare(cell: pd.DataFrame, first: str, second: str, metric: str) -> dict[str, Any]:
    """``first`` against ``second`` in one dataset x ratio: the difference of means in points, the seeds
    both ran and the paired test's p-value (None when it cannot be run)."""
    means = cell.groupby("method", sort=False)[metric].mean()
    by_seed = cell.pivot_table(index="seed", columns="method", values=metric, aggfunc="last")
    paired = by_seed[[first, second]].dropna()
    p_value = paired_test(paired[first].tolist(), paired[second].tolist())
    return {"difference": float(means[first] - means[second]) * 100, "pairs": len(paired), "p_value": p_value,
            "significant": None if p_value is None else p_value < ALPHA}


def leads(records: list[dict[str, Any]], metric: str = "test_acc") -> list[dict[str, Any]]:
    """Per dataset x ratio: the best method by mean ``metric``, the runner-up, the lead in points, the seeds
    paired and the test's p-value (None when it cannot be run)."""
    runs = ok_runs(records).dropna(subset=[metric])
    runs = runs[~runs["bias_supervised"]]  # an upper bound, not a competitor
    out = []
    for (dataset, ratio), cell in runs.groupby(["dataset", "ratio"], sort=False):
        means = cell.groupby("method", sort=False)[metric].mean().sort_values(ascending=False)
        if len(means) < 2:
            continue
        best, second = means.index[0], means.index[1]
        result = _compare(cell, best, second, metric)
        out.append({"dataset": dataset, "ratio": ratio, "best": best, "runner_up": second,
                    "lead": result.pop("difference"), **result})
    return out


def focus_against_best_other(records: list[dict[str, Any]], metric: str = "test_acc",
                             focus: str = FOCUS) -> list[dict[str, Any]]:
    """Per dataset x ratio where ``focus`` ran: the strongest other method by mean ``metric`` (the
    runner-up when ``focus`` leads), ``focus`` minus it in points, the seeds paired and the p-value."""
    runs = ok_runs(records).dropna(subset=[metric])
    runs = runs[~runs["bias_supervised"]]  # the best method that uses no bias labels
    out = []
    for (dataset, ratio), cell in runs.groupby(["dataset", "ratio"], sort=False):
        others = cell[cell["method"] != focus].groupby("method", sort=False)[metric].mean()
        if focus not in set(cell["method"]) or others.empty:
            continue
        other = others.sort_values(ascending=False).index[0]
        out.append({"dataset": dataset, "ratio": ratio, "other": other, **_compare(cell, focus, other, metric)})
    return out


def focus_against_each(records: list[dict[str, Any]], metric: str = "test_acc",
                       focus: str = FOCUS) -> list[dict[str, Any]]:
    """Per dataset x ratio where ``focus`` ran: ``focus`` against every other method that uses no bias labels,
    ``focus`` minus it in points, the seeds paired and the p-value, methods in the tables' order."""
    runs = ok_runs(records).dropna(subset=[metric])
    runs = runs[~runs["bias_supervised"]]
    out = []
    for (dataset, ratio), cell in runs.groupby(["dataset", "ratio"], sort=False):
        if focus in set(cell["method"]):
            out += [{"dataset": dataset, "ratio": ratio, "other": other, **_compare(cell, focus, other, metric)}
                    for other in dict.fromkeys(cell["method"]) if other != focus]
    return out


def gaps_to_bias_supervised(records: list[dict[str, Any]], metric: str = "test_acc") -> list[dict[str, Any]]:
    """Per dataset x ratio and bias-supervised method that ran there (the ``bound``): every other method's
    mean minus the bound's mean, in points (negative: below the upper bound)."""
    runs = ok_runs(records).dropna(subset=[metric])
    out = []
    for (dataset, ratio), cell in runs.groupby(["dataset", "ratio"], sort=False):
        means = cell.groupby("method", sort=False)[metric].mean()
        for bound in dict.fromkeys(cell.loc[cell["bias_supervised"], "method"]):
            out += [{"dataset": dataset, "ratio": ratio, "method": method, "bound": bound,
                     "gap": float(mean - means[bound]) * 100} for method, mean in means.items() if method != bound]
    return out


def _grid(cells: list[tuple[str, str, str]]) -> str:
    """A Markdown table from (row, column, text) triples, rows and columns in order of first appearance."""
    table: dict[str, dict[str, str]] = {}
    for row, column, text in cells:
        table.setdefault(row, {})[column] = text
    return tabulate(pd.DataFrame(table).T.fillna("–"), headers="keys", tablefmt="github", disable_numparse=True)


def _p(row: dict[str, Any]) -> str:
    if row["p_value"] is None:
        return "not tested"
    return f"p = {row['p_value']:.3g}" + (" *" if row["significant"] else "")


def _verdict(row: dict[str, Any]) -> str:
    if row["p_value"] is None:
        return f"not tested ({row['pairs']} paired seed{'s' if row['pairs'] != 1 else ''})"
    return (f"{'significant' if row['significant'] else 'not significant'} "
            f"(p = {row['p_value']:.3g}, {row['pairs']} paired seeds)")


def render_seed_statistics(records: list[dict[str, Any]], metric: str = "test_acc") -> str:
    """Markdown: per method and dataset x ratio, mean ± std (n) [95 % CI], then the lead of the best."""
    runs = ok_runs(records).dropna(subset=[metric])
    if runs.empty:
        return "(no completed runs)\n"
    grouped = runs.groupby(["method", "dataset", "ratio"], sort=False)[metric]
    summary = grouped.agg(mean="mean", std="std", n="count").reset_index()
    cells = []
    for row in summary.itertuples(index=False):
        mean, std = row.mean * 100, row.std * 100
        half = confidence_halfwidth(std, int(row.n))
        interval = "" if half is None else f" [{mean - half:.2f}, {mean + half:.2f}]"
        text = f"{mean:.2f}" if half is None else f"{mean:.2f} ± {std:.2f} ({row.n}){interval}"
        cells.append((row.method, f"{row.dataset} {ratio_label(row.ratio)}", text))
    body = _grid(cells)
    lines = []
    for lead in leads(records, metric):
        where = f"{lead['dataset']} {ratio_label(lead['ratio'])}"
        marker = " *" if lead["significant"] else ""
        lines.append(f"- {where}: {lead['best']}{marker} leads {lead['runner_up']} by {lead['lead']:+.2f} points, "
                     f"{_verdict(lead)}")
    title = ACCURACY_METRICS[metric]
    text = (f"{title}: mean ± sample std (n seeds) [95 % t-interval of the mean].\n\n{body}\n\n"
            f"Best against runner-up ({TEST_NAME}; * = significant):\n\n" + "\n".join(lines) + "\n")
    focus = [f"- {row['dataset']} {ratio_label(row['ratio'])}: {FOCUS} − {row['other']} = "
             f"{row['difference']:+.2f} points, {_verdict(row)}" for row in focus_against_best_other(records, metric)]
    if focus:
        text += (f"\n{FOCUS.upper()} against the strongest other method of each column (the runner-up where "
                 f"{FOCUS.upper()} leads; same test):\n\n" + "\n".join(focus) + "\n")
    each = [(row["other"], f"{row['dataset']} {ratio_label(row['ratio'])}", f"{row['difference']:+.2f} ({_p(row)})")
            for row in focus_against_each(records, metric)]
    if len({method for method, _, _ in each}) > 1:  # with one other method, the list above says it all
        text += (f"\n{FOCUS.upper()} minus each other method, in points (paired p-value; * = significant):\n\n"
                 + _grid(each) + "\n")
    gaps = gaps_to_bias_supervised(records, metric)
    for bound in dict.fromkeys(row["bound"] for row in gaps):
        text += (f"\nEach method minus {bound}, in points (negative: below the upper bound):\n\n"
                 + _grid([(row["method"], f"{row['dataset']} {ratio_label(row['ratio'])}", f"{row['gap']:+.2f}")
                          for row in gaps if row["bound"] == bound]) + "\n")
    return text
