"""How long a schedule needs to be, read from each run's test curve: the oracle's test evaluations along
its selected stage (every ``oracle_every_steps`` optimiser steps, the final model included; for analysis
only, never for selection, as everything on the test split).

A run's final figure is the one its record reports (``test_acc``, by its selection rule: the last
evaluation under a last-epoch rule, the checkpoint chosen on validation under PGD's), the figure of the
accuracy table. For each run: the step at which it first comes within ``tolerance`` points of its final
figure, the step at which it first comes within ``tolerance`` of its best figure (the oracle), and the
step from which it stays within ``tolerance`` of its final figure to the end. Across the runs of one
dataset and ratio: the first evaluation step from which every run stays within ``tolerance`` of its final
figure and no two runs are in the opposite order to their final figures (runs tied at the end may come
in either order) at every later evaluation -- the length at which a shorter schedule would have given the
same table within ``tolerance``. Steps count within the selected stage: a two-stage method (PGD, JTT)
has trained its whole first stage before it, so its curve does not say what a shorter first stage gives.
"""

from __future__ import annotations

from typing import Any

from reporting.tables import latest_ok, ratio_label

TOLERANCE = 1.0  # points of accuracy


def _first(steps: list[int], ok: list[bool]) -> int | None:
    return next((step for step, good in zip(steps, ok, strict=True) if good), None)


def _stays(steps: list[int], ok: list[bool]) -> int | None:
    """The first step from which every later evaluation is ``ok``."""
    start = None
    for step, good in zip(steps, ok, strict=True):
        if not good:
            start = None
        elif start is None:
            start = step
    return start


def curve_of(record: dict[str, Any]) -> tuple[list[int], list[float]] | None:
    """(steps, test accuracy in %) of a record's oracle curve, or None with fewer than two evaluations."""
    curve = (record.get("oracle") or {}).get("curve") or []
    if len(curve) < 2:
        return None
    return [int(step) for step, _ in curve], [100 * float(acc) for _, acc in curve]


def final_figure(record: dict[str, Any]) -> float:
    """The run's reported unbiased test accuracy, in %."""
    return 100 * float(record["test_acc"])


def convergence_rows(records: list[dict[str, Any]], tolerance: float = TOLERANCE) -> list[dict[str, Any]]:
    rows = []
    for record in latest_ok(records):
        curve = curve_of(record)
        if curve is None:
            continue
        steps, accuracy = curve
        final, best = final_figure(record), max(accuracy)
        near_final = [abs(a - final) <= tolerance for a in accuracy]
        rows.append({
            "method": record["method"], "dataset": record["dataset"], "ratio": record["ratio"],
            "seed": record["seed"], "evaluations": len(steps), "steps": steps[-1], "final": final, "best": best,
            "first_within_final": _first(steps, near_final),
            "first_within_best": _first(steps, [a >= best - tolerance for a in accuracy]),
            "stays_within_final": _stays(steps, near_final),
        })
    return rows


def common_length(records: list[dict[str, Any]], dataset: str, ratio: float, seed: int,
                  tolerance: float = TOLERANCE) -> int | None:
    """The first evaluation step (on the grid every run of ``dataset``, ``ratio``, ``seed`` shares) from
    which every run stays within ``tolerance`` of its final figure and the methods keep their final
    order; None with fewer than two runs, or no shared grid."""
    runs = [r for r in latest_ok(records)
            if (r["dataset"], r["ratio"], r["seed"]) == (dataset, ratio, seed) and curve_of(r) is not None]
    curves = {r["method"]: dict(zip(*curve_of(r), strict=True)) for r in runs}
    finals = {r["method"]: final_figure(r) for r in runs}
    if len(curves) < 2:
        return None
    grid = sorted(set.intersection(*(set(points) for points in curves.values())))
    # Pairs whose final figures differ, higher first: each must not be reversed at a step.
    ordered = [(a, b) for a in finals for b in finals if finals[a] > finals[b]]
    ok = [all(abs(points[step] - finals[m]) <= tolerance for m, points in curves.items())
          and all(curves[a][step] >= curves[b][step] for a, b in ordered) for step in grid]
    return _stays(grid, ok) if grid else None


def _step(step: int | None, total: int) -> str:
    return "never" if step is None else f"{step:,} ({100 * step / total:.0f} %)"


def render_convergence(records: list[dict[str, Any]], tolerance: float = TOLERANCE) -> str:
    rows = convergence_rows(records, tolerance)
    if not rows:
        return "No run has a test curve of two or more evaluations."
    lines = [f"Test accuracy along each run's selected stage (the oracle's evaluations, selected on test: for "
             f"analysis only), against its final figure: the one its record reports, by its selection rule. "
             f"Steps: optimiser steps of that stage (% of it); within {tolerance:g} point(s). A two-stage method "
             f"(PGD, JTT) trained its whole first stage first: its curve does not show a shorter first stage.",
             "",
             "| method | dataset | ratio | seed | evaluations | final % | best % | first within 1 pt of final | "
             "first within 1 pt of best | stays within 1 pt of final from |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        total = row["steps"]
        lines.append(f"| {row['method']} | {row['dataset']} | {ratio_label(row['ratio'])} | {row['seed']} | "
                     f"{row['evaluations']} | {row['final']:.2f} | {row['best']:.2f} | "
                     f"{_step(row['first_within_final'], total)} | {_step(row['first_within_best'], total)} | "
                     f"{_step(row['stays_within_final'], total)} |")
    cells = sorted({(r["dataset"], r["ratio"], r["seed"]) for r in rows})
    for dataset, ratio, seed in cells:
        methods = [r for r in rows if (r["dataset"], r["ratio"], r["seed"]) == (dataset, ratio, seed)]
        if len(methods) < 2:
            continue
        length = common_length(records, dataset, ratio, seed, tolerance)
        total = max(r["steps"] for r in methods)
        where = f"{dataset} {ratio_label(ratio)} seed {seed}"
        lines.append("")
        if length is None:
            lines.append(f"{where}: at no evaluation step the runs share is every run within {tolerance:g} "
                         "point(s) of its final figure in the final order.")
        else:
            lines.append(f"{where}: every run within {tolerance:g} point(s) of its final figure, in the final "
                         f"order, from step {length:,} on ({100 * length / total:.0f} % of the longest selected "
                         f"stage, {total:,} steps).")
    return "\n".join(lines)
