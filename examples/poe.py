"""Product of Experts with a learned bias expert: an external method for ``run_bench.py --plugins``.

Clark, Yatskar & Zettlemoyer, "Don't Take the Easy Way Out: Ensemble Based Methods for Avoiding Known
Dataset Biases", EMNLP 2019: train the main model through the product of its distribution and a bias
expert's, log p = log_softmax(f_main) + log_softmax(f_bias) (renormalised by the cross-entropy), so the
main model gets little gradient on samples the bias expert already explains and learns what it cannot;
at test time the main model predicts alone. Their bias expert is built from known bias features; here,
bias-agnostic as in Sanh, Wolf, Belinkov & Rush ("Learning from others' mistakes", ICLR 2021), it is a
second network of the same architecture trained jointly with generalized cross-entropy (q = 0.7), the
biased learner of LfF (Nam et al., NeurIPS 2020), whose output enters the product detached.

Use: ``python run_bench.py --plugins examples/poe.py --methods poe,pgd``. It needs nothing from this
repository but the method interface.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from methods.base import Batch, Method
from methods.losses import generalized_ce
from methods.registry import register_method
from spaces.domains import UNIT_OPEN_CLOSED


@register_method
class ProductOfExperts(Method):
    name: ClassVar[str] = "poe"
    PAPER: ClassVar[str] = ("Clark, Yatskar & Zettlemoyer, Don't Take the Easy Way Out, EMNLP 2019 "
                            "(bias expert trained with GCE)")
    HPARAMS: ClassVar[dict] = {"q": 0.7}
    HPARAM_DOMAINS: ClassVar[dict] = {"q": UNIT_OPEN_CLOSED}

    def setup(self) -> None:
        self.add_model("bias", self.new_model())
        self.add_model("main", self.new_model())

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits_b = self.models["bias"](batch.x)
        logits_m = self.models["main"](batch.x)
        loss_b = generalized_ce(logits_b, batch.y, float(self.hp["q"])).mean()
        product = F.log_softmax(logits_m, dim=1) + F.log_softmax(logits_b, dim=1).detach()
        loss_m = F.cross_entropy(product, batch.y)
        self.optimize(loss_b + loss_m, "bias", "main")
        return {"loss": loss_m.detach(), "acc": (logits_m.argmax(1) == batch.y).float().mean(),
                "bias_loss": loss_b.detach()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.models["main"](x)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.models["main"].features(x)
