"""Domains of hyperparameters: the values a setting may take, declared next to its default and checked
before any run starts (``bench.hparams``), so that a negative learning rate or q outside (0, 1] is a
one-line error rather than a failed run hours later."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Interval:
    """Numbers between ``low`` and ``high`` (None: unbounded), each end open or closed; ``integer``: whole
    numbers only."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        left = "(" if self.low_open or self.low is None else "["
        right = ")" if self.high_open or self.high is None else "]"
        kind = "an integer" if self.integer else "a number"
        return f"{kind} in {left}{low}, {high}{right}"

    def contains(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return False
        if self.integer and value != int(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))


@dataclass(frozen=True)
class OneOf:
    """One of the listed values."""

    values: tuple

    def describe(self) -> str:
        return "one of " + ", ".join(map(str, self.values))

    def contains(self, value: Any) -> bool:
        return value in self.values


Domain = Interval | OneOf

POSITIVE = Interval(0, None, low_open=True)
NON_NEGATIVE = Interval(0, None)
POSITIVE_INT = Interval(1, None, integer=True)
NON_NEGATIVE_INT = Interval(0, None, integer=True)
UNIT_OPEN_CLOSED = Interval(0, 1, low_open=True)  # (0, 1]: GCE's q, a decay factor
UNIT_CLOSED_OPEN = Interval(0, 1, high_open=True)  # [0, 1): an EMA's alpha, momentum
