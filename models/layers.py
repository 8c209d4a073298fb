"""Layers shared by the model files."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_LEVELS = 2**15


class Dropout(nn.Dropout):
    """``nn.Dropout`` with the same law on the CPU, computed faster: keep each element with probability
    1 - p and scale kept ones by 1 / (1 - p).

    On the CPU, ``bernoulli_`` draws element by element through a slow scalar path and was a third of the
    CONV net's training step. Here the mask comes from uniform 15-bit integers (``random_`` on int16),
    kept when >= round(p * 2^15), so the keep probability is exact for p = 0.5 (and within 2^-16 for any
    p), and the scaled mask is multiplied in once, so backward is a single multiply too. Other devices
    use the fused native kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return F.dropout(x, self.p, self.training, self.inplace)
        draws = torch.empty(x.shape, dtype=torch.int16).random_(0, _LEVELS)
        scaled_mask = (draws >= round(self.p * _LEVELS)).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * scaled_mask
