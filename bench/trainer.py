"""The training loop shared by every method: stages, epochs, validation, model selection, test.

Model selection, hyperparameter ``selection`` (set per dataset by its protocol), within the stage marked
``select``:
- ``best_valid_loss`` (PGD's official code): the checkpoint with the lowest loss on the (biased)
  validation split, ties going to the later epoch;
- ``last_epoch`` (LfF's protocol, which has no validation split): the final model.
The last epoch's test metrics are recorded in either case. The test split never takes part in selection;
it is evaluated along the selected stage only for the labelled ``oracle`` figure (``bench.oracle``).

A protocol without a validation split (``cmnist-lff`` with LfF's split) skips validation; it allows only
``last_epoch``. A stage with a step budget (``Stage.steps``, from the ``iterations`` hyperparameter) stops
after exactly that many optimiser steps, within its last epoch.

After selection, ``bench.diagnostics`` scores the selected model (conflict detection, bias probe) with the
bias labels, for the record only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from bench.data import DeviceSplit, epoch_order, iterate_batches
from bench.diagnostics import run_diagnostics
from bench.metrics import evaluate
from bench.oracle import OracleTracker
from datasets.base import Augmentation
from methods import Method, TrainView
from methods.base import inference_layout

SELECTIONS = ("best_valid_loss", "last_epoch")
# Validation figures logged per epoch. The group ones use the split's bias labels, for analysis and for
# tuning rules that need them (JTT's own tunes on validation group accuracy); selection reads only loss.
VALID_LOG = ("loss", "acc", "aligned_acc", "conflicting_acc", "worst_group_acc")


@dataclass
class DeviceData:
    train: DeviceSplit
    valid: DeviceSplit
    test: DeviceSplit
    num_classes: int
    augment: Augmentation | None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_and_evaluate(
    method: Method, data: DeviceData, generator: torch.Generator, progress: bool = True,
    amp: bool = False,
) -> dict[str, Any]:
    """Train ``method`` through all its stages; return the epoch log, selection and test metrics.
    ``amp``: bf16 autocast for training steps and evaluation."""
    device = data.train.targets.device
    batch_size = int(method.hp["batch_size"])

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)

    def evaluate_split(split):
        with autocast(), inference_layout(method.models):
            return evaluate(method.predict, split, data.num_classes)

    selection = method.hp.get("selection", "best_valid_loss")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection}")
    has_valid = len(data.valid) > 0
    if selection == "best_valid_loss" and not has_valid:
        raise ValueError("selection best_valid_loss needs a validation split; this protocol has none "
                         "(use last_epoch, or a split option that holds one out)")
    drop_last = bool(method.hp.get("drop_last", False))
    oracle = OracleTracker(int(method.hp.get("oracle_every_steps", 0)))

    def hook_batches(size: int, augment: bool):
        order = torch.arange(len(data.train), device=device)
        return iterate_batches(data.train, order, size, data.augment if augment else None, generator)

    def oracle_evaluation(stage_name: str, epoch: int, steps_done: int) -> None:
        start = time.perf_counter()
        method.models.eval()
        oracle.offer(evaluate_split(data.test), stage_name, epoch, steps_done)
        method.models.train()
        phases["oracle_eval"] = phases.get("oracle_eval", 0.0) + time.perf_counter() - start

    view = TrainView(hook_batches)
    log: list[dict[str, Any]] = []
    phases: dict[str, float] = {}
    stage_steps: dict[str, int] = {}
    samples_seen = 0
    best: dict[str, Any] | None = None
    stages = method.stages()
    total_epochs = sum(stage.epochs for stage in stages)
    bar = tqdm(total=total_epochs, desc=method.name, unit="epoch", leave=False, disable=not progress)
    for stage in stages:
        method.start_stage(stage, view)
        best_loss = float("inf")
        steps_done = 0
        for epoch in range(stage.epochs):
            start = time.perf_counter()
            oracle_start = phases.get("oracle_eval", 0.0)
            method.models.train()
            order = epoch_order(len(data.train), method.sampling(), generator, device)
            sums: dict[str, torch.Tensor] = {}
            epoch_samples = 0
            for batch in iterate_batches(data.train, order, batch_size, data.augment, generator, drop_last):
                with autocast():
                    stats = method.update(batch)
                for key, value in stats.items():
                    weighted = value.detach().float() * len(batch.y)
                    sums[key] = sums[key] + weighted if key in sums else weighted
                epoch_samples += len(batch.y)
                steps_done += 1
                if stage.select and oracle.due(steps_done - 1):
                    oracle_evaluation(stage.name, epoch + 1, steps_done)
                if stage.steps is not None and steps_done >= stage.steps:
                    break
            if epoch_samples == 0:
                raise ValueError(f"stage {stage.name}: an epoch with no batch (training set smaller than the "
                                 "batch with drop_last)")
            lr = method.learning_rate()
            method.end_epoch(stage)
            totals = torch.stack(list(sums.values())).tolist()  # one host sync per epoch
            train_stats = {f"train_{k}": v / epoch_samples for k, v in zip(sums, totals, strict=True)}
            if not math.isfinite(train_stats.get("train_loss", 0.0)):
                raise FloatingPointError(f"non-finite training loss in stage {stage.name}, epoch {epoch + 1}")
            samples_seen += epoch_samples
            _sync(device)
            oracle_seconds = phases.get("oracle_eval", 0.0) - oracle_start
            phases[stage.name] = phases.get(stage.name, 0.0) + time.perf_counter() - start - oracle_seconds

            last_of_stage = epoch + 1 == stage.epochs
            if stage.select and oracle.every_steps == 0:
                oracle_evaluation(stage.name, epoch + 1, steps_done)
            start = time.perf_counter()
            method.models.eval()
            valid = evaluate_split(data.valid) if has_valid else dict.fromkeys(VALID_LOG, None)
            phases["eval"] = phases.get("eval", 0.0) + time.perf_counter() - start
            log.append({
                "stage": stage.name, "epoch": epoch + 1, "steps": steps_done, "lr": lr, **train_stats,
                **{f"valid_{key}": valid[key] for key in VALID_LOG},
            })
            if stage.select and selection == "best_valid_loss" and valid["loss"] <= best_loss:
                best_loss = valid["loss"]
                best = {"stage": stage.name, "epoch": epoch + 1, "valid_loss": best_loss,
                        "state": method.snapshot()}
            elif stage.select and selection == "last_epoch" and last_of_stage:
                best = {"stage": stage.name, "epoch": epoch + 1, "valid_loss": valid["loss"], "state": None}
            valid_text = "–" if valid["acc"] is None else f"{valid['acc']:.3f}"
            bar.set_postfix(stage=stage.name, loss=f"{train_stats.get('train_loss', float('nan')):.3f}",
                            valid_acc=valid_text)
            bar.update()
        stage_steps[stage.name] = steps_done
        method.end_stage(stage, view)
    bar.close()

    start = time.perf_counter()
    method.models.eval()
    last = evaluate_split(data.test)
    if best is None:
        raise RuntimeError(f"method {method.name!r} declares no stage with select=True")
    final = stages[-1]
    if final.select and (not oracle.curve or oracle.curve[-1][0] != stage_steps[final.name]):
        oracle.offer(last, final.name, final.epochs, stage_steps[final.name])  # the final model, if off the grid
    state = best.pop("state")
    if state is None:
        selected = last
    else:
        method.restore(state)
        method.models.eval()
        selected = evaluate_split(data.test)
    phases["eval"] = phases.get("eval", 0.0) + time.perf_counter() - start
    start = time.perf_counter()
    try:
        with autocast(), inference_layout(method.models):
            diagnostics = run_diagnostics(method, data.train, data.test)
    except Exception as error:  # an analysis that fails must not cost the run its results
        diagnostics = {"error": f"{type(error).__name__}: {error}"}
    phases["diagnostics"] = time.perf_counter() - start
    phases.update(method.phase_seconds)
    train_seconds = sum(phases[stage.name] for stage in stages if stage.name in phases)
    return {
        "epochs": log,
        "selection": selection,
        "selected": best,
        "test": selected,
        "last_epoch_test": last,
        "oracle": oracle.summary(),
        "diagnostics": diagnostics,
        "stage_steps": stage_steps,
        "phases": phases,
        "method_info": method.summary(),
        "train_samples_per_s": samples_seen / train_seconds if train_seconds > 0 else None,
    }
