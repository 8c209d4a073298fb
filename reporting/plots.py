"""Plots from run records (matplotlib, PNG): accuracy against bias ratio with a ± std band, validation
accuracy per epoch for one run per method, and time per phase per method. Each function takes records
and a path and returns the series it drew, so tests can check what a figure shows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from reporting.tables import latest_ok, summarize


def accuracy_vs_ratio(records: list[dict[str, Any]], path: Path, metric: str = "test_acc") -> dict[str, list]:
    """One panel per dataset, one line per method, band = ± sample std over seeds."""
    summary = summarize(records)
    summary = summary[summary["metric"] == metric]
    datasets = list(dict.fromkeys(summary["dataset"]))
    fig, axes = plt.subplots(1, max(1, len(datasets)), figsize=(5 * max(1, len(datasets)), 4), squeeze=False)
    drawn: dict[str, list] = {}
    for ax, dataset in zip(axes[0], datasets, strict=False):
        part = summary[summary["dataset"] == dataset]
        for method in dict.fromkeys(part["method"]):
            rows = part[part["method"] == method].sort_values("ratio")
            ratios, means, stds = rows["ratio"] * 100, rows["mean"], rows["std"].fillna(0)
            ax.plot(ratios, means, marker="o", label=method)
            ax.fill_between(ratios, means - stds, means + stds, alpha=0.2)
            drawn[f"{dataset}/{method}"] = list(zip(ratios.tolist(), means.tolist(), strict=True))
        ax.set_xscale("log")
        ax.set_xlabel("bias-conflicting ratio (%)")
        ax.set_ylabel("unbiased test accuracy (%)" if metric == "test_acc" else f"{metric} (%)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return drawn


def training_curves(records: list[dict[str, Any]], path: Path) -> dict[str, list]:
    """Validation accuracy per epoch (all stages, in order) for the first run of each method. Runs whose
    protocol has no validation split are drawn in a second panel from their oracle's test evaluations
    (test accuracy against optimiser steps of the selected stage), labelled as selected on test."""
    firsts: dict[str, dict[str, Any]] = {}
    for record in latest_ok(records):
        firsts.setdefault(record["method"], record)
    with_valid = {m: r for m, r in firsts.items() if any(e.get("valid_acc") is not None for e in r.get("epochs", []))}
    on_test = {m: r for m, r in firsts.items() if m not in with_valid and (r.get("oracle") or {}).get("curve")}
    panels = [p for p in (with_valid, on_test) if p] or [with_valid]
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4), squeeze=False)
    drawn: dict[str, list] = {}
    for ax, panel in zip(axes[0], panels, strict=True):
        for record in panel.values():
            label = f"{record['method']} ({record['dataset']} {record['ratio'] * 100:g}%, seed {record['seed']})"
            if panel is with_valid:
                series = [100 * e["valid_acc"] for e in record["epochs"] if e.get("valid_acc") is not None]
                ax.plot(range(1, len(series) + 1), series, label=label)
            else:
                steps, accuracy = zip(*record["oracle"]["curve"], strict=True)
                series = [100 * a for a in accuracy]
                ax.plot(steps, series, label=label)
            drawn[label] = series
        if panel is with_valid:
            ax.set_xlabel("epoch (all stages)")
            ax.set_ylabel("validation accuracy (%)")
        else:
            ax.set_xlabel("optimiser steps of the selected stage")
            ax.set_ylabel("test accuracy (%)")
            ax.set_title("no validation split: test accuracy at the oracle's evaluations\n"
                         "(oracle, selected on test)", fontsize=9)
        ax.grid(alpha=0.3)
        if panel:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return drawn


def time_per_phase(records: list[dict[str, Any]], path: Path) -> dict[str, dict[str, float]]:
    """Stacked bars: mean seconds per phase for each method, over its ok runs."""
    totals: dict[str, dict[str, list[float]]] = {}
    for record in latest_ok(records):
        for phase, seconds in record["timing"]["phases_s"].items():
            totals.setdefault(record["method"], {}).setdefault(phase, []).append(seconds)
    means = {m: {p: sum(v) / len(v) for p, v in phases.items()} for m, phases in totals.items()}
    phases = list(dict.fromkeys(p for per in means.values() for p in per))
    fig, ax = plt.subplots(figsize=(6, 4))
    bottom = [0.0] * len(means)
    for phase in phases:
        heights = [means[m].get(phase, 0.0) for m in means]
        ax.bar(list(means), heights, bottom=bottom, label=phase)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_ylabel("seconds per run (mean)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return means
