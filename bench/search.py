"""Random hyperparameter search in the DomainBed style: ``--hparams-seed K`` draws every searchable
hyperparameter from the distribution declared next to its default (``HPARAM_SPACE`` on a method,
``TRAIN_SPACE`` on a dataset), deterministically per (method, dataset, K). K = 0 means the defaults."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))


@dataclass(frozen=True)
class Uniform:
    low: float
    high: float

    def sample(self, rng: np.random.Generator) -> float:
        return float(rng.uniform(self.low, self.high))


@dataclass(frozen=True)
class IntUniform:
    low: int
    high: int  # inclusive

    def sample(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.low, self.high + 1))


@dataclass(frozen=True)
class Choice:
    values: tuple

    def sample(self, rng: np.random.Generator) -> Any:
        return self.values[int(rng.integers(len(self.values)))]


Distribution = LogUniform | Uniform | IntUniform | Choice


def draw(space: dict[str, Distribution], method: str, dataset: str, hparams_seed: int) -> dict[str, Any]:
    """One draw of every key of ``space`` (sorted, so adding a key elsewhere never shifts the others)."""
    if hparams_seed == 0:
        return {}
    digest = hashlib.sha256(f"{method}|{dataset}|{hparams_seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return {key: space[key].sample(rng) for key in sorted(space)}
