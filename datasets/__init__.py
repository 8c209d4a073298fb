"""Biased image datasets. Importing this package registers every dataset module listed below."""

from datasets import cmnist  # noqa: F401  (registers "cmnist")
from datasets.base import BiasedData, BiasedDataset, DataError, Split
from datasets.registry import DATASETS

__all__ = ["DATASETS", "BiasedData", "BiasedDataset", "DataError", "Split"]
