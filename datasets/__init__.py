"""Biased image datasets. Importing this package registers every dataset module listed below."""

from datasets import bffhq, cifar10c, cmnist, cmnist_lff  # noqa: F401  (each registers itself)
from datasets.base import BiasedData, BiasedDataset, DataError, Split
from datasets.registry import DATASETS

__all__ = ["DATASETS", "BiasedData", "BiasedDataset", "DataError", "Split"]
