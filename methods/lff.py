"""LfF -- Learning from Failure (Nam, Cha, Ahn, Lee & Shin, NeurIPS 2020).

Two networks of the same architecture step on the same batch: a biased one trained with GCE (q = 0.7)
and a debiased one trained with CE weighted by the relative difficulty W = l_b / (l_b + l_d), where l_b,
l_d are per-sample EMAs (alpha 0.7) of each model's CE, normalised by the class-wise maximum. Only the
debiased model is evaluated.

As in the authors' code: W is detached, the total loss is mean(GCE_b) + mean(W * CE_d), and the EMA state
is indexed by dataset position. Here the EMA lives on the training device and the class-wise maximum is
one ``scatter_reduce`` instead of a Python loop over classes (same numbers, no host round trips). The
training setting (model, optimiser, epochs) is the dataset's: on ``cifar10c`` DFA's ResNet-18 and schedule,
the protocol of the published LfF row we compare with (DFA's), where LfF's own paper used a ResNet-20.

Selection on ``cmnist``: the last epoch, as in LfF's own protocol, not the lowest loss on PGD's biased
validation split. LfF debiases one model throughout training, so its loss on a biased split is lowest
while it is still biased: in our paper-preset run at 1 % that rule kept epoch 5 of 100 (unbiased test
55-63 % for LfF and DFA against 96 % at the last epoch). Set ``selection`` to change it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from methods.base import Batch, Method
from methods.losses import PerSampleEMA, generalized_ce, relative_difficulty
from methods.registry import register_method
from spaces import Uniform
from spaces.domains import UNIT_CLOSED_OPEN, UNIT_OPEN_CLOSED


@register_method
class LfF(Method):
    name: ClassVar[str] = "lff"
    PAPER: ClassVar[str] = "Nam, Cha, Ahn, Lee & Shin, Learning from Failure, NeurIPS 2020"
    HPARAM_SPACE: ClassVar[dict] = {"q": Uniform(0.5, 0.9), "ema_alpha": Uniform(0.5, 0.9)}
    HPARAMS: ClassVar[dict] = {"q": 0.7, "ema_alpha": 0.7}
    HPARAM_DOMAINS: ClassVar[dict] = {"q": UNIT_OPEN_CLOSED, "ema_alpha": UNIT_CLOSED_OPEN}
    STATE_ATTRS: ClassVar[tuple[str, ...]] = ("ema_b", "ema_d")
    DATASET_HPARAMS: ClassVar[dict] = {"cmnist": {"selection": "last_epoch"}}

    def setup(self) -> None:
        self.add_model("biased", self.new_model())
        self.add_model("debiased", self.new_model())
        targets, classes, alpha = self.ctx.train_targets, self.ctx.num_classes, float(self.hp["ema_alpha"])
        self.ema_b = PerSampleEMA(targets, classes, alpha)
        self.ema_d = PerSampleEMA(targets, classes, alpha)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits_b = self.models["biased"](batch.x)
        logits_d = self.models["debiased"](batch.x)
        ce_b = F.cross_entropy(logits_b, batch.y, reduction="none")
        ce_d = F.cross_entropy(logits_d, batch.y, reduction="none")
        self.ema_b.update(batch.index, ce_b)
        self.ema_d.update(batch.index, ce_d)
        weight = relative_difficulty(self.ema_b, self.ema_d, batch.index)
        loss_b = generalized_ce(logits_b, batch.y, float(self.hp["q"])).mean()
        loss_d = (ce_d * weight).mean()
        self.optimize(loss_b + loss_d, "biased", "debiased")
        return {
            "loss": loss_d.detach(),
            "acc": (logits_d.argmax(1) == batch.y).float().mean(),
            "biased_loss": loss_b.detach(),
            "biased_acc": (logits_b.argmax(1) == batch.y).float().mean(),
        }

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.models["debiased"](x)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.models["debiased"].features(x)

    def conflict_signals(self) -> dict[str, torch.Tensor]:
        """The final relative difficulty W of every training sample (its weight in the debiased loss)."""
        every = torch.arange(self.ctx.train_size, device=self.ctx.device)
        return {"weight": relative_difficulty(self.ema_b, self.ema_d, every)}
