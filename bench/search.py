"""Random hyperparameter search in the DomainBed style: ``--hparams-seed K`` draws every searchable
hyperparameter from the distribution declared next to its default (``HPARAM_SPACE`` on a method,
``TRAIN_SPACE`` on a dataset), deterministically per (method, dataset, K). K = 0 means the defaults."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from spaces import Distribution


def draw(space: dict[str, Distribution], method: str, dataset: str, hparams_seed: int) -> dict[str, Any]:
    """One draw of every key of ``space`` (sorted, so adding a key elsewhere never shifts the others)."""
    if hparams_seed == 0:
        return {}
    digest = hashlib.sha256(f"{method}|{dataset}|{hparams_seed}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    return {key: space[key].sample(rng) for key in sorted(space)}
