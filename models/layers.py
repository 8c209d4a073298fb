"""Layers shared by the model files."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 2**15
_BITS = torch.tensor([1, 2, 4, 8, 16, 32, 64, 128], dtype=torch.uint8)


def _keep_half(x: torch.Tensor) -> torch.Tensor:
    """Independent fair coin flips shaped like ``x``, eight from each uniform random byte: 1 where kept,
    else 0 (uint8)."""
    count = x.numel()
    draws = torch.empty((count + 7) // 8, dtype=torch.uint8, device=x.device).random_()
    return torch.bitwise_and(draws.unsqueeze(1), _BITS).flatten()[:count].view(x.shape).clamp_(max=1)


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the same law on the CPU, computed faster: keep each element with probability
    1 - p and scale kept ones by 1 / (1 - p).

    On the CPU, ``bernoulli_`` draws element by element through a slow scalar path and was a third of the
    CONV net's training step. Here the mask comes from uniform random integers instead: for p = 0.5
    (the CONV net's rate) each bit of a random byte is one fair coin, so a mask costs one draw per
    eight elements; for other p, uniform 15-bit integers (``random_`` on int16) kept when
    >= round(p * 2^15), exact for multiples of 2^-15 and within 2^-16 otherwise. The scaled mask is
    multiplied in once, so backward is a single multiply too. Other devices use the fused native kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return F.dropout(x, self.p, self.training, self.inplace)
        if self.p == 0.5:
            keep = _keep_half(x)
        else:
            draws = torch.empty(x.shape, dtype=torch.int16, device=x.device).random_(0, _LEVELS)
            keep = draws >= round(self.p * _LEVELS)
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))
