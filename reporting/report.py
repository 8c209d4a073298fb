"""``report.md``: everything needed to cite or rerun a sweep, rendered from its records alone."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

import pandas as pd

from reporting.convergence import render_convergence
from reporting.diagnostics import render_bias_probe, render_conflict_detection
from reporting.published import render_comparison
from reporting.records import mixed_machines
from reporting.significance import render_seed_statistics
from reporting.tables import RUN_COLUMNS, latest_ok, ratio_label, render_markdown, render_timing, selection_rules

PLOTS = {
    "accuracy_vs_ratio.png": "Unbiased test accuracy against bias ratio (band: ± std over seeds)",
    "training_curves.png": "Validation accuracy per epoch, one run per method (without a validation split: "
                           "test accuracy at the oracle's evaluations, selected on test)",
    "time_per_phase.png": "Seconds per phase, mean over runs",
    "convergence.png": "Test accuracy along each run's selected stage, with ± 1 point of its final figure "
                       "(oracle's evaluations, selected on test: for analysis only)",
}


def plot_caption(name: str) -> str | None:
    """The caption of a plot file written by ``reporting.plots``; None for a file it does not know."""
    if name in PLOTS:
        return PLOTS[name]
    for prefix, caption in (("group_accuracy_", "Test accuracy per (target, bias) cell, mean over seeds"),
                            ("conflict_pr_", "Conflict detection: precision against recall of bias-conflicting "
                                             "training samples")):
        if name.startswith(prefix) and name.endswith("pct.png"):
            return f"{caption}, {name[len(prefix):-len('pct.png')].replace('_', ' ')} %"
    return None


CHECKOUT = Path(__file__).resolve().parents[1]


def _relative(path: str) -> str:
    """An absolute path relative to the checkout (``../`` where outside it); others as given."""
    return os.path.relpath(path, CHECKOUT) if os.path.isabs(path) else path


def portable_command(command: str, folder: Path | None) -> str:
    """The recorded command with its paths relative to the checkout, and ``--out`` the folder the report
    sits in (records copied into ``results/`` rerun there), so a committed report names no machine's
    absolute paths."""
    tokens = shlex.split(command)
    out = []
    for index, token in enumerate(tokens):
        previous = tokens[index - 1] if index else ""
        if previous == "--out" and folder is not None:
            token = _relative(str(Path(folder).resolve()))
        elif previous == "--set" and "=" in token:
            key, value = token.split("=", 1)
            token = f"{key}={_relative(value)}"
        else:
            token = _relative(token)
        out.append(token)
    return shlex.join(out)


def plugin_lines(records: list[dict[str, Any]]) -> list[str]:
    """Each plugin file with its SHA-256 and how many records ran it: two sums for one path show a rerun
    with changed plugin code."""
    counts: dict[tuple[str, str], int] = {}
    for record in records:
        for plugin in record.get("plugins") or []:
            key = (_relative(plugin["path"]), plugin["sha256"])
            counts[key] = counts.get(key, 0) + 1
    return [f"{path} (sha256 {digest[:16]}): {n} record(s)" for (path, digest), n in sorted(counts.items())]


def environment_line(env: dict[str, Any]) -> str:
    """Where a record ran: versions, device and CPU, and its CPU numerics (``bench.numerics``)."""
    line = (f"torch {env.get('torch')}, python {env.get('python')}, {env.get('device')} ({env.get('device_name')}), "
            f"{env.get('threads')} thread(s)")
    if "numerics" not in env:
        return line + ", numerics not recorded"
    return (line + f", numerics {env['numerics']}: PyTorch CPU capability {env.get('cpu_capability')}, oneDNN "
            f"{env.get('onednn_isa')}, BLAS {env.get('blas')}, numpy BLAS {env.get('numpy_blas')}, MKL_CBWR "
            f"{env.get('mkl_cbwr')}; CPU flags {' '.join(env.get('cpu_flags') or []) or 'not read'}")


def _bullets(values: list[str]) -> str:
    return "\n".join(f"- `{v}`" for v in values) if values else "- (not recorded)"


def missing_runs(records: list[dict[str, Any]]) -> list[str]:
    """Cells of the (method, dataset, ratio) x seed grid that have no ok record."""
    ok = {tuple(r[c] for c in RUN_COLUMNS) for r in latest_ok(records)}
    methods = list(dict.fromkeys(r["method"] for r in records))
    cells = list(dict.fromkeys((r["dataset"], r["ratio"]) for r in records))
    seeds = sorted({r["seed"] for r in records})
    return [f"{m} {d} {ratio_label(ratio)} seed {s}" for m in methods for d, ratio in cells for s in seeds
            if (m, d, ratio, s) not in ok]


def render_report(records: list[dict[str, Any]], plots: list[str], published: pd.DataFrame,
                  folder: Path | None = None) -> str:
    """``folder``: where the report is written (the rerun commands' ``--out``)."""
    ok = latest_ok(records)
    commands = sorted({portable_command(r["command"], folder) for r in records if r.get("command")})
    plugins = plugin_lines(records)
    commits = sorted({str(r.get("env", {}).get("git_commit")) for r in records})
    environments = sorted({environment_line(r.get("env") or {}) for r in records})
    fingerprints = sorted({f"{r['dataset']} {ratio_label(r['ratio'])}: {r.get('dataset_fingerprint')}" for r in ok})
    selection = selection_rules(records)
    failed = [f"{r['method']} {r['dataset']} {ratio_label(r['ratio'])} seed {r['seed']}: {r.get('error')}"
              for r in records if r.get("status") == "failed"]
    missing = missing_runs(records)
    resumed = [f"{r['method']} {r['dataset']} {ratio_label(r['ratio'])} seed {r['seed']}: "
               + "; ".join(f"{e['stage']} after {e['epoch']} epoch(s), step {e['step']}" for e in r["resumed_from"])
               for r in ok if r.get("resumed_from") and not mixed_machines(r["resumed_from"])]
    mixed = [f"{r['method']} {r['dataset']} {ratio_label(r['ratio'])} seed {r['seed']}: " + "; ".join(changes)
             for r in ok if (changes := mixed_machines(r.get("resumed_from") or []))]
    parts = [
        "# debias-bench report",
        f"{len(ok)} completed runs, {len(failed)} failed, {len(missing)} missing from the grid.",
        "## Accuracy", render_markdown(records),
        "## Ours against published numbers", render_comparison(records, published),
        "## Timing", render_timing(records),
        "## Convergence", render_convergence(records),
        "## Across seeds", render_seed_statistics(records),
        "## Diagnostics", "### Conflict detection", render_conflict_detection(records),
        "### Bias probe", render_bias_probe(records),
        "## Plots", "\n\n".join(f"![{plot_caption(p)}]({p})" for p in plots if plot_caption(p)) or "(none)",
        "## How to rerun", "Command(s), paths relative to the checkout:", _bullets(commands),
        "Git commit(s):", _bullets(commits),
        *(["Plugins (file, SHA-256, records):", _bullets(plugins)] if plugins else []),
        "## Environment", _bullets(environments),
        "## Data and selection", "Dataset fingerprints (hash of generation parameters and arrays):",
        _bullets(fingerprints), "Model selection (never on the test split):", _bullets(selection),
        "## Failed and missing runs",
        ("Failed:\n" + _bullets(failed)) if failed else "No failed runs.",
        ("Missing (no ok record):\n" + _bullets(missing)) if missing else "No missing runs.",
        ("Resumed from an in-run checkpoint (same result as uninterrupted):\n" + _bullets(resumed)) if resumed
        else "No run was resumed from an in-run checkpoint.",
        *(["**Resumed on another machine or under other numerics** (native numerics: the result matches "
           "neither machine's uninterrupted run):\n" + _bullets(mixed)] if mixed else []),
    ]
    return "\n\n".join(parts) + "\n"
