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

In-run checkpoints (``bench.checkpoint``): the loop's whole state -- its position (stage, epoch, step,
batch within the epoch), the method's state, selection, oracle, epoch log, timing and every random
generator -- is saved after each stage's start hook (where PGD scores and JTT builds its error set) and at
epoch ends, and a run that finds a checkpoint continues from it, bit-identical on the CPU. By default an
epoch-end checkpoint is skipped while the last one is more recent than 20 times its own write time, which
holds checkpointing under 5 % of the run; ``Checkpointing.every_steps`` asks for fixed intervals instead.

After selection, ``bench.diagnostics`` scores the selected model (conflict detection, bias probe) with the
bias labels, for the record only.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from bench.checkpoint import Checkpointer, rng_state, set_rng_state
from bench.data import DeviceSplit, epoch_order, iterate_batches
from bench.diagnostics import run_diagnostics
from bench.faults import kill_point, kill_point_armed
from bench.metrics import evaluate
from bench.oracle import OracleTracker
from datasets.base import Augmentation
from methods import Method, TrainView
from methods.base import Stage, inference_layout

SELECTIONS = ("best_valid_loss", "last_epoch")
# Validation figures logged per epoch. The group ones use the split's bias labels, for analysis and for
# tuning rules that need them (JTT's own tunes on validation group accuracy); selection reads only loss.
VALID_LOG = ("loss", "acc", "aligned_acc", "conflicting_acc", "worst_group_acc")
# Automatic checkpoints wait until this many times the last checkpoint's write time has passed.
AUTO_SPACING = 20


@dataclass
class DeviceData:
    train: DeviceSplit
    valid: DeviceSplit
    test: DeviceSplit
    num_classes: int
    augment: Augmentation | None


@dataclass(frozen=True)
class Checkpointing:
    """Where and how often a run checkpoints. ``every_steps``: None, automatic (stage starts and epoch
    ends, spaced to cost under 5 %); 0, every stage start and epoch end; N > 0, also every N optimiser
    steps within an epoch (for long epochs or iteration budgets)."""

    checkpointer: Checkpointer
    every_steps: int | None = None


@dataclass
class Position:
    """Where the loop stands: stage index, whether its start hook ran, epochs finished in it, optimiser
    steps taken in it, batches finished of the current epoch."""

    stage: int = 0
    started: bool = False
    epoch: int = 0
    steps: int = 0
    batch: int = 0


@dataclass
class LoopState:
    """Everything the loop accumulates, saved whole in a checkpoint."""

    position: Position = field(default_factory=Position)
    epoch_order: torch.Tensor | None = None  # the current epoch's sample order, while inside it
    epoch_sums: dict[str, torch.Tensor] = field(default_factory=dict)
    epoch_samples: int = 0
    log: list[dict[str, Any]] = field(default_factory=list)
    phases: dict[str, float] = field(default_factory=dict)
    stage_steps: dict[str, int] = field(default_factory=dict)
    samples_seen: int = 0
    best_loss: float = float("inf")
    best: dict[str, Any] | None = None
    wall_s: float = 0.0  # run time up to the last checkpoint, restored work only
    resumed_from: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: dict[str, float] = field(default_factory=lambda: {"count": 0, "seconds": 0.0, "bytes": 0})


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def weights_sha256(module: torch.nn.Module) -> str:
    """A hash of every parameter and buffer, by name: equal hashes mean bit-identical weights."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Training:
    """One run of ``method`` through all its stages (see the module docstring)."""

    def __init__(self, method: Method, data: DeviceData, generator: torch.Generator, progress: bool,
                 amp: bool, checkpointing: Checkpointing | None, tracer: Any = None):
        self.method, self.data, self.generator = method, data, generator
        self.tracer = tracer  # bench.trace.Tracer: reads the arithmetic around each step, changes none of it
        self.progress, self.amp, self.checkpointing = progress, amp, checkpointing
        self.device = data.train.targets.device
        self.batch_size = int(method.hp["batch_size"])
        self.selection = method.hp.get("selection", "best_valid_loss")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {self.selection}")
        self.has_valid = len(data.valid) > 0
        if self.selection == "best_valid_loss" and not self.has_valid:
            raise ValueError("selection best_valid_loss needs a validation split; this protocol has none "
                             "(use last_epoch, or a split option that holds one out)")
        self.drop_last = bool(method.hp.get("drop_last", False))
        self.oracle = OracleTracker(int(method.hp.get("oracle_every_steps", 0)))
        self.view = TrainView(self.hook_batches)
        self.stages = method.stages()
        self.state = LoopState()
        self.session_start = time.perf_counter()
        self.last_checkpoint_end = -math.inf
        self.last_checkpoint_cost = 0.0
        self.kill_armed = kill_point_armed()

    # --- helpers ------------------------------------------------------------------------------
    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp)

    def evaluate_split(self, split: DeviceSplit) -> dict[str, Any]:
        with self.autocast(), inference_layout(self.method.models):
            return evaluate(self.method.predict, split, self.data.num_classes)

    def hook_batches(self, size: int, augment: bool):
        order = torch.arange(len(self.data.train), device=self.device)
        return iterate_batches(self.data.train, order, size, self.data.augment if augment else None, self.generator)

    def add_phase(self, name: str, seconds: float) -> None:
        self.state.phases[name] = self.state.phases.get(name, 0.0) + seconds

    def oracle_evaluation(self, stage: Stage, epoch: int) -> None:
        start = time.perf_counter()
        self.method.models.eval()
        self.oracle.offer(self.evaluate_split(self.data.test), stage.name, epoch, self.state.position.steps)
        self.method.models.train()
        self.add_phase("oracle_eval", time.perf_counter() - start)

    def fault(self, label: str) -> None:
        if self.kill_armed:
            kill_point(label)

    # --- checkpoints --------------------------------------------------------------------------
    def snapshot_state(self) -> dict[str, Any]:
        state = self.state
        return {
            "position": asdict(state.position),
            "epoch_order": state.epoch_order,
            "epoch_sums": state.epoch_sums,
            "epoch_samples": state.epoch_samples,
            "log": state.log,
            "phases": state.phases,
            "stage_steps": state.stage_steps,
            "samples_seen": state.samples_seen,
            "best_loss": state.best_loss,
            "best": state.best,
            "wall_s": state.wall_s + time.perf_counter() - self.session_start,
            "resumed_from": state.resumed_from,
            "checkpoints": state.checkpoints,
            "oracle": {"best": self.oracle.best, "curve": self.oracle.curve},
            # For ``run_bench.py status``: the run's length, read without building the method.
            "plan": {"stages": [asdict(stage) for stage in self.stages],
                     "steps_per_epoch": self.method.steps_per_epoch()},
            "method": self.method.state_dict(),
            "rng": rng_state(self.generator),
        }

    def checkpoint(self, spaced: bool) -> None:
        """Save the whole state; ``spaced``: skip it while the automatic spacing says it is too soon."""
        if self.checkpointing is None:
            return
        now = time.perf_counter()
        if spaced and self.checkpointing.every_steps is None and \
                now - self.last_checkpoint_end < AUTO_SPACING * self.last_checkpoint_cost:
            return
        _sync(self.device)
        counts = self.state.checkpoints
        size = self.checkpointing.checkpointer.save(self.snapshot_state())
        cost = time.perf_counter() - now
        counts["count"] += 1
        counts["seconds"] += cost
        counts["bytes"] = size
        self.add_phase("checkpoint", cost)
        self.last_checkpoint_cost, self.last_checkpoint_end = cost, time.perf_counter()

    def resume(self) -> None:
        if self.checkpointing is None:
            return
        saved = self.checkpointing.checkpointer.load()
        if saved is None:
            return
        device = self.device
        self.method.load_state_dict(saved["method"])
        order = saved["epoch_order"]
        self.state = LoopState(
            position=Position(**saved["position"]),
            epoch_order=None if order is None else order.to(device),
            epoch_sums={key: value.to(device) for key, value in saved["epoch_sums"].items()},
            epoch_samples=saved["epoch_samples"],
            log=saved["log"],
            phases=saved["phases"],
            stage_steps=saved["stage_steps"],
            samples_seen=saved["samples_seen"],
            best_loss=saved["best_loss"],
            best=saved["best"],
            wall_s=saved["wall_s"],
            resumed_from=saved["resumed_from"],
            checkpoints=saved["checkpoints"],
        )
        if self.state.best is not None and self.state.best.get("state") is not None:
            self.state.best["state"] = {k: v.to(device) for k, v in self.state.best["state"].items()}
        self.oracle.best = saved["oracle"]["best"]
        self.oracle.curve = saved["oracle"]["curve"]
        set_rng_state(saved["rng"], self.generator)
        position = self.state.position
        stage = self.stages[min(position.stage, len(self.stages) - 1)].name
        checkpointer = self.checkpointing.checkpointer
        written = checkpointer.loaded_from or {}
        # Which machine computed up to here and which goes on: native numerics may resume on another CPU.
        self.state.resumed_from.append({"stage": stage, "epoch": position.epoch, "step": position.steps,
                                        "batch": position.batch, "machine": checkpointer.machine,
                                        "numerics": checkpointer.numerics, "written_on": written.get("machine"),
                                        "written_numerics": written.get("numerics")})

    # --- the loop -----------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.session_start = time.perf_counter()
        self.resume()
        state = self.state
        done = sum(s.epochs for s in self.stages[:state.position.stage]) + state.position.epoch
        bar = tqdm(total=sum(s.epochs for s in self.stages), initial=done, desc=self.method.name, unit="epoch",
                   leave=False, disable=not self.progress)
        while state.position.stage < len(self.stages):
            stage = self.stages[state.position.stage]
            if not state.position.started:
                self.method.start_stage(stage, self.view)
                if self.tracer is not None:
                    self.tracer.stage_start(stage.name, self.method)
                state.position.started = True
                self.fault(f"{stage.name}:start")
                self.checkpoint(spaced=False)
            while state.position.epoch < stage.epochs:
                self.train_epoch(stage)
                self.end_epoch(stage, bar)
                self.checkpoint(spaced=True)
            state.stage_steps[stage.name] = state.position.steps
            self.method.end_stage(stage, self.view)
            state.position = Position(stage=state.position.stage + 1)
            state.best_loss = float("inf")
        bar.close()
        return self.finish()

    def train_epoch(self, stage: Stage) -> None:
        """Train to the epoch's end (from its middle after a mid-epoch checkpoint)."""
        method, data, state = self.method, self.data, self.state
        position = state.position
        start = time.perf_counter()
        oracle_start = state.phases.get("oracle_eval", 0.0)
        method.models.train()
        if state.epoch_order is None:
            state.epoch_order = epoch_order(len(data.train), method.sampling(), self.generator, self.device)
            state.epoch_sums, state.epoch_samples, position.batch = {}, 0, 0
        every = self.checkpointing.every_steps if self.checkpointing else None
        order = state.epoch_order[position.batch * self.batch_size:]
        sums = state.epoch_sums
        for batch in iterate_batches(data.train, order, self.batch_size, data.augment, self.generator,
                                     self.drop_last):
            if self.tracer is not None:
                self.tracer.before_step(method)
            with self.autocast():
                stats = method.update(batch)
            if self.tracer is not None:
                self.tracer.after_step(stage.name, batch, stats, method)
            for key, value in stats.items():
                weighted = value.detach().float() * len(batch.y)
                sums[key] = sums[key] + weighted if key in sums else weighted
            state.epoch_samples += len(batch.y)
            position.steps += 1
            position.batch += 1
            if stage.select and self.oracle.due(position.steps - 1):
                self.oracle_evaluation(stage, position.epoch + 1)
            self.fault(f"{stage.name}:{position.steps}")
            if stage.steps is not None and position.steps >= stage.steps:
                break
            if every and position.steps % every == 0:
                _sync(self.device)
                oracle_seconds = state.phases.get("oracle_eval", 0.0) - oracle_start
                self.add_phase(stage.name, time.perf_counter() - start - oracle_seconds)
                self.checkpoint(spaced=False)
                start, oracle_start = time.perf_counter(), state.phases.get("oracle_eval", 0.0)
        _sync(self.device)
        oracle_seconds = state.phases.get("oracle_eval", 0.0) - oracle_start
        self.add_phase(stage.name, time.perf_counter() - start - oracle_seconds)

    def end_epoch(self, stage: Stage, bar) -> None:
        """Close the epoch: LR schedule, logged statistics, validation, selection."""
        method, state = self.method, self.state
        position = state.position
        if state.epoch_samples == 0:
            raise ValueError(f"stage {stage.name}: an epoch with no batch (training set smaller than the "
                             "batch with drop_last)")
        start = time.perf_counter()
        lr = method.learning_rate()
        method.end_epoch(stage)
        sums = state.epoch_sums
        totals = torch.stack(list(sums.values())).tolist()  # one host sync per epoch
        train_stats = {f"train_{k}": v / state.epoch_samples for k, v in zip(sums, totals, strict=True)}
        if not math.isfinite(train_stats.get("train_loss", 0.0)):
            raise FloatingPointError(f"non-finite training loss in stage {stage.name}, epoch {position.epoch + 1}")
        state.samples_seen += state.epoch_samples
        state.epoch_order, state.epoch_sums, state.epoch_samples = None, {}, 0
        position.epoch += 1
        position.batch = 0
        self.add_phase(stage.name, time.perf_counter() - start)
        epoch = position.epoch

        if stage.select and self.oracle.every_steps == 0:
            self.oracle_evaluation(stage, epoch)
        start = time.perf_counter()
        method.models.eval()
        valid = self.evaluate_split(self.data.valid) if self.has_valid else dict.fromkeys(VALID_LOG, None)
        self.add_phase("eval", time.perf_counter() - start)
        state.log.append({
            "stage": stage.name, "epoch": epoch, "steps": position.steps, "lr": lr, **train_stats,
            **{f"valid_{key}": valid[key] for key in VALID_LOG},
        })
        if self.tracer is not None:
            self.tracer.epoch_end(state.log[-1])
        if stage.select and self.selection == "best_valid_loss" and valid["loss"] <= state.best_loss:
            state.best_loss = valid["loss"]
            state.best = {"stage": stage.name, "epoch": epoch, "valid_loss": state.best_loss,
                          "state": method.snapshot()}
        elif stage.select and self.selection == "last_epoch" and epoch == stage.epochs:
            state.best = {"stage": stage.name, "epoch": epoch, "valid_loss": valid["loss"], "state": None}
        valid_text = "–" if valid["acc"] is None else f"{valid['acc']:.3f}"
        bar.set_postfix(stage=stage.name, loss=f"{train_stats.get('train_loss', float('nan')):.3f}",
                        valid_acc=valid_text)
        bar.update()

    def finish(self) -> dict[str, Any]:
        method, data, state = self.method, self.data, self.state
        start = time.perf_counter()
        method.models.eval()
        last = self.evaluate_split(data.test)
        if state.best is None:
            raise RuntimeError(f"method {method.name!r} declares no stage with select=True")
        final = self.stages[-1]
        steps = state.stage_steps[final.name]
        if final.select and (not self.oracle.curve or self.oracle.curve[-1][0] != steps):
            self.oracle.offer(last, final.name, final.epochs, steps)  # the final model, if off the grid
        best = dict(state.best)
        snapshot = best.pop("state")
        if snapshot is None:
            selected = last
        else:
            method.restore(snapshot)
            method.models.eval()
            selected = self.evaluate_split(data.test)
        self.add_phase("eval", time.perf_counter() - start)
        start = time.perf_counter()
        try:
            with self.autocast(), inference_layout(method.models):
                diagnostics = run_diagnostics(method, data.train, data.test)
        except Exception as error:  # an analysis that fails must not cost the run its results
            diagnostics = {"error": f"{type(error).__name__}: {error}"}
        phases = dict(state.phases)
        phases["diagnostics"] = time.perf_counter() - start
        phases.update(method.phase_seconds)
        train_seconds = sum(phases[stage.name] for stage in self.stages if stage.name in phases)
        return {
            "epochs": state.log,
            "selection": self.selection,
            "selected": best,
            "test": selected,
            "last_epoch_test": last,
            "oracle": self.oracle.summary(),
            "diagnostics": diagnostics,
            "stage_steps": state.stage_steps,
            "phases": phases,
            "method_info": method.summary(),
            "weights_sha256": weights_sha256(method.models),
            "resumed_from": state.resumed_from,
            "checkpoints": state.checkpoints,
            "restored_wall_s": state.wall_s,
            "train_samples_per_s": state.samples_seen / train_seconds if train_seconds > 0 else None,
        }


def train_and_evaluate(
    method: Method, data: DeviceData, generator: torch.Generator, progress: bool = True,
    amp: bool = False, checkpointing: Checkpointing | None = None, tracer: Any = None,
) -> dict[str, Any]:
    """Train ``method`` through all its stages; return the epoch log, selection and test metrics.
    ``amp``: bf16 autocast for training steps and evaluation. ``checkpointing``: continue from the run's
    last checkpoint if there is one, and checkpoint as it goes. ``tracer``: a ``bench.trace.Tracer``."""
    return Training(method, data, generator, progress, amp, checkpointing, tracer).run()
