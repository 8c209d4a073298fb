"""The ``Method`` interface every debiasing method implements, and the plumbing it shares.

Modelled on DomainBed's ``Algorithm`` (``update(batch) -> dict``, ``predict(x)``) with SubpopBench's
division of labour: the base class owns models, optimisers and LR schedules; a method overrides its
loss (``update``), and multi-stage methods add stages and hooks that run between them.

Hyperparameters live in one place per method: ``HPARAMS`` (defaults), ``DATASET_HPARAMS`` (per-dataset
overrides where the papers differ). The dataset's training setting (model, optimiser, schedule, epochs)
is merged underneath, and ``--set <method>.<key>=value`` on top.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from models import Classifier, build_model
from spaces import Domain, OneOf
from spaces.domains import NON_NEGATIVE_INT


def inference_batch_size(device: torch.device) -> int:
    """Batch size of the passes without gradients (evaluation, PGD scoring, JTT's error set).

    An accelerator wants large batches to stay busy; on the CPU a small batch keeps each layer's
    activations in cache, which made the CONV net's forward pass 1.6x faster at 128 than at 1024."""
    return 128 if device.type == "cpu" else 2048


_channels_last_inference = True


def set_channels_last_inference(enabled: bool) -> None:
    """Whether ``inference_layout`` converts anything in this process. Portable numerics turn it off
    (``bench.numerics.enter``): oneDNN's channels_last convolutions take a vendor-specific path even when
    capped at AVX2 (an Intel CPU made to report an AMD vendor computed other logits), its default layout
    does not."""
    global _channels_last_inference
    _channels_last_inference = enabled


@contextmanager
def inference_layout(module: nn.Module) -> Iterator[None]:
    """Hold ``module``'s 4-D (convolution) weights that live on the CPU in channels_last for a pass
    without gradients, then give each back its previous layout.

    oneDNN's CPU convolutions run inference about 1.6x faster on channels_last weights (the CONV net,
    batch 128), while training runs no faster; so only evaluation, PGD scoring and JTT's error set use
    it, and training keeps its layout and hence its exact numbers. Another kernel computes the pass, so
    its outputs may differ in the last bits (never in a way a tolerance of 1e-5 sees); under portable
    numerics it is off (``set_channels_last_inference``). Weights on other devices, or already in another
    layout, are left as they are."""
    converted = [p for p in module.parameters() if _channels_last_inference and p.device.type == "cpu"
                 and p.dim() == 4 and p.is_contiguous()]
    for parameter in converted:
        parameter.data = parameter.data.contiguous(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for parameter in converted:
            parameter.data = parameter.data.contiguous()


# Training-loop settings every method has, beneath each dataset's TRAIN_DEFAULTS and each method's HPARAMS.
LOOP_DEFAULTS: dict[str, Any] = {
    # > 0: a single-stage method trains for exactly this many optimiser steps (the authors of DFA count
    # iterations, not epochs); its number of epochs follows from it. 0: ``epochs`` sets the length.
    # ``--epochs`` and the quick preset set the length in epochs, so they clear it.
    "iterations": 0,
    # Skip each epoch's last incomplete batch, as a DataLoader with drop_last=True (DFA's train loader).
    "drop_last": False,
    # Test evaluations behind the ``oracle`` figure (best test accuracy, selected on test, never used
    # for selection): after every N-th optimiser step of the selected stage, counted from 0 as in DFA's
    # code (N = 500 there); 0: after every epoch. The final model is always one of them.
    "oracle_every_steps": 0,
    # Start every model from its pretrained weights (``timm/<name>`` models only; the published
    # protocols train from scratch).
    "pretrained": False,
}
LOOP_DOMAINS: dict[str, Domain] = {
    "iterations": NON_NEGATIVE_INT,
    "drop_last": OneOf((True, False)),
    "oracle_every_steps": NON_NEGATIVE_INT,
    "pretrained": OneOf((True, False)),
}


@dataclass(frozen=True)
class Batch:
    """A training batch: dataset indices (for per-sample state), augmented images, targets."""

    index: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor


@dataclass(frozen=True)
class Stage:
    """A training stage. ``select``: track model selection (best validation loss) in this stage.
    ``steps``: stop after this many optimiser steps (within the last of ``epochs`` epochs); None: run
    every epoch to its end."""

    name: str
    epochs: int
    select: bool = False
    steps: int | None = None


@dataclass
class RunContext:
    """What a method may know about the run. Bias labels are deliberately absent, except for a method
    that declares ``BIAS_SUPERVISED`` (GroupDRO, the upper bound): it alone gets the training set's."""

    num_classes: int
    input_shape: tuple[int, int, int]
    train_targets: torch.Tensor
    device: torch.device
    generator: torch.Generator
    train_biases: torch.Tensor | None = None
    # The engine setting ``exact_sqrt``: optimisers whose update takes a square root compute it exactly
    # (Adam's fused kernel: IEEE sqrt; its per-tensor path calls MKL's approximate one on the CPU).
    exact_sqrt: bool = False

    @property
    def train_size(self) -> int:
        return len(self.train_targets)


@dataclass(frozen=True)
class Sampling:
    """How one epoch draws its batches, when not uniformly.

    ``weights``: N draws with replacement, with probability proportional to the weights (PGD).
    ``indices``: this (possibly repeated) index list, shuffled without replacement (JTT's upsampling)."""

    weights: torch.Tensor | None = None
    indices: torch.Tensor | None = None


class TrainView:
    """Read access to the training split for stage hooks (e.g. JTT's error set, PGD's scores):
    batches of (index, image, target), optionally with the training augmentation."""

    def __init__(self, batches):
        self._batches = batches

    def batches(self, batch_size: int, augment: bool) -> Iterator[Batch]:
        return self._batches(batch_size, augment)


class Method:
    """Base class. Subclasses set ``name`` and implement ``setup``, ``update`` and ``predict``."""

    name: ClassVar[str]
    PAPER: ClassVar[str] = ""  # the citation ``run_bench.py list`` shows; default: the module docstring's first line
    HPARAMS: ClassVar[dict[str, Any]] = {}
    # Keyed by dataset name, or by (dataset name, ratio) for settings the papers tune per bias ratio.
    DATASET_HPARAMS: ClassVar[dict[str | tuple[str, float], dict[str, Any]]] = {}
    # Search distributions for --hparams-seed (bench.search), declared next to the defaults.
    HPARAM_SPACE: ClassVar[dict[str, Any]] = {}
    # The values each hyperparameter may take (``spaces.domains``), checked before any run starts.
    HPARAM_DOMAINS: ClassVar[dict[str, Domain]] = {}
    # Hyperparameters that measure the schedule's length (in epochs or in steps): a shorter ``--epochs``
    # schedule (or the quick preset) scales them proportionally.
    EPOCH_HPARAMS: ClassVar[tuple[str, ...]] = ("lr_decay_step",)
    # Attributes holding the method's own training state beyond its models, optimisers and schedules
    # (per-sample EMAs, scores, error sets, step counters): saved in in-run checkpoints and restored on
    # resume. Each is a tensor, a plain value, None, or an object with ``state_dict``/``load_state_dict``.
    STATE_ATTRS: ClassVar[tuple[str, ...]] = ()
    # True: the method trains with the training set's bias labels (``RunContext.train_biases``), which no
    # other method sees; the tables, ``list`` and the report mark it as an upper bound, not a competitor.
    BIAS_SUPERVISED: ClassVar[bool] = False

    def __init__(self, hparams: dict[str, Any], ctx: RunContext):
        self.hp = hparams
        self.ctx = ctx
        self.models = nn.ModuleDict()
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        self.phase_seconds: dict[str, float] = {}
        self.setup()

    # --- to implement -------------------------------------------------------------------------
    def setup(self) -> None:
        """Create models with ``add_model``."""
        raise NotImplementedError

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One optimisation step. Returns detached scalar tensors (batch means), e.g. loss and acc;
        returning tensors instead of floats avoids a host sync per step."""
        raise NotImplementedError

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the model being trained or evaluated in the current stage."""
        raise NotImplementedError

    # --- optional hooks -----------------------------------------------------------------------
    def stages(self) -> list[Stage]:
        iterations = int(self.hp.get("iterations", 0))
        if iterations > 0:
            epochs = math.ceil(iterations / self.steps_per_epoch())
            return [Stage("train", epochs, select=True, steps=iterations)]
        return [Stage("train", int(self.hp["epochs"]), select=True)]

    def steps_per_epoch(self) -> int:
        """Optimiser steps in one uniform epoch over the training set."""
        size, batch = self.ctx.train_size, int(self.hp["batch_size"])
        steps = size // batch if self.hp.get("drop_last", False) else math.ceil(size / batch)
        if steps < 1:
            raise ValueError(f"{size} training samples make no full batch of {batch} with drop_last")
        return steps

    def start_stage(self, stage: Stage, train: TrainView) -> None:
        """Runs before the first epoch of ``stage``."""

    def end_stage(self, stage: Stage, train: TrainView) -> None:
        """Runs after the last epoch of ``stage``."""

    def sampling(self) -> Sampling | None:
        """None: each epoch is a uniform permutation of the training set. See ``Sampling``."""
        return None

    def summary(self) -> dict[str, Any]:
        """Method-specific facts for the run record (e.g. JTT's error-set size)."""
        return {}

    def conflict_signals(self) -> dict[str, torch.Tensor]:
        """The method's own per-sample signal that a training sample is bias-conflicting, over the whole
        training set in dataset order, after training: float scores (higher = more likely conflicting) or
        a bool set. Scored against the bias labels for the record's diagnostics only."""
        return {}

    def representation(self, x: torch.Tensor) -> torch.Tensor | None:
        """Penultimate features of the model ``predict`` evaluates (the bias probe reads them); None: not
        defined for this method."""
        return None

    # --- plumbing owned by the base -----------------------------------------------------------
    def new_model(self) -> Classifier:
        model = build_model(self.hp["model"], self.ctx.num_classes, self.ctx.input_shape,
                            pretrained=bool(self.hp.get("pretrained", False)))
        return model.to(self.ctx.device)

    def add_model(self, key: str, model: nn.Module, epochs: int | None = None, lr: float | None = None) -> None:
        """Register a model with its own optimiser and per-epoch StepLR schedule."""
        self.models[key] = model
        lr = float(self.hp["lr"] if lr is None else lr)
        name = self.hp["optimizer"]
        if name == "sgd":
            optimizer = torch.optim.SGD(
                model.parameters(), lr=lr, momentum=float(self.hp["momentum"]),
                weight_decay=float(self.hp["weight_decay"]),
            )
        elif name == "adam":
            optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=float(self.hp["weight_decay"]),
                                         fused=True if self.ctx.exact_sqrt else None)
        else:
            raise ValueError(f"unknown optimizer {name!r}; valid: adam, sgd")
        self.optimizers[key] = optimizer
        step = int(self.hp.get("lr_decay_step", 0))
        if step > 0:
            self.schedulers[key] = torch.optim.lr_scheduler.StepLR(
                optimizer, step_size=step, gamma=float(self.hp["lr_decay_gamma"])
            )

    def optimize(self, loss: torch.Tensor, *keys: str) -> None:
        for key in keys:
            self.optimizers[key].zero_grad(set_to_none=True)
        loss.backward()
        for key in keys:
            self.optimizers[key].step()

    def end_epoch(self, stage: Stage, keys: tuple[str, ...] | None = None) -> None:
        """Advance the LR schedules of ``keys`` (default: every model) by one epoch."""
        for key in keys if keys is not None else tuple(self.schedulers):
            if key in self.schedulers:
                self.schedulers[key].step()

    def learning_rate(self) -> float:
        first = next(iter(self.optimizers.values()))
        return float(first.param_groups[0]["lr"])

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a block of hook work (e.g. scoring) as its own phase in the run's timing record."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[name] = self.phase_seconds.get(name, 0.0) + time.perf_counter() - start

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of every model's state, for restoring the selected checkpoint."""
        return {k: v.detach().clone() for k, v in self.models.state_dict().items()}

    def restore(self, state: dict[str, torch.Tensor]) -> None:
        self.models.load_state_dict(state)

    def state_dict(self) -> dict[str, Any]:
        """The method's whole training state, for in-run checkpoints (``bench.checkpoint``)."""
        attrs = {}
        for name in self.STATE_ATTRS:
            value = getattr(self, name)
            attrs[name] = value.state_dict() if hasattr(value, "state_dict") else value
        return {
            "models": self.models.state_dict(),
            "optimizers": {key: opt.state_dict() for key, opt in self.optimizers.items()},
            "schedulers": {key: sched.state_dict() for key, sched in self.schedulers.items()},
            "phase_seconds": dict(self.phase_seconds),
            "attrs": attrs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state_dict()``'s output (loaded on the CPU: tensors move to the run's device)."""
        self.models.load_state_dict(state["models"])
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        for key, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][key])
        self.phase_seconds = dict(state["phase_seconds"])
        device = self.ctx.device
        for name, value in state["attrs"].items():
            current = getattr(self, name)
            if hasattr(current, "load_state_dict"):
                current.load_state_dict(value)
            else:
                setattr(self, name, value.to(device) if isinstance(value, torch.Tensor) else value)
