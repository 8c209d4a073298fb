"""Plots from run records (matplotlib, PNG): accuracy against bias ratio with a ± std band, validation
accuracy per epoch for one run per method, time per phase per method, and per dataset x ratio the group
accuracy heatmaps and the conflict-detection precision-recall curves. Each function takes records and a
path (or a folder) and returns what it drew, so tests can check what a figure shows."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from reporting.convergence import TOLERANCE, convergence_rows, curve_of
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
        swept = sorted(set((part["ratio"] * 100).tolist()))
        ax.set_xticks(swept, [f"{r:g}" for r in swept])  # ticks at the swept ratios only
        ax.minorticks_off()
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


def convergence_curves(records: list[dict[str, Any]], path: Path) -> dict[str, list[float]]:
    """Test accuracy at every oracle evaluation of each run's selected stage, one panel per dataset x
    ratio (``reporting.convergence``): a band of ± ``TOLERANCE`` around the final figure and a marker where
    the run stays within it from. Selected on test: for analysis only, and labelled so."""
    rows = {(r["method"], r["dataset"], r["ratio"], r["seed"]): r for r in convergence_rows(records)}
    runs = [r for r in latest_ok(records) if (r["method"], r["dataset"], r["ratio"], r["seed"]) in rows]
    cells = list(dict.fromkeys((r["dataset"], r["ratio"]) for r in runs))
    fig, axes = plt.subplots(1, max(1, len(cells)), figsize=(6 * max(1, len(cells)), 4), squeeze=False)
    drawn: dict[str, list[float]] = {}
    for ax, (dataset, ratio) in zip(axes[0], cells, strict=False):
        for record in (r for r in runs if (r["dataset"], r["ratio"]) == (dataset, ratio)):
            steps, accuracy = curve_of(record)
            row = rows[record["method"], dataset, ratio, record["seed"]]
            label = f"{record['method']} seed {record['seed']}"
            (line,) = ax.plot(steps, accuracy, label=label, linewidth=1)
            ax.axhspan(row["final"] - TOLERANCE, row["final"] + TOLERANCE, color=line.get_color(), alpha=0.12)
            if row["stays_within_final"] is not None:
                ax.axvline(row["stays_within_final"], color=line.get_color(), linestyle=":", linewidth=1)
            drawn[f"{dataset} {ratio * 100:g}% {label}"] = accuracy
        ax.set_title(f"{dataset} {ratio * 100:g}%: test accuracy along the selected stage\n(oracle's evaluations, "
                     f"selected on test; band ± {TOLERANCE:g} pt of final, dotted: stays within from)", fontsize=8)
        ax.set_xlabel("optimiser steps of the selected stage")
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return drawn


def _file_tag(dataset: str, ratio: float) -> str:
    return f"{dataset}_{ratio * 100:g}pct"


def _per_cell(records: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, list[dict[str, Any]]]]:
    cells: dict[tuple[str, float], dict[str, list[dict[str, Any]]]] = {}
    for record in latest_ok(records):
        cells.setdefault((record["dataset"], record["ratio"]), {}).setdefault(record["method"], []).append(record)
    return cells


def _mean_matrix(matrices: list[list[list[float | None]]]) -> np.ndarray:
    stacked = np.array([[[np.nan if v is None else v for v in row] for row in m] for m in matrices], dtype=float)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell empty in every seed stays NaN
        return np.nanmean(stacked, axis=0)


def group_accuracy_maps(records: list[dict[str, Any]], folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """Per dataset x ratio, ``group_accuracy_<dataset>_<r>pct.png``: for each method a heatmap of test
    accuracy (%) per (target, bias) cell, mean over seeds; empty cells blank. Returns file -> method ->
    the matrix drawn (rows targets, columns bias labels)."""
    drawn: dict[str, dict[str, np.ndarray]] = {}
    for (dataset, ratio), methods in _per_cell(records).items():
        maps = {m: _mean_matrix([r["test_group_acc"] for r in runs if r.get("test_group_acc")]) * 100
                for m, runs in methods.items() if any(r.get("test_group_acc") for r in runs)}
        if not maps:
            continue
        fig, axes = plt.subplots(1, len(maps), figsize=(2.6 * len(maps) + 1, 3), squeeze=False, layout="constrained")
        for ax, (method, matrix) in zip(axes[0], maps.items(), strict=True):
            image = ax.imshow(matrix, vmin=0, vmax=100, cmap="viridis")
            ax.set_title(method)
            ax.set_xlabel("bias label")
            ax.set_ylabel("target")
            ax.set_xticks(range(matrix.shape[1]))
            ax.set_yticks(range(matrix.shape[0]))
            ax.tick_params(labelsize=6)
        fig.colorbar(image, ax=list(axes[0]), shrink=0.8, label="test accuracy (%)")
        fig.suptitle(f"Test accuracy per (target, bias) cell, {dataset} {ratio * 100:g}%", fontsize=9)
        name = f"group_accuracy_{_file_tag(dataset, ratio)}.png"
        fig.savefig(folder / name, dpi=120, bbox_inches="tight")
        plt.close(fig)
        drawn[name] = maps
    return drawn


def conflict_pr_curves(records: list[dict[str, Any]], folder: Path) -> dict[str, dict[str, list[float]]]:
    """Per dataset x ratio, ``conflict_pr_<dataset>_<r>pct.png``: precision against recall of ranking the
    bias-conflicting training samples first, each method's own signal (solid) and its training-loss
    baseline (dashed), mean precision over seeds at each recall level. Returns file -> label -> precisions."""
    drawn: dict[str, dict[str, list[float]]] = {}
    for (dataset, ratio), methods in _per_cell(records).items():
        curves: dict[str, tuple[list[float], list[float], str]] = {}
        for method, runs in methods.items():
            detections = [(r.get("diagnostics") or {}).get("conflict_detection") or {} for r in runs]
            for signal in dict.fromkeys(s for d in detections for s in d):
                points = [d[signal]["pr_curve"] for d in detections if (d.get(signal) or {}).get("pr_curve")]
                if points:
                    recall = [p[0] for p in points[0]]
                    precision = np.mean([[p[1] for p in curve] for curve in points], axis=0).tolist()
                    curves[f"{method}: {signal}"] = (recall, precision, "--" if signal == "train_loss" else "-")
        if not curves:
            continue
        fig, ax = plt.subplots(figsize=(6, 4.5))
        for label, (recall, precision, style) in curves.items():
            ax.plot(recall, precision, style, label=label, linewidth=1.2 if style == "-" else 0.8)
        ax.set_xlabel("recall of bias-conflicting training samples")
        ax.set_ylabel("precision")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"Conflict detection, {dataset} {ratio * 100:g}% (dashed: training-loss baseline)", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        fig.tight_layout()
        name = f"conflict_pr_{_file_tag(dataset, ratio)}.png"
        fig.savefig(folder / name, dpi=130)
        plt.close(fig)
        drawn[name] = {label: precision for label, (_, precision, _) in curves.items()}
    return drawn
