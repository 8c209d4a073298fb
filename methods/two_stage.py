"""Shared base of the two-stage methods (JTT, PGD, DPR): train a first model, run a hook that derives the
second stage's sampling from it, then train a second model, which is the one selected and evaluated."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from methods.base import Batch, Method, Sampling, Stage, TrainView
from methods.losses import generalized_ce


class TwoStageMethod(Method):
    FIRST: ClassVar[str]
    SECOND: ClassVar[str]
    STATE_ATTRS: ClassVar[tuple[str, ...]] = ("active",)

    def setup(self) -> None:
        self.add_model(self.FIRST, self.new_model())
        self.add_model(self.SECOND, self.new_model())
        self.active = self.FIRST

    def first_stage_epochs(self) -> int:
        return int(self.hp["epochs"])

    def stages(self) -> list[Stage]:
        if int(self.hp.get("iterations", 0)) > 0:
            raise ValueError(f"{self.name}.iterations: two-stage methods count their stages in epochs; "
                             "set epochs instead")
        return [Stage(self.FIRST, self.first_stage_epochs()), Stage(self.SECOND, int(self.hp["epochs"]), select=True)]

    def start_stage(self, stage: Stage, train: TrainView) -> None:
        self.active = stage.name
        if stage.name == self.SECOND:
            self.models[self.FIRST].eval()  # the authors score / find errors with the first model in eval mode
            self.between_stages(train)

    def between_stages(self, train: TrainView) -> None:
        """Derive the second stage from the trained first model."""
        raise NotImplementedError

    def stage_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-sample loss of the active stage; plain CE unless overridden."""
        return F.cross_entropy(logits, y, reduction="none")

    def observe(self, batch: Batch, logits: torch.Tensor) -> None:
        """Sees each training batch's logits just before its optimiser step (e.g. JTT's online errors)."""

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.models[self.active](batch.x)
        self.observe(batch, logits)
        loss = self.stage_loss(logits, batch.y).mean()
        self.optimize(loss, self.active)
        return {"loss": loss.detach(), "acc": (logits.argmax(1) == batch.y).float().mean()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.models[self.active](x)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.models[self.active].features(x)

    def end_epoch(self, stage: Stage, keys: tuple[str, ...] | None = None) -> None:
        super().end_epoch(stage, (self.active,))


class BiasedThenResampled(TwoStageMethod):
    """The shape PGD and DPR share: a GCE-trained biased model (``q``), then the debiased model trained with
    CE on batches drawn with replacement in proportion to ``probabilities``, which ``between_stages`` sets
    from the biased model."""

    FIRST: ClassVar[str] = "biased"
    SECOND: ClassVar[str] = "debiased"
    STATE_ATTRS: ClassVar[tuple[str, ...]] = (*TwoStageMethod.STATE_ATTRS, "probabilities")

    def setup(self) -> None:
        super().setup()
        self.probabilities: torch.Tensor | None = None

    def stage_loss(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.active == self.FIRST:
            return generalized_ce(logits, y, float(self.hp["q"]))
        return super().stage_loss(logits, y)

    def conflict_signals(self) -> dict[str, torch.Tensor]:
        """The sampling probabilities."""
        return {} if self.probabilities is None else {"score": self.probabilities}

    def sampling(self) -> Sampling | None:
        if self.active == self.SECOND:
            return Sampling(weights=self.probabilities)
        return None
