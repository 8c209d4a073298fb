"""Diagnostics tables from run records (pure functions): conflict detection and the bias probe, mean over
seeds per method, dataset and ratio. Records made before the diagnostics existed read "not recorded"."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from tabulate import tabulate

from reporting.tables import latest_ok, ratio_label

NOT_RECORDED = "not recorded"
BASELINE = "train_loss"  # the common signal: the selected model's final per-sample training loss


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None


def _fmt(value: float | None, scale: float = 1.0, digits: int = 3) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def _cells(records: list[dict[str, Any]]) -> dict[tuple[str, float], dict[str, list[dict[str, Any]]]]:
    """(dataset, ratio) -> method -> its ok records, in order of appearance."""
    cells: dict[tuple[str, float], dict[str, list[dict[str, Any]]]] = {}
    for record in latest_ok(records):
        cells.setdefault((record["dataset"], record["ratio"]), {}).setdefault(record["method"], []).append(record)
    return cells


def conflict_detection_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (dataset, ratio, method, signal): ROC-AUC, AP and, for a set, precision / recall /
    size, each the mean over the seeds that recorded it."""
    rows = []
    for (dataset, ratio), methods in _cells(records).items():
        for method, runs in methods.items():
            detections = [(r.get("diagnostics") or {}).get("conflict_detection") for r in runs]
            recorded = [d for d in detections if d]
            if not recorded:
                rows.append({"dataset": dataset, "ratio": ratio, "method": method, "signal": None, "n": 0})
                continue
            signals = list(dict.fromkeys(name for d in recorded for name in d))
            for signal in signals:
                values = [d[signal] for d in recorded if signal in d]
                rows.append({
                    "dataset": dataset, "ratio": ratio, "method": method, "signal": signal, "n": len(values),
                    **{key: _mean([v.get(key) for v in values])
                       for key in ("roc_auc", "average_precision", "prevalence", "precision", "recall", "size")},
                })
    return rows


def render_conflict_detection(records: list[dict[str, Any]]) -> str:
    """Markdown: a table per dataset x ratio, each method's own signal and the training-loss baseline."""
    rows = conflict_detection_rows(records)
    if not rows:
        return "(no completed runs)\n"
    parts = []
    frame = pd.DataFrame(rows)
    for (dataset, ratio), part in frame.groupby(["dataset", "ratio"], sort=False):
        table = []
        for row in part.itertuples(index=False):
            if pd.isna(row.signal):
                table.append({"method": row.method, "signal": NOT_RECORDED})
                continue
            is_set = not pd.isna(row.size)
            table.append({
                "method": row.method,
                "signal": f"{row.signal} (baseline)" if row.signal == BASELINE else row.signal,
                "ROC-AUC": _fmt(row.roc_auc), "AP": _fmt(row.average_precision),
                "precision": _fmt(row.precision) if is_set else "",
                "recall": _fmt(row.recall) if is_set else "",
                "size": f"{row.size:.0f}" if is_set else "",
                "seeds": str(int(row.n)),
            })
        prevalence = part["prevalence"].dropna() if "prevalence" in part else pd.Series(dtype=float)
        chance = f"; AP of a random ranking = the conflicting share, {prevalence.iloc[0]:.4f}" if len(
            prevalence) else ""
        parts.append(f"#### {dataset} {ratio_label(ratio)}{chance}\n\n"
                     + tabulate(pd.DataFrame(table).fillna(""), headers="keys", tablefmt="github",
                                showindex=False, disable_numparse=True))
    note = ("How well each per-sample signal ranks the bias-conflicting training samples first (bias labels "
            "for analysis only): the method's own signal (PGD's sampling probability, LfF's and DFA's final "
            "weight, JTT's error set) and every method's final per-sample training loss as the common "
            "baseline. ROC-AUC and average precision (AP) by scikit-learn, mean over seeds.")
    return note + "\n\n" + "\n\n".join(parts) + "\n"


def render_bias_probe(records: list[dict[str, Any]]) -> str:
    """Markdown: probe accuracy (and the majority-label rate) per method and dataset x ratio."""
    cells = _cells(records)
    if not cells:
        return "(no completed runs)\n"
    columns = [f"{d} {ratio_label(r)}" for d, r in cells]
    methods = list(dict.fromkeys(m for per in cells.values() for m in per))
    table = pd.DataFrame(index=methods, columns=columns, dtype=object)
    for (dataset, ratio), per in cells.items():
        for method, runs in per.items():
            probes = [(r.get("diagnostics") or {}).get("bias_probe") for r in runs]
            probes = [p for p in probes if p and p.get("accuracy") is not None]
            if probes:
                accuracy = _mean([p["accuracy"] for p in probes])
                chance = _mean([p["chance"] for p in probes])
                text = f"{_fmt(accuracy, 100, 1)} (chance {_fmt(chance, 100, 1)})"
            else:
                text = NOT_RECORDED
            table.loc[method, f"{dataset} {ratio_label(ratio)}"] = text
    body = tabulate(table.fillna("–"), headers="keys", tablefmt="github", disable_numparse=True)
    note = ("Bias probe: a logistic regression on the selected model's penultimate test features (DFA: its "
            "intrinsic features z_i) predicting the bias label, fit on one half of the test split and scored "
            "on the other; accuracy in %, mean over seeds. Lower is less bias left in the representation.")
    return note + "\n\n" + body + "\n"
