"""``run_bench.py status OUT``: a sweep's state at a glance, read from its folder alone.

Every run the folder's sweeps asked for (``OUT/sweep.json``, written when a sweep starts) is one of:
- ``done``: its ok record, with the unbiased test accuracy as selected, the oracle and the run's time;
- ``failed``: its failed record, with the error (a sweep does not rerun it: remove the record to retry), even
  where a checkpoint of it is left;
- ``running`` / ``interrupted``: it has an in-run checkpoint; running while the folder's sweep lock is held
  and its checkpoint is among the sweep's ``--jobs`` most recently written (an older one waits its turn);
  its stage, epoch and step from the checkpoint, the last test evaluation, optimiser steps per second
  between its two newest checkpoints and over the whole run so far (every phase counted: evaluations and
  checkpoints too), and the time left at the first of the two (the machine's pace now: a run resumed on a
  faster or slower machine, or one that shared the CPU for a while, is not projected at its average; an
  interval with a resume in it is skipped for the whole-run rate); a run with no pace of its own yet (one
  checkpoint, at step 0) at the dataset's, as below (``~``);
- ``not started``: projected from a finished run of the same method and dataset, else from the steps its
  schedule takes and the seconds per step seen on the dataset, scaled by its number of models (``~``): the
  runs in progress give that pace (the machine's now), else the finished runs (their whole time).

Then the whole sweep's projected time left, in run-hours and in wall-clock hours at the sweep's
``--jobs``. A run resumed on another machine under native numerics is flagged (``mixed machines``).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.checkpoint import FOLDER as CHECKPOINTS
from bench.sweep_lock import LOCK_NAME
from reporting.records import RecordError, mixed_machines, read_records
from reporting.report import portable_command
from reporting.tables import ratio_label

MANIFEST = "sweep.json"


class StatusError(ValueError):
    """The folder is not a sweep's; one-line message."""


@dataclass
class RunState:
    run: dict[str, Any]
    state: str
    figure: str = ""
    where: str = ""
    last_eval: str = ""
    steps_per_s: float | None = None  # over the whole run so far
    recent_per_s: float | None = None  # between the run's two newest checkpoints
    left_s: float | None = None
    estimated: bool = False
    note: str = ""


def sweep_running(out: Path) -> bool:
    """Whether a live sweep holds the folder's lock (``bench.sweep_lock``)."""
    path = out / LOCK_NAME
    if not path.exists():
        return False
    with path.open("r") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return False


def load_manifest(out: Path) -> dict[str, Any]:
    path = out / MANIFEST
    if not out.is_dir():
        raise StatusError(f"{out} is not a folder")
    if not path.is_file():
        raise StatusError(f"{out} is not a sweep's folder: no {MANIFEST} (run_bench.py writes one when a sweep "
                          "starts)")
    try:
        manifest = json.loads(path.read_text())
        manifest["runs"] = [dict(run) for run in manifest["runs"]]
        missing = [name for run in manifest["runs"]
                   for name in ("key", "method", "dataset", "ratio", "seed", "hparams") if name not in run]
        if missing:
            raise KeyError(missing[0])
    except (ValueError, KeyError, TypeError) as error:
        raise StatusError(f"{path} is not a sweep manifest ({type(error).__name__}: {error})") from None
    return manifest


def read_checkpoints(out: Path, key: str) -> list[tuple[dict[str, Any], float]]:
    """The readable in-run checkpoints of run ``key``, newest first: each one's state (memory-mapped: the
    weights are not read) and the file's modification time."""
    found = []
    for name in (f"{key}.pt", f"{key}.prev.pt"):
        path = out / CHECKPOINTS / name
        if not path.is_file():
            continue
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            written = path.stat().st_mtime
        except Exception:  # truncated or being replaced: try the previous one
            continue
        if isinstance(saved, dict) and isinstance(saved.get("state"), dict):
            found.append((saved["state"], written))
    return found


def step_rates(state: dict[str, Any], previous: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """Optimiser steps per second (so far, between ``previous`` and ``state``) of one run's checkpoints;
    None where there is nothing to divide."""
    plan = state.get("plan")
    if plan is None:
        return None, None
    done, wall = steps_done(plan, state), float(state.get("wall_s", 0.0))
    so_far = done / wall if done > 0 and wall > 0 else None
    if previous is None or previous.get("plan") != plan:
        return so_far, None
    if len(state.get("resumed_from") or []) != len(previous.get("resumed_from") or []):
        return so_far, None  # resumed in between: the interval holds a restart, not the machine's pace
    steps, seconds = done - steps_done(plan, previous), wall - float(previous.get("wall_s", 0.0))
    return so_far, steps / seconds if steps > 0 and seconds > 0 else None


def planned_steps(plan: dict[str, Any], state: dict[str, Any], batch_size: int) -> int:
    """Optimiser steps of the whole run: each stage's budget, else its epochs times the epoch length: the
    logged one where the stage has finished an epoch, else the current epoch's order where the run is
    inside one (sampling may lengthen an epoch, e.g. JTT's upsampling), else a uniform epoch's."""
    total = 0
    for index, stage in enumerate(plan["stages"]):
        if stage.get("steps"):
            total += int(stage["steps"])
            continue
        rows = [row["steps"] for row in state["log"] if row["stage"] == stage["name"]]
        order = state.get("epoch_order")
        if rows:
            per_epoch = rows[0]
        elif index == state["position"]["stage"] and order is not None:
            per_epoch = math.ceil(len(order) / batch_size)
        else:
            per_epoch = plan["steps_per_epoch"]
        total += int(stage["epochs"]) * int(per_epoch)
    return total


def steps_done(plan: dict[str, Any], state: dict[str, Any]) -> int:
    """Steps finished: every earlier stage's (from the log) and the current one's."""
    position = state["position"]
    names = [stage["name"] for stage in plan["stages"]]
    done = sum(state["stage_steps"].get(name, 0) for name in names[: position["stage"]])
    return done + int(position["steps"])


def models_per_step(state: dict[str, Any]) -> float:
    """Models trained per optimiser step of a checkpointed run: all of them at every step for a one-stage
    method (LfF, DFA), one per stage for a multi-stage one (PGD, JTT)."""
    return (len(state.get("method", {}).get("optimizers", {})) or 1) / len(state["plan"]["stages"])


def in_progress(run: dict[str, Any], state: dict[str, Any], running: bool,
                previous: dict[str, Any] | None = None, seconds_per_model_step: float | None = None) -> RunState:
    """``seconds_per_model_step``: the dataset's pace, for a run whose checkpoints give none of its own (one
    written at step 0)."""
    plan, position = state.get("plan"), state["position"]
    status = RunState(run, "running" if running else "interrupted")
    if plan is None:
        status.note = "checkpoint without a plan (older code): no projection"
        return status
    stages = plan["stages"]
    stage = stages[min(position["stage"], len(stages) - 1)]
    status.where = (f"{stage['name']} ({position['stage'] + 1}/{len(stages)}), epoch {position['epoch']}/"
                    f"{stage['epochs']}, step {position['steps']}")
    curve = state.get("oracle", {}).get("curve") or []
    if curve:
        status.last_eval = f"test {100 * curve[-1][1]:.2f} % at step {curve[-1][0]}"
    elif state["log"] and state["log"][-1].get("valid_acc") is not None:
        row = state["log"][-1]
        status.last_eval = f"valid {100 * row['valid_acc']:.2f} % after epoch {row['epoch']}"
    done, total = steps_done(plan, state), planned_steps(plan, state, int(run["hparams"].get("batch_size", 1)))
    status.steps_per_s, status.recent_per_s = step_rates(state, previous)
    pace = status.recent_per_s or status.steps_per_s
    if pace:
        status.left_s = max(total - done, 0) / pace
    elif seconds_per_model_step is not None:
        status.left_s = max(total - done, 0) * seconds_per_model_step * models_per_step(state)
        status.estimated = True
        status.note = "~ at the dataset's seconds per model-step: no pace of its own yet"
    status.figure = f"{done:,} of {total:,} steps ({100 * done / total:.1f} %)" if total else ""
    mixed = mixed_machines(state.get("resumed_from") or [])
    if mixed:  # beside the projection's note, not instead of it
        status.note = "; ".join(filter(None, ["mixed machines: " + "; ".join(mixed), status.note]))
    return status


def models_and_steps(run: dict[str, Any], train_size: int) -> tuple[float, int] | None:
    """(models trained per step, optimiser steps) of a run not started yet: its method built on the meta
    device (no memory, no compute) over a training set of ``train_size``. A multi-stage method is taken to
    train its models one stage each (PGD, JTT), a one-stage method all of them at every step (LfF, DFA).
    None where that fails."""
    from datasets import DATASETS
    from methods import METHODS, RunContext

    hparams = dict(run["hparams"])
    if hparams.get("pretrained"):
        return None  # building it would fetch weights
    try:
        dataset = DATASETS[run["dataset"]](run.get("dataset_options") or dict(DATASETS[run["dataset"]].OPTIONS))
        cls = METHODS[run["method"]]
        targets = torch.arange(train_size) % dataset.num_classes
        # Bias-supervised methods read their groups at setup: stand-in labels, only the schedule is read.
        ctx = RunContext(dataset.num_classes, dataset.model_input_shape(), targets, torch.device("meta"),
                         torch.Generator(), targets.clone() if cls.BIAS_SUPERVISED else None)
        with torch.device("meta"):  # models without memory or initialisation
            method = cls(hparams, ctx)
        stages = method.stages()
        per_epoch = method.steps_per_epoch()
    except Exception:
        return None
    steps = sum(stage.steps if stage.steps else stage.epochs * per_epoch for stage in stages)
    return len(method.models) / len(stages), steps


def not_started(run: dict[str, Any], finished: list[dict[str, Any]], rates: dict[str, tuple[float, int]],
                sizes: dict[str, int]) -> RunState:
    status = RunState(run, "not started")
    same = [r["timing"]["total_s"] for r in finished
            if r["method"] == run["method"] and r["dataset"] == run["dataset"] and r.get("timing")]
    if same:
        status.left_s = sum(same) / len(same)
        status.note = f"projected from {len(same)} finished {run['method']} run(s)"
        return status
    if run["dataset"] in rates and run["dataset"] in sizes:
        seconds_per_step_per_model, _ = rates[run["dataset"]]
        shape = models_and_steps(run, sizes[run["dataset"]])
        if shape is not None:
            models, steps = shape
            status.left_s = steps * seconds_per_step_per_model * models
            status.estimated = True
            status.note = f"~ {steps:,} steps x {models:g} model(s) per step at the dataset's seconds per model-step"
    return status


def dataset_rates(states: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]],
                  finished: list[dict[str, Any]], runs: dict[str, dict[str, Any]],
                  ) -> tuple[dict[str, tuple[float, int]], dict[str, int]]:
    """Per dataset: seconds per optimiser step and model, from the runs in progress (their two newest
    checkpoints, else their whole run so far: the machine's pace now), else from the finished runs (their
    whole time over their schedule's steps); and the training set's size (records, or a plan's epoch
    length times the batch). ``runs``: the manifest's runs by key."""
    per_dataset: dict[str, tuple[float, int]] = {}
    sizes: dict[str, int] = {}
    for record in finished:
        sizes.setdefault(record["dataset"], int(record.get("dataset_sizes", {}).get("train", 0)) or 0)

    def add(rates: dict[str, tuple[float, int]], dataset: str, seconds_per_model_step: float) -> None:
        seconds, count = rates.get(dataset, (0.0, 0))
        rates[dataset] = ((seconds * count + seconds_per_model_step) / (count + 1), count + 1)

    for run, state, previous in states:
        plan = state.get("plan")
        if plan is None:
            continue
        so_far, recent = step_rates(state, previous)
        if recent or so_far:
            add(per_dataset, run["dataset"], 1 / (recent or so_far) / models_per_step(state))
        if not sizes.get(run["dataset"]):
            sizes[run["dataset"]] = int(plan["steps_per_epoch"]) * int(run["hparams"].get("batch_size", 1))
    from_records: dict[str, tuple[float, int]] = {}
    for record in finished:
        run, seconds = runs.get(record.get("key", "")), (record.get("timing") or {}).get("total_s")
        if run is None or not seconds or not sizes.get(record["dataset"]):
            continue
        shape = models_and_steps(run, sizes[record["dataset"]])
        if shape is not None and shape[1] > 0:
            add(from_records, record["dataset"], float(seconds) / shape[1] / shape[0])
    for dataset, rate in from_records.items():
        per_dataset.setdefault(dataset, rate)
    return per_dataset, {name: size for name, size in sizes.items() if size}


def hours(seconds: float | None, estimated: bool = False) -> str:
    if seconds is None:
        return "unknown"
    return f"{'~' if estimated else ''}{seconds / 3600:.1f} h"


def collect(out: Path) -> tuple[dict[str, Any], list[RunState], bool]:
    manifest = load_manifest(out)
    results = out / "results.jsonl"
    records: list[dict[str, Any]] = []
    if results.is_file():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a torn last line is the running sweep's to mend
            records = read_records(results, on_bad=lambda _: None)
    latest: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("key"):
            latest[record["key"]] = record if record.get("status") == "ok" else latest.get(record["key"], record)
    finished = [r for r in latest.values() if r.get("status") == "ok"]
    running = sweep_running(out)
    found = {run["key"]: read_checkpoints(out, run["key"]) for run in manifest["runs"]}
    checkpoints = {key: entries[0][0] if entries else None for key, entries in found.items()}
    previous = {key: entries[1][0] if len(entries) > 1 else None for key, entries in found.items()}
    # The sweep works on at most --jobs runs at once: the ones whose checkpoints it wrote last.
    done = set(latest)  # ok or failed: the sweep runs neither again
    newest = sorted((entries[0][1], key) for key, entries in found.items() if entries and key not in done)[::-1]
    active_keys = {key for _, key in newest[: max(1, int(manifest.get("jobs") or 1))]} if running else set()
    active = [(run, checkpoints[run["key"]], previous[run["key"]]) for run in manifest["runs"]
              if checkpoints[run["key"]] is not None and run["key"] not in done]
    rates, sizes = dataset_rates(active, finished, {run["key"]: run for run in manifest["runs"]})
    states = []
    for run in manifest["runs"]:
        record, state = latest.get(run["key"]), checkpoints[run["key"]]
        if record is not None and record.get("status") == "ok":
            oracle = record.get("oracle_test_acc")
            figure = f"test {100 * record['test_acc']:.2f} %" + (
                f" (oracle {100 * oracle:.2f} %)" if isinstance(oracle, float) else "")
            mixed = mixed_machines(record.get("resumed_from") or [])
            states.append(RunState(run, "done", figure, f"finished in {record['timing']['total_s'] / 3600:.1f} h",
                                   note="mixed machines: " + "; ".join(mixed) if mixed else ""))
        elif record is not None:  # failed: the sweep does not rerun it, whatever checkpoint is left
            states.append(RunState(run, "failed", note=str(record.get("error", ""))[:120]))
        elif state is not None:
            pace = rates.get(run["dataset"], (None, 0))[0]
            states.append(in_progress(run, state, run["key"] in active_keys, previous[run["key"]], pace))
        else:
            states.append(not_started(run, finished, rates, sizes))
    return manifest, states, running


PACE = ("steps/s: optimiser steps per second between the run's two newest checkpoints, and over the whole run so "
        "far (every phase counted); the time left is projected at the first, the machine's pace now.")


def render(out: Path) -> str:
    manifest, states, running = collect(out)
    rows = ["| run | status | figure | where | last evaluation | steps/s | time left | note |",
            "|---|---|---|---|---|---|---|---|"]
    for s in states:
        run = s.run
        name = f"{run['method']} {run['dataset']} {ratio_label(run['ratio'])} seed {run['seed']}"
        if run.get("hparams_seed"):
            name += f" (hparams {run['hparams_seed']})"
        rate = f"{s.steps_per_s:.3f}" if s.steps_per_s else ""
        if s.recent_per_s:
            rate = f"{s.recent_per_s:.3f} (so far {rate})"
        left = "" if s.state in ("done", "failed") else hours(s.left_s, s.estimated)
        rows.append(f"| {name} | {s.state} | {s.figure} | {s.where} | {s.last_eval} | {rate} | {left} | {s.note} |")
    counts = {state: sum(s.state == state for s in states)
              for state in ("done", "running", "interrupted", "failed", "not started")}
    pending = [s for s in states if s.state not in ("done", "failed")]
    known = [s.left_s for s in pending if s.left_s is not None]
    unknown = len(pending) - len(known)
    jobs = max(1, int(manifest.get("jobs") or 1))
    total = sum(known)
    left = f"{total / 3600:.1f} run-hours" + (f" (and {unknown} run(s) not projected)" if unknown else "")
    wall = f"; at --jobs {jobs}, about {total / 3600 / jobs:.1f} h of wall time" if jobs > 1 and known else ""
    summary = (f"{len(states)} runs: " + ", ".join(f"{n} {state}" for state, n in counts.items() if n)
               + f". Sweep {'running' if running else 'not running'}. Projected time left: "
               + (left + wall if pending else "none") + ".")
    command = portable_command(manifest["command"], out) if manifest.get("command") else ""
    return "\n".join([f"# Sweep status: {out.name}", "", f"Command (paths relative to the checkout): `{command}`",
                      f"Commit: {manifest.get('git_commit')}", "", summary, "", *rows, "", PACE]) + "\n"


def status(argv: list[str]) -> int:
    """``run_bench.py status OUT [--write FILE]``: print (or also write) the sweep's state."""
    parser = argparse.ArgumentParser(prog="run_bench.py status", description="a sweep's state at a glance")
    parser.add_argument("out", help="the sweep's output folder")
    parser.add_argument("--write", default=None, metavar="FILE", help="also write the table to FILE")
    args = parser.parse_args(argv)
    try:
        text = render(Path(args.out))
    except (StatusError, RecordError) as error:
        print(f"run_bench.py: error: {error}", file=sys.stderr)
        return 2
    if args.write:
        Path(args.write).write_text(text)
    print(text, end="")
    return 0

