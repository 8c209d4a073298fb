"""Project the wall time of the full paper-preset cmnist table from a short timed sweep.

Input: the records of one short sweep (every method, one ratio, ``--epochs E`` per stage, ``--jobs 1``)
and the wall seconds of the same sweep at ``--jobs 1`` and ``--jobs N``. Each run's per-stage training
time and its per-epoch work (validation, oracle evaluations, checkpoints) scale with the paper preset's
epochs per stage (JTT's stage 1 is T epochs); data loading, PGD's scoring, JTT's error set and the
diagnostics are paid once per run and do not scale. The table is every method of the short sweep x 3
ratios x 3 seeds; each ratio is costed as the measured one (JTT's upsampled stage grows with its error
set, which the measured ratio fixes). At ``--jobs N`` the serial projection is divided by the measured throughput gain.

Usage: ``python benchmarks/project_table.py RECORDS.jsonl SECONDS_JOBS1 SECONDS_JOBSN N``; prints
``name: value`` lines for the GPU check's summary.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.hparams import resolve_hparams  # noqa: E402
from datasets import DATASETS  # noqa: E402
from methods import METHODS, RunContext  # noqa: E402
from reporting.records import read_records  # noqa: E402

RATIOS, SEEDS = 3, 3
ONCE_PER_RUN = ("data", "score", "error_set", "diagnostics")
PER_EPOCH = ("eval", "oracle_eval", "checkpoint")


def paper_stage_epochs(method: str, dataset: str, ratio: float) -> dict[str, int]:
    """Epochs per stage of the paper preset (built on a tiny context: only the schedule is read)."""
    hparams = resolve_hparams(METHODS[method], DATASETS[dataset], ratio, "paper", None, {})
    shape = DATASETS[dataset](dict(DATASETS[dataset].OPTIONS)).model_input_shape()
    targets = torch.arange(10 * int(hparams["batch_size"])) % 10
    biases = targets.clone() if METHODS[method].BIAS_SUPERVISED else None  # GroupDRO's groups, unused here
    ctx = RunContext(10, shape, targets, torch.device("cpu"), torch.Generator(), biases)
    return {stage.name: stage.epochs for stage in METHODS[method](hparams, ctx).stages()}


def projected_run_seconds(record: dict[str, Any], paper: dict[str, int]) -> float:
    phases = record["timing"]["phases_s"]
    measured = Counter(row["stage"] for row in record["epochs"])
    seconds = sum(phases.get(name, 0.0) for name in ONCE_PER_RUN)
    seconds += sum(phases.get(stage, 0.0) * paper[stage] / measured[stage] for stage in measured)
    per_epoch = sum(phases.get(name, 0.0) for name in PER_EPOCH)
    return seconds + per_epoch * sum(paper.values()) / sum(measured.values())


def projection_lines(records: list[dict[str, Any]], serial_s: float, concurrent_s: float, jobs: int) -> list[str]:
    lines, total = [], 0.0
    for record in records:
        if record.get("status") != "ok":
            lines.append(f"projection_missing_{record['method']}: {record.get('error', 'failed')}")
            continue
        paper = paper_stage_epochs(record["method"], record["dataset"], record["ratio"])
        seconds = projected_run_seconds(record, paper)
        total += seconds
        measured = Counter(row["stage"] for row in record["epochs"])
        lines.append(f"measured_epochs_{record['method']}: "
                     + ",".join(f"{stage}={count}/{paper[stage]}" for stage, count in measured.items()))
        lines.append(f"projected_paper_run_seconds_{record['method']}: {seconds:.1f}")
    gain = serial_s / concurrent_s
    table = total * RATIOS * SEEDS
    lines.append(f"projected_cmnist_table_seconds_jobs1: {table:.0f}")
    lines.append(f"projected_cmnist_table_seconds_jobs{jobs}: {table / gain:.0f}")
    lines.append(f"projected_cmnist_table_minutes_jobs{jobs}: {table / gain / 60:.1f}")
    return lines


if __name__ == "__main__":
    path, serial, concurrent, jobs = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
    print("\n".join(projection_lines(read_records(Path(path)), serial, concurrent, jobs)))
