"""Name -> dataset spec. A dataset module registers its class with ``@register_dataset``."""

from __future__ import annotations

from datasets.base import BiasedDataset

DATASETS: dict[str, type[BiasedDataset]] = {}


def register_dataset(cls: type[BiasedDataset]) -> type[BiasedDataset]:
    if cls.name in DATASETS:
        raise ValueError(f"dataset {cls.name!r} registered twice")
    DATASETS[cls.name] = cls
    return cls
