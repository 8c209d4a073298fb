"""The training loop shared by every method: stages, epochs, validation, model selection, test.

Model selection, hyperparameter ``selection`` (set per dataset by its protocol), within the stage marked
``select``:
- ``best_valid_loss`` (PGD's official code): the checkpoint with the lowest loss on the (biased)
  validation split, ties going to the later epoch;
- ``last_epoch`` (LfF's protocol, which has no validation split): the final model.
The last epoch's test metrics are recorded in either case. The test split never takes part.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from bench.data import DeviceSplit, epoch_order, iterate_batches
from bench.metrics import evaluate
from datasets.base import Augmentation
from methods import Method, TrainView
from methods.base import inference_layout

SELECTIONS = ("best_valid_loss", "last_epoch")


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

    def hook_batches(size: int, augment: bool):
        order = torch.arange(len(data.train), device=device)
        return iterate_batches(data.train, order, size, data.augment if augment else None, generator)

    view = TrainView(hook_batches)
    log: list[dict[str, Any]] = []
    phases: dict[str, float] = {}
    samples_seen = 0
    best: dict[str, Any] | None = None
    stages = method.stages()
    total_epochs = sum(stage.epochs for stage in stages)
    bar = tqdm(total=total_epochs, desc=method.name, unit="epoch", leave=False, disable=not progress)
    for stage in stages:
        method.start_stage(stage, view)
        best_loss = float("inf")
        for epoch in range(stage.epochs):
            start = time.perf_counter()
            method.models.train()
            order = epoch_order(len(data.train), method.sampling(), generator, device)
            sums: dict[str, torch.Tensor] = {}
            for batch in iterate_batches(data.train, order, batch_size, data.augment, generator):
                with autocast():
                    stats = method.update(batch)
                for key, value in stats.items():
                    weighted = value.detach().float() * len(batch.y)
                    sums[key] = sums[key] + weighted if key in sums else weighted
            lr = method.learning_rate()
            method.end_epoch(stage)
            totals = torch.stack(list(sums.values())).tolist()  # one host sync per epoch
            train_stats = {f"train_{k}": v / len(order) for k, v in zip(sums, totals, strict=True)}
            if not math.isfinite(train_stats.get("train_loss", 0.0)):
                raise FloatingPointError(f"non-finite training loss in stage {stage.name}, epoch {epoch + 1}")
            samples_seen += len(order)
            _sync(device)
            phases[stage.name] = phases.get(stage.name, 0.0) + time.perf_counter() - start

            start = time.perf_counter()
            method.models.eval()
            valid = evaluate_split(data.valid)
            phases["eval"] = phases.get("eval", 0.0) + time.perf_counter() - start
            log.append({
                "stage": stage.name, "epoch": epoch + 1, "lr": lr, **train_stats,
                "valid_loss": valid["loss"], "valid_acc": valid["acc"],
            })
            last_of_stage = epoch + 1 == stage.epochs
            if stage.select and selection == "best_valid_loss" and valid["loss"] <= best_loss:
                best_loss = valid["loss"]
                best = {"stage": stage.name, "epoch": epoch + 1, "valid_loss": best_loss,
                        "state": method.snapshot()}
            elif stage.select and selection == "last_epoch" and last_of_stage:
                best = {"stage": stage.name, "epoch": epoch + 1, "valid_loss": valid["loss"], "state": None}
            bar.set_postfix(stage=stage.name, loss=f"{train_stats.get('train_loss', float('nan')):.3f}",
                            valid_acc=f"{valid['acc']:.3f}")
            bar.update()
        method.end_stage(stage, view)
    bar.close()

    start = time.perf_counter()
    method.models.eval()
    last = evaluate_split(data.test)
    if best is None:
        raise RuntimeError(f"method {method.name!r} declares no stage with select=True")
    state = best.pop("state")
    if state is None:
        selected = last
    else:
        method.restore(state)
        method.models.eval()
        selected = evaluate_split(data.test)
    phases["eval"] = phases.get("eval", 0.0) + time.perf_counter() - start
    phases.update(method.phase_seconds)
    train_seconds = sum(phases[stage.name] for stage in stages if stage.name in phases)
    return {
        "epochs": log,
        "selection": selection,
        "selected": best,
        "test": selected,
        "last_epoch_test": last,
        "phases": phases,
        "method_info": method.summary(),
        "train_samples_per_s": samples_seen / train_seconds if train_seconds > 0 else None,
    }
