"""DFA / DisEnt -- Learning Debiased Representation via Disentangled Feature Augmentation
(Lee, Kim, Lee, Lee & Choo, NeurIPS 2021).

An intrinsic encoder E_i and a bias encoder E_b (any backbone of the model registry; its feature
extractor and width) feed two linear heads C_i, C_b that both read the concatenation [z_i, z_b]:
  logits_i = C_i([z_i, z_b.detach()]),  logits_b = C_b([z_i.detach(), z_b]).
W = l_b / (l_b + l_i) from class-normalised per-sample EMAs (alpha 0.7) of both heads' CE, as in LfF;
  L_dis = mean(W * CE(logits_i, y)) + lambda_dis_align * mean(GCE(logits_b, y)).
After the curriculum step, z_b is permuted within the batch (z_b~, y~ = y[perm]):
  L_swap = mean(W * CE(C_i([z_i, z_b~.detach()]), y)) + lambda_swap_align * mean(GCE(C_b([z_i.detach(), z_b~]), y~)),
and the loss is L_dis + lambda_swap * L_swap (no swap term before the curriculum step).
Only C_i on [z_i, z_b] is evaluated.

Schedules. ``lr_schedule = "dfa"`` is the authors' (Adam, weight decay 0, StepLR x``dfa_lr_gamma`` every
``dfa_lr_decay_step`` iterations, stepped only once the curriculum step is reached); ``"shared"`` uses the
dataset's per-epoch schedule, so that on ``cmnist`` DFA trains under the same CONV/SGD setting as every
other method. As in the authors' loop, steps count from 0: step s swaps features when s > curriculum_step
and steps the LR schedule after its update when s >= curriculum_step, so with 10k / 10k the learning rate
is lr for steps 0-19,999, then lr * gamma, lr * gamma^2, ... every 10k steps. ``curriculum_step``,
``dfa_lr_decay_step`` and ``iterations`` count iterations and scale with a shorter ``--epochs``.

On the authors' datasets (``cmnist-lff``, ``cifar10c``, ``bffhq``) the budget is theirs: 50k iterations
(``iterations``; about 213 epochs of 60k images at batch 256), train batches with ``drop_last``, gamma 0.5
on Colored MNIST and Corrupted CIFAR-10 (their scripts pass ``--lr_gamma 0.5``) and 0.1 on BFFHQ (the
code's default, which its script keeps). Deviation: the authors keep the checkpoint with the best *test*
accuracy, evaluated every 500 iterations; here the test set never selects, and that figure is recorded
apart as ``oracle`` (``bench.oracle``). Selection is the dataset's rule, except on ``cmnist``, where
it is the last epoch: the lowest loss on PGD's biased validation split favours checkpoints from before
the curriculum step, i.e. before any feature swapping (in our paper-preset run at 1 % it kept epoch 3 of
100, while swapping starts near epoch 24). Set ``selection`` to change it.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from methods.base import Batch, Method, Stage
from methods.losses import PerSampleEMA, generalized_ce, relative_difficulty
from methods.registry import register_method
from spaces import Choice, LogUniform, OneOf
from spaces.domains import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE_INT, UNIT_CLOSED_OPEN, UNIT_OPEN_CLOSED

DFA_CMNIST = {"lambda_dis_align": 10.0, "lambda_swap_align": 10.0, "lambda_swap": 1.0}
# The authors' loop on each of their datasets: 50k iterations, drop_last, their iteration LR decay.
AUTHORS_BUDGET = {"iterations": 50_000, "drop_last": True, "lr_schedule": "dfa"}


class EncoderWithHead(nn.Module):
    """One branch of DFA: an encoder and a linear head over the concatenated features of both branches."""

    def __init__(self, encoder: nn.Module, feature_dim: int, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(2 * feature_dim, num_classes)


def swap_features(z_i: torch.Tensor, z_b: torch.Tensor, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Feature augmentation: keep each sample's intrinsic half, take the bias half of sample perm[k].
    Returns ([z_i, z_b~.detach()], [z_i.detach(), z_b~]) for the intrinsic and bias heads."""
    z_b_swap = z_b[perm]
    return torch.cat([z_i, z_b_swap.detach()], dim=1), torch.cat([z_i.detach(), z_b_swap], dim=1)


@register_method
class DFA(Method):
    name: ClassVar[str] = "dfa"
    PAPER: ClassVar[str] = (
        "Lee, Kim, Lee, Lee & Choo, Learning Debiased Representation via Disentangled Feature Augmentation, "
        "NeurIPS 2021"
    )
    HPARAM_SPACE: ClassVar[dict] = {
        "lambda_dis_align": LogUniform(1.0, 20.0),
        "lambda_swap_align": LogUniform(1.0, 20.0),
        "lambda_swap": Choice((0.1, 0.5, 1.0)),
    }
    HPARAMS: ClassVar[dict] = {
        "q": 0.7,
        "ema_alpha": 0.7,
        **DFA_CMNIST,
        "curriculum_step": 10_000,
        "lr_schedule": "shared",
        "dfa_lr_decay_step": 10_000,
        "dfa_lr_gamma": 0.5,
    }
    # On cmnist-lff, the authors' own Colored MNIST setting: MLP encoders with 16-d features, lr 0.01,
    # their 50k-iteration budget and LR decay; everything else is the dataset's (LfF's) setting.
    # On cifar10c and bffhq, the authors' scripts: lr, lambdas per ratio, budget, LR decay.
    DATASET_HPARAMS: ClassVar[dict] = {
        "cmnist": {"selection": "last_epoch"},
        "cmnist-lff": {"model": "mlp16", "lr": 0.01, **AUTHORS_BUDGET},
        "cifar10c": {"lambda_dis_align": 1.0, "lambda_swap_align": 1.0, "lambda_swap": 1.0, **AUTHORS_BUDGET},
        ("cifar10c", 0.005): {"lr": 5e-4},
        ("cifar10c", 0.01): {"lambda_dis_align": 5.0, "lambda_swap_align": 5.0},
        ("cifar10c", 0.02): {"lambda_dis_align": 5.0, "lambda_swap_align": 5.0},
        "bffhq": {"lambda_dis_align": 2.0, "lambda_swap_align": 2.0, "lambda_swap": 0.1, **AUTHORS_BUDGET,
                  "dfa_lr_gamma": 0.1},
    }
    HPARAM_DOMAINS: ClassVar[dict] = {
        "q": UNIT_OPEN_CLOSED, "ema_alpha": UNIT_CLOSED_OPEN, "lambda_dis_align": NON_NEGATIVE,
        "lambda_swap_align": NON_NEGATIVE, "lambda_swap": NON_NEGATIVE, "curriculum_step": NON_NEGATIVE_INT,
        "lr_schedule": OneOf(("shared", "dfa")), "dfa_lr_decay_step": POSITIVE_INT, "dfa_lr_gamma": UNIT_OPEN_CLOSED,
    }
    EPOCH_HPARAMS: ClassVar[tuple[str, ...]] = (*Method.EPOCH_HPARAMS, "curriculum_step", "dfa_lr_decay_step")
    STATE_ATTRS: ClassVar[tuple[str, ...]] = ("ema_i", "ema_b", "step")

    def setup(self) -> None:
        if self.hp["lr_schedule"] not in ("shared", "dfa"):
            raise ValueError(f"dfa.lr_schedule must be shared or dfa, got {self.hp['lr_schedule']}")
        for key in ("intrinsic", "bias"):
            backbone = self.new_model()
            self.add_model(key, EncoderWithHead(backbone.encoder, backbone.feature_dim, self.ctx.num_classes))
        if self.hp["lr_schedule"] == "dfa":
            self.schedulers = {
                key: torch.optim.lr_scheduler.StepLR(
                    self.optimizers[key],
                    step_size=int(self.hp["dfa_lr_decay_step"]),
                    gamma=float(self.hp["dfa_lr_gamma"]),
                )
                for key in self.optimizers
            }
        targets, classes, alpha = self.ctx.train_targets, self.ctx.num_classes, float(self.hp["ema_alpha"])
        self.ema_i = PerSampleEMA(targets, classes, alpha)
        self.ema_b = PerSampleEMA(targets, classes, alpha)
        self.step = 0

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.models["intrinsic"].encoder(x), self.models["bias"].encoder(x)

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        head_i, head_b = self.models["intrinsic"].head, self.models["bias"].head
        q, y = float(self.hp["q"]), batch.y
        z_i, z_b = self.encode(batch.x)
        logits_i = head_i(torch.cat([z_i, z_b.detach()], dim=1))
        logits_b = head_b(torch.cat([z_i.detach(), z_b], dim=1))
        ce_i = F.cross_entropy(logits_i, y, reduction="none")
        self.ema_i.update(batch.index, ce_i)
        self.ema_b.update(batch.index, F.cross_entropy(logits_b, y, reduction="none"))
        weight = relative_difficulty(self.ema_b, self.ema_i, batch.index)
        loss = (ce_i * weight).mean() + float(self.hp["lambda_dis_align"]) * generalized_ce(logits_b, y, q).mean()
        stats = {"dis_loss": loss.detach(), "swap_loss": torch.zeros((), device=y.device)}

        step = self.step  # 0-based, as the authors' ``for step in range(num_steps)``
        self.step += 1
        if step > int(self.hp["curriculum_step"]):
            perm = torch.randperm(len(y), generator=self.ctx.generator, device=y.device)
            swap_conflict, swap_align = swap_features(z_i, z_b, perm)
            swap_loss = (F.cross_entropy(head_i(swap_conflict), y, reduction="none") * weight).mean()
            swap_align_loss = generalized_ce(head_b(swap_align), y[perm], q).mean()
            swap_loss = swap_loss + float(self.hp["lambda_swap_align"]) * swap_align_loss
            loss = loss + float(self.hp["lambda_swap"]) * swap_loss
            stats["swap_loss"] = swap_loss.detach()
        self.optimize(loss, "intrinsic", "bias")
        if self.hp["lr_schedule"] == "dfa" and step >= int(self.hp["curriculum_step"]):
            for scheduler in self.schedulers.values():
                scheduler.step()
        return {"loss": loss.detach(), "acc": (logits_i.argmax(1) == y).float().mean(), **stats}

    def end_epoch(self, stage: Stage, keys: tuple[str, ...] | None = None) -> None:
        if self.hp["lr_schedule"] == "shared":
            super().end_epoch(stage, keys)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        z_i, z_b = self.encode(x)
        return self.models["intrinsic"].head(torch.cat([z_i, z_b], dim=1))

    def representation(self, x: torch.Tensor) -> torch.Tensor:
        """The intrinsic features z_i: the part DFA disentangles from the bias (z_b encodes it on purpose)."""
        return self.models["intrinsic"].encoder(x)

    def conflict_signals(self) -> dict[str, torch.Tensor]:
        """The final relative difficulty W of every training sample (its weight in L_dis and L_swap)."""
        every = torch.arange(self.ctx.train_size, device=self.ctx.device)
        return {"weight": relative_difficulty(self.ema_b, self.ema_i, every)}
