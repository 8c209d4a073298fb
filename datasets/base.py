"""Types shared by every biased dataset: splits as compact uint8 arrays, and the dataset spec.

A dataset spec knows how to build its three splits from a source (deterministically, from a seed),
which model and optimisation schedule the papers use on it, and how to augment a training batch on
the device. Bias labels travel with every split but are used for evaluation only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from spaces import Domain, OneOf
from spaces.domains import NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, UNIT_CLOSED_OPEN, UNIT_OPEN_CLOSED

SPLITS = ("train", "valid", "test")

Augmentation = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


class DataError(RuntimeError):
    """Source data is missing or wrong; the message is one line that says what to do."""


@dataclass(frozen=True)
class Split:
    """One split: images (N, C, H, W) uint8, targets (N,) int64, bias labels (N,) int64."""

    images: np.ndarray
    targets: np.ndarray
    biases: np.ndarray

    def __len__(self) -> int:
        return len(self.targets)

    def head(self, n: int | None) -> Split:
        """The first ``n`` samples (all when ``n`` is None): a fair subset only of a split whose samples are
        i.i.d. in its order (``BiasedDataset.IID_ORDER``)."""
        if n is None or n >= len(self):
            return self
        return Split(self.images[:n], self.targets[:n], self.biases[:n])

    def spread(self, n: int | None) -> Split:
        """``n`` samples drawn evenly from every (target, bias) group, in split order (all when ``n`` is None).

        Systematic sampling within each group: its m samples in a random order get the keys (k + u) / m,
        u uniform per group, and the n smallest keys are kept. A group gives about n m / N samples (within
        one of t m for the shared threshold t, itself within a few groups' worth of n / N), and a group too
        small for one sample still gives one with that probability, so the bias ratio holds too. A prefix
        would not keep either: exact per-class bias labels put a class's biases in runs, and folder-built
        splits are sorted by class. The draw is fixed (seed 0): the same subset every time."""
        if n is None or n >= len(self):
            return self
        rng = np.random.default_rng(0)
        _, groups = np.unique(np.stack([self.targets, self.biases], axis=1), axis=0, return_inverse=True)
        groups = groups.ravel()
        key = np.empty(len(self))
        for group in range(int(groups.max()) + 1):
            members = rng.permutation(np.flatnonzero(groups == group))
            key[members] = (np.arange(len(members)) + rng.random()) / len(members)
        keep = np.sort(np.argsort(key, kind="stable")[:n])
        return Split(self.images[keep], self.targets[keep], self.biases[keep])


@dataclass(frozen=True)
class BiasedData:
    """The three splits of one (dataset, ratio) with the fingerprint that results record."""

    train: Split
    valid: Split
    test: Split
    fingerprint: str
    params: dict[str, Any]

    def split(self, name: str) -> Split:
        return getattr(self, name)


class BiasedDataset:
    """Spec of a biased dataset. Subclasses fill the class attributes and implement ``generate``.

    ``OPTIONS`` are dataset-level settings (``--set <name>.<key>=value``). ``TRAIN_DEFAULTS`` is the
    training setting every method uses on this dataset unless the method overrides it; ``QUICK`` holds
    the overrides of the ``quick`` preset.
    """

    name: ClassVar[str]
    PAPER: ClassVar[str] = ""  # the protocol's source, shown by ``run_bench.py list``
    # Bias ratios of the literature's columns: the default of ``--ratios``.
    RATIOS: ClassVar[tuple[float, ...]] = (0.005, 0.01, 0.05)
    num_classes: ClassVar[int]
    input_shape: ClassVar[tuple[int, int, int]]
    PROTOCOL_VERSION: ClassVar[int] = 1
    # True where every split's samples are i.i.d. in split order, so that ``train_size`` / ``eval_size``
    # take a prefix; otherwise they take ``Split.spread``, which keeps every (target, bias) group's share.
    IID_ORDER: ClassVar[bool] = False
    OPTIONS: ClassVar[dict[str, Any]] = {
        "data_seed": 0,
        "train_size": 0,
        "eval_size": 0,
    }
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]]
    QUICK: ClassVar[dict[str, Any]] = {}
    # Search distributions of training keys for --hparams-seed (bench.search).
    TRAIN_SPACE: ClassVar[dict[str, Any]] = {}
    # The values each training key may take, checked before any run starts.
    TRAIN_DOMAINS: ClassVar[dict[str, Domain]] = {
        "optimizer": OneOf(("adam", "sgd")),
        "lr": POSITIVE,
        "momentum": UNIT_CLOSED_OPEN,
        "weight_decay": NON_NEGATIVE,
        "batch_size": POSITIVE_INT,
        "epochs": POSITIVE_INT,
        "lr_decay_step": NON_NEGATIVE_INT,
        "lr_decay_gamma": UNIT_OPEN_CLOSED,
        "selection": OneOf(("best_valid_loss", "last_epoch")),
    }
    # The values each option may take, checked before any run starts.
    OPTION_DOMAINS: ClassVar[dict[str, Domain]] = {
        "data_seed": NON_NEGATIVE_INT,
        "train_size": NON_NEGATIVE_INT,
        "eval_size": NON_NEGATIVE_INT,
    }
    # Per-channel (mean, std) applied to model inputs after augmentation, or None.
    NORMALIZE: ClassVar[tuple[tuple[float, ...], tuple[float, ...]] | None] = None

    def __init__(self, options: dict[str, Any]):
        self.options = options

    def normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """Per-channel (mean, std) of the protocol's model inputs, applied to every split after
        augmentation: what every method's models see. Default ``NORMALIZE``."""
        return self.NORMALIZE

    def model_input_shape(self) -> tuple[int, int, int]:
        """The (C, H, W) of the images the models receive, after ``input_transform``."""
        return self.input_shape

    def has_validation(self) -> bool:
        """Whether the protocol holds out a validation split (model selection and search need one)."""
        return True

    def generation_params(self, root: Path, ratio: float) -> dict[str, Any]:
        """Everything the generated arrays depend on; the cache key and fingerprint hash these."""
        return {
            "dataset": self.name,
            "protocol_version": self.PROTOCOL_VERSION,
            "ratio": ratio,
            "data_seed": int(self.options["data_seed"]),
            **self.source_identity(),
        }

    def source_identity(self) -> dict[str, Any]:
        """What identifies the source files when they are not the genuine ones (a test's stand-in), so
        that caches built from different sources never collide; empty for the genuine source."""
        return {}

    def subset_sizes(self) -> dict[str, int | None]:
        """Subset sizes per split from the ``train_size`` / ``eval_size`` options (0 = full split)."""
        train = int(self.options["train_size"]) or None
        evaluation = int(self.options["eval_size"]) or None
        return {"train": train, "valid": evaluation, "test": evaluation}

    def check_source(self, root: Path) -> None:
        """Raise DataError (one line, saying where the files go) unless the source data is usable."""
        raise NotImplementedError

    def generate(self, root: Path, ratio: float) -> dict[str, Split]:
        """Build all splits from the source, deterministically from ``data_seed``."""
        raise NotImplementedError

    def input_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Deterministic batched transform of every split's float images in [0, 1] (e.g. a resize),
        applied before augmentation and normalisation; None for none."""
        return None

    def train_augmentation(self, device: torch.device) -> Augmentation | None:
        """Batched on-device augmentation of float images in [0, 1], or None for no augmentation."""
        return None
