"""Records -> tables, as pure functions (no I/O): accuracy tables in Markdown, CSV and LaTeX, and a
timing table. Rows are methods, columns dataset x bias ratio; cells are mean ± std over seeds.

When one (method, dataset, ratio, seed) has several ``ok`` records (e.g. reruns with other
hyperparameters in the same output folder), the last one in file order is used. Methods are listed in the
papers' order (``PAPER_ORDER``: ERM first, PGD last), any other method after them in order of appearance,
and a method trained with the training set's bias labels (a record with ``bias_supervised``: GroupDRO)
last of all, its row labelled as the upper bound it is (``BIAS_SUPERVISED_LABEL``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from tabulate import tabulate

ACCURACY_METRICS = {
    "test_acc": "Unbiased test accuracy (%)",
    "test_conflicting_acc": "Bias-conflicting test accuracy (%)",
    "oracle_test_acc": "Unbiased test accuracy, oracle (selected on test) (%)",
}
# Figures chosen on the test split: shown labelled, never in the LaTeX table meant for a paper.
ORACLE_METRICS = ("oracle_test_acc",)
RUN_COLUMNS = ["method", "dataset", "ratio", "seed"]
# The papers' row order: the baseline first, the method of the suite's headline last.
PAPER_ORDER = ("erm", "lff", "jtt", "dfa", "lc", "dpr", "pgd")
BIAS_SUPERVISED_LABEL = " (bias-supervised, upper bound)"
STD_NOTE = ("mean ± std over seeds (sample std, ddof=1; shown only when n > 1); n = seeds per cell, "
            "written in each cell when the cells differ in n")


def selected_by_validation(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Where a (method, dataset, ratio) was run with several ``hparams_seed`` draws, keep the draw whose
    selected checkpoints have the lowest mean validation loss over seeds. Validation only, never test."""
    groups: dict[tuple, dict[int, list[dict[str, Any]]]] = {}
    for record in records:
        cell = (record["method"], record["dataset"], record["ratio"])
        groups.setdefault(cell, {}).setdefault(record.get("hparams_seed", 0), []).append(record)
    kept = []
    for draws in groups.values():
        def mean_valid_loss(runs: list[dict[str, Any]]) -> float:
            losses = [(r.get("selected") or {}).get("valid_loss") for r in runs]
            losses = [x for x in losses if x is not None]
            return sum(losses) / len(losses) if losses else float("inf")

        best = min(draws, key=lambda k: (mean_valid_loss(draws[k]), k))
        kept.extend(draws[best])
    return kept


def bias_supervised(records: list[dict[str, Any]]) -> set[str]:
    """The methods whose records say they trained with the training set's bias labels."""
    return {r["method"] for r in records if r.get("bias_supervised")}


def method_rank(records: list[dict[str, Any]]) -> dict[str, int]:
    """Each method's place in the tables: ``PAPER_ORDER``, then the others in order of appearance, the
    bias-supervised ones last."""
    supervised = bias_supervised(records)
    others = [m for m in dict.fromkeys(r["method"] for r in records) if m not in PAPER_ORDER]
    everyone = [*PAPER_ORDER, *others]
    order = [m for m in everyone if m not in supervised] + [m for m in everyone if m in supervised]
    return {m: i for i, m in enumerate(order)}


def latest_ok(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ok records, one per (method, dataset, ratio, seed) -- the last one in file order -- with the
    best hyperparameter draw by validation where a search was run, methods in the tables' order."""
    latest: dict[tuple, dict[str, Any]] = {}
    for record in records:
        if record.get("status") == "ok":
            latest[(*(record[c] for c in RUN_COLUMNS), record.get("hparams_seed", 0))] = record
    rank = method_rank(records)
    return sorted(selected_by_validation(list(latest.values())), key=lambda r: rank[r["method"]])


def ok_runs(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (method, dataset, ratio, seed) with status ok; the last record wins. A bias-supervised
    method's name carries ``BIAS_SUPERVISED_LABEL``, and the column ``bias_supervised`` says so."""
    columns = RUN_COLUMNS + list(ACCURACY_METRICS)
    rows = []
    for record in latest_ok(records):
        row = {c: record.get(c) for c in columns}
        row["bias_supervised"] = bool(record.get("bias_supervised"))
        if row["bias_supervised"]:
            row["method"] += BIAS_SUPERVISED_LABEL
        rows.append(row)
    return pd.DataFrame(rows, columns=[*columns, "bias_supervised"]).astype({"bias_supervised": bool})


def summarize(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Tidy summary: method, dataset, ratio, metric, mean, std, n (accuracies in percent)."""
    runs = ok_runs(records)
    long = runs.melt(id_vars=RUN_COLUMNS, value_vars=list(ACCURACY_METRICS), var_name="metric")
    long["value"] = pd.to_numeric(long["value"]) * 100
    long = long.dropna(subset=["value"])  # e.g. the oracle of records made before it was recorded
    grouped = long.groupby(["method", "dataset", "ratio", "metric"], sort=False)["value"]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()


def ratio_label(ratio: float) -> str:
    return f"{ratio * 100:g}%"


def format_cell(mean: float, std: float, n: int, show_n: bool) -> str:
    """``mean ± std`` (only the mean for one seed), with ``(n=k)`` appended when ``show_n``."""
    text = f"{mean:.2f}" if n < 2 else f"{mean:.2f} ± {std:.2f}"
    return f"{text} (n={n})" if show_n else text


def wide_table(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows: methods in order of first appearance; columns: "dataset ratio"; cells: formatted, with the
    number of seeds in each cell when the cells differ in it."""
    part = summary[summary["metric"] == metric]
    if part.empty:
        return pd.DataFrame()
    # A partial sweep mixes cells of 2 and 3 seeds; "± std" alone would not tell them apart.
    show_n = part["n"].nunique() > 1
    part = part.assign(
        column=part["dataset"] + " " + part["ratio"].map(ratio_label),
        cell=[format_cell(m, s, n, show_n) for m, s, n in zip(part["mean"], part["std"], part["n"], strict=True)],
    )
    order = part.sort_values(["dataset", "ratio"])["column"].drop_duplicates().tolist()
    rows = part["method"].drop_duplicates().tolist()
    table = part.pivot(index="method", columns="column", values="cell").reindex(index=rows, columns=order)
    return table.fillna("–")


def _seed_counts(summary: pd.DataFrame) -> str:
    counts = sorted(set(summary["n"].astype(int)))
    return ", ".join(str(c) for c in counts) if counts else "0"


def selection_rules(records: list[dict[str, Any]]) -> list[str]:
    """Per dataset, the model-selection rule of the tabled runs, with the methods under each rule when
    the methods differ ("cmnist: best_valid_loss (erm, pgd); last_epoch (lff)")."""
    rules: dict[str, dict[str, list[str]]] = {}
    for record in latest_ok(records):
        methods = rules.setdefault(record["dataset"], {}).setdefault(record.get("selection", "?"), [])
        if record["method"] not in methods:
            methods.append(record["method"])
    lines = []
    for dataset, by_rule in sorted(rules.items()):
        if len(by_rule) == 1:
            lines.append(f"{dataset}: {next(iter(by_rule))}")
        else:
            grouped = "; ".join(f"{rule} ({', '.join(ms)})" for rule, ms in sorted(by_rule.items()))
            lines.append(f"{dataset}: {grouped}")
    return lines


def preset_notes(records: list[dict[str, Any]]) -> list[str]:
    """A line per dataset run with the quick preset (its epochs per stage), and per dataset and method run
    with the paper preset on another schedule (its ``schedule``): neither is the papers' schedule."""
    quick: dict[str, set[int]] = {}
    changed: dict[str, dict[str, list[str]]] = {}
    for record in latest_ok(records):
        if record.get("preset") == "quick":
            quick.setdefault(record["dataset"], set()).add(int((record.get("hparams") or {}).get("epochs", 0)))
        elif record.get("schedule", "paper") not in ("paper", "quick"):
            methods = changed.setdefault(record["dataset"], {}).setdefault(record["schedule"], [])
            if record["method"] not in methods:
                methods.append(record["method"])
    notes = [f"Preset quick on {dataset}: {', '.join(map(str, sorted(epochs)))} epoch(s) per stage, a look in "
             "minutes, not the published schedule (--preset paper)." for dataset, epochs in sorted(quick.items())]
    for dataset, schedules in sorted(changed.items()):
        notes += [f"Preset paper on {dataset} cut or changed ({', '.join(methods)}): {label}." for label, methods
                  in schedules.items()]
    return notes


def render_markdown(records: list[dict[str, Any]]) -> str:
    summary = summarize(records)
    parts = [f"**{note}**\n" for note in preset_notes(records)]
    for metric, title in ACCURACY_METRICS.items():
        table = wide_table(summary, metric)
        if table.empty and metric in ORACLE_METRICS:
            continue
        parts.append(f"### {title}\n")
        if table.empty:
            parts.append("(no completed runs)\n")
            continue
        parts.append(tabulate(table, headers="keys", tablefmt="github", disable_numparse=True) + "\n")
    parts.append(f"Cells: {STD_NOTE}. n per cell: {_seed_counts(summary)}.\n")
    rules = selection_rules(records)
    if rules:
        parts.append("Model selection (never on test): " + ", ".join(rules) + ".\n")
    failed = [r for r in records if r.get("status") == "failed"]
    if failed:
        parts.append(f"Failed runs (not in the tables): {len(failed)}.\n")
    return "\n".join(parts)


def render_latex(records: list[dict[str, Any]]) -> str:
    summary = summarize(records)
    parts = [f"% {STD_NOTE}; n per cell: {_seed_counts(summary)}"]
    for metric, title in ACCURACY_METRICS.items():
        if metric in ORACLE_METRICS:
            continue
        table = wide_table(summary, metric)
        if table.empty:
            continue
        body = tabulate(table, headers="keys", tablefmt="latex_booktabs", disable_numparse=True)
        parts.append(f"% {title}\n" + body.replace("±", r"$\pm$"))
    return "\n\n".join(parts) + "\n"


def render_csv(records: list[dict[str, Any]]) -> str:
    """Wide numeric CSV: one row per method, columns "<metric> <dataset> <ratio> <mean|std|n>"."""
    summary = summarize(records)
    if summary.empty:
        return "method\n"
    summary = summary.assign(ratio=summary["ratio"].map(ratio_label))
    wide = summary.pivot_table(
        index="method", columns=["metric", "dataset", "ratio"], values=["mean", "std", "n"], aggfunc="first"
    )
    wide = wide.reorder_levels([1, 2, 3, 0], axis=1).sort_index(axis=1)
    wide.columns = [" ".join(str(level) for level in column) for column in wide.columns]
    return wide.to_csv(float_format="%.4f")


def render_timing(records: list[dict[str, Any]]) -> str:
    """Seconds per run and per phase, with training throughput and peak memory."""
    rows = []
    for record in sorted(latest_ok(records), key=lambda r: tuple(r[c] for c in RUN_COLUMNS)):
        timing = record["timing"]
        row = {c: record[c] for c in RUN_COLUMNS}
        row["ratio"] = ratio_label(row["ratio"])
        row["total s"] = timing["total_s"]
        row.update({f"{phase} s": seconds for phase, seconds in timing["phases_s"].items()})
        row["train samples/s"] = timing["train_samples_per_s"]
        row["peak MB"] = timing["peak_memory_mb"]
        row["device"] = record["env"]["device_name"]
        rows.append(row)
    if not rows:
        return "### Timing\n\n(no completed runs)\n"
    table = pd.DataFrame(rows)
    head = [*RUN_COLUMNS, "total s"]
    tail = ["train samples/s", "peak MB", "device"]
    middle = [c for c in table.columns if c not in head and c not in tail]
    table = table[head + middle + tail]
    table = table.astype(object).where(table.notna(), None)  # phases a method does not have: "–"
    body = tabulate(table, headers="keys", tablefmt="github", floatfmt=".1f", showindex=False, missingval="–")
    return f"### Timing (seconds per run and per phase)\n\n{body}\n"


# The table files of a sweep's folder, each with the renderer that makes it from the folder's records.
TABLE_FILES: dict[str, Callable[[list[dict[str, Any]]], str]] = {
    "table.md": render_markdown,
    "table.csv": render_csv,
    "table.tex": render_latex,
    "timing.md": render_timing,
}
