"""ERM ("Vanilla"): one model trained with plain cross-entropy on uniform batches."""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from methods.base import Batch, Method
from methods.registry import register_method


@register_method
class ERM(Method):
    name: ClassVar[str] = "erm"
    PAPER: ClassVar[str] = 'Empirical risk minimisation ("Vanilla" in the debiasing papers)'

    def setup(self) -> None:
        self.add_model("model", self.new_model())

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.models["model"](batch.x)
        loss = F.cross_entropy(logits, batch.y)
        self.optimize(loss, "model")
        return {"loss": loss.detach(), "acc": (logits.argmax(1) == batch.y).float().mean()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.models["model"](x)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.models["model"].features(x)
