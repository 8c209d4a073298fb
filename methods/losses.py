"""Losses and per-sample state shared by LfF, DFA and PGD."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def generalized_ce(logits: torch.Tensor, targets: torch.Tensor, q: float = 0.7) -> torch.Tensor:
    """Per-sample GCE (Zhang & Sabuncu, 2018) as the LfF/DFA/PGD code computes it:
    CE * p_y.detach()**q * q, whose gradient is q * p_y**q times CE's gradient (that of (1 - p_y**q) / q
    up to the constant q). It emphasises samples the model already finds easy, so the model it trains
    latches onto the bias."""
    ce = F.cross_entropy(logits, targets, reduction="none")
    p_y = torch.softmax(logits, dim=1).gather(1, targets[:, None]).squeeze(1).detach()
    return ce * p_y.pow(q) * q


class PerSampleEMA:
    """Exponential moving average of a per-sample loss, indexed by dataset position, on the device.

    Update rule of the LfF code: ema[i] = a * ema[i] + (1 - a * seen[i]) * loss_i, so a first visit
    stores the raw loss. ``normalized`` divides each entry by the maximum EMA over all training samples
    of the same class (unvisited samples count as 0)."""

    def __init__(self, targets: torch.Tensor, num_classes: int, alpha: float):
        self.targets = targets
        self.num_classes = num_classes
        self.alpha = alpha
        self.values = torch.zeros(len(targets), device=targets.device)
        self.seen = torch.zeros(len(targets), device=targets.device)

    def update(self, index: torch.Tensor, loss: torch.Tensor) -> None:
        loss = loss.detach().float()
        self.values[index] = self.alpha * self.values[index] + (1 - self.alpha * self.seen[index]) * loss
        self.seen[index] = 1.0

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"values": self.values, "seen": self.seen}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.values = state["values"].to(self.values.device)
        self.seen = state["seen"].to(self.seen.device)

    def class_max(self) -> torch.Tensor:
        maxima = torch.zeros(self.num_classes, device=self.values.device)
        return maxima.scatter_reduce(0, self.targets, self.values, reduce="amax", include_self=False)

    def normalized(self, index: torch.Tensor) -> torch.Tensor:
        return self.values[index] / self.class_max()[self.targets[index]]


def relative_difficulty(biased: PerSampleEMA, debiased: PerSampleEMA, index: torch.Tensor) -> torch.Tensor:
    """LfF's weight W = l_b / (l_b + l_d + 1e-8) from class-normalised EMAs, detached."""
    l_b = biased.normalized(index)
    l_d = debiased.normalized(index)
    return (l_b / (l_b + l_d + 1e-8)).detach()
