"""A test plugin: ERM that waits at its first step while a file exists, so a test can hold a sweep open
for exactly as long as it needs (the path comes from ``DEBIAS_BENCH_TEST_HOLD_FILE``)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import ClassVar

import torch

from methods.base import Batch
from methods.erm import ERM
from methods.registry import register_method


@register_method
class HeldERM(ERM):
    name: ClassVar[str] = "held-erm"
    PAPER: ClassVar[str] = "ERM, held at its first step by a test"

    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        hold = Path(os.environ["DEBIAS_BENCH_TEST_HOLD_FILE"])
        while hold.exists():
            time.sleep(0.05)
        return super().update(batch)
