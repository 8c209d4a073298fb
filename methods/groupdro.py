"""Group DRO (Sagawa, Koh, Hashimoto & Liang, Distributionally Robust Neural Networks for Group Shifts,
ICLR 2020; ``kohpangwei/group_DRO``), the bias-supervised reference: it trains with the training set's
bias labels, which no other method here sees, so its row is an upper bound, not a competitor.

Groups are the (target, bias) pairs of the training set (10 x 10 on Colored MNIST). One step, as the
authors' ``loss.py`` orders it: per-sample cross-entropy; each group's mean loss over the batch (a group
absent from the batch has mean 0: the denominator is its count, or 1 when 0); the adjusted loss, group loss
+ C / sqrt(n_g) with n_g the group's size in the whole training set, applied only when C > 0 (default 0, as
every command of the authors' README); the group weights updated first, q_g <- q_g exp(eta * adjusted_g)
(detached), renormalised, starting uniform and kept across batches and epochs; the loss is then
sum_g q_g * group_loss_g with the updated q. Batches are drawn with per-sample weight N / n_g, with
replacement, N per epoch (the README's ``--reweight_groups``; ``groupdro.reweight_groups=false`` for
uniform batches). eta (``robust_step_size``) 0.01, the authors' default.

Deviations, stated: the optimiser, schedule and model are each dataset's protocol (PGD's on ``cmnist``),
since the paper's own per-dataset scripts are not in the repository; selection is the dataset's rule
(the paper selects by worst-group validation accuracy with bias labels), so the row differs from the
other methods only in its training loss and sampling. With C > 0, a group absent from the training set
gets the adjustment of a group of size 1, where the authors' code divides by zero and its weights turn NaN.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from methods.base import Batch, Method, Sampling
from methods.registry import register_method
from spaces import LogUniform, OneOf
from spaces.domains import NON_NEGATIVE, POSITIVE


def group_losses(losses: torch.Tensor, groups: torch.Tensor, count: int) -> torch.Tensor:
    """Each group's mean per-sample loss in the batch; 0 for a group absent from it."""
    totals = torch.zeros(count, device=losses.device, dtype=losses.dtype).index_add(0, groups, losses)
    sizes = torch.zeros(count, device=losses.device, dtype=losses.dtype).index_add(0, groups, torch.ones_like(losses))
    return totals / (sizes + (sizes == 0).to(losses.dtype))


def exponentiated_gradient_step(q: torch.Tensor, adjusted: torch.Tensor, step_size: float) -> torch.Tensor:
    """q_g exp(eta * adjusted_g), renormalised: weight moves toward the groups with the highest loss."""
    q = q * torch.exp(step_size * adjusted.detach())
    return q / q.sum()


@register_method
class GroupDRO(Method):
    name: ClassVar[str] = "groupdro"
    PAPER: ClassVar[str] = ("Sagawa, Koh, Hashimoto & Liang, Distributionally Robust Neural Networks for Group "
                            "Shifts, ICLR 2020 (bias-supervised: an upper bound)")
    BIAS_SUPERVISED: ClassVar[bool] = True
    HPARAMS: ClassVar[dict] = {"robust_step_size": 0.01, "generalization_adjustment": 0.0, "reweight_groups": True}
    HPARAM_SPACE: ClassVar[dict] = {"robust_step_size": LogUniform(1e-3, 1e-1)}
    HPARAM_DOMAINS: ClassVar[dict] = {"robust_step_size": POSITIVE, "generalization_adjustment": NON_NEGATIVE,
                                      "reweight_groups": OneOf((True, False))}
    STATE_ATTRS: ClassVar[tuple[str, ...]] = ("q",)

    def setup(self) -> None:
        if self.ctx.train_biases is None:
            raise ValueError("groupdro needs the training set's bias labels (RunContext.train_biases)")
        self.add_model("model", self.new_model())
        targets, biases = self.ctx.train_targets, self.ctx.train_biases.to(self.ctx.train_targets.device)
        self.bias_values = int(biases.max()) + 1
        self.group_count = self.ctx.num_classes * self.bias_values
        self.groups = targets * self.bias_values + biases
        self.group_sizes = torch.bincount(self.groups, minlength=self.group_count).float()
        self.q = torch.full((self.group_count,), 1.0 / self.group_count, device=self.ctx.device)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.models["model"](batch.x)
        groups = self.groups[batch.index]
        losses = group_losses(F.cross_entropy(logits, batch.y, reduction="none"), groups, self.group_count)
        adjusted = losses
        adjustment = float(self.hp["generalization_adjustment"])
        if adjustment > 0:
            adjusted = losses + adjustment / self.group_sizes.clamp_min(1).sqrt()
        self.q = exponentiated_gradient_step(self.q, adjusted, float(self.hp["robust_step_size"]))
        loss = (losses * self.q).sum()
        self.optimize(loss, "model")
        return {"loss": loss.detach(), "acc": (logits.argmax(1) == batch.y).float().mean(),
                "worst_group_weight": self.q.max()}

    def sampling(self) -> Sampling | None:
        if not bool(self.hp["reweight_groups"]):
            return None
        return Sampling(weights=self.ctx.train_size / self.group_sizes[self.groups])

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.models["model"](x)

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        return self.models["model"].features(x)

    def summary(self) -> dict[str, float]:
        return {"groups_in_training_set": int((self.group_sizes > 0).sum()), "max_group_weight": float(self.q.max())}
