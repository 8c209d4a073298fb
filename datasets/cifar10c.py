"""Corrupted CIFAR-10 with the LfF protocol (Nam et al., NeurIPS 2020): the bias attribute is a
corruption type, assigned by exact per-class counts; Type0 corruptions by default (option
``corruption_type=type1`` for Type1), Hendrycks' CIFAR-10-C parameters at LfF's "severity 4" (Hendrycks
level 5; option ``severity``).

Splits: CIFAR-10 train is shuffled (seeded) and split 45k/5k into train and a biased validation split,
both labelled at ratio r; the test split is CIFAR-10 test with 10 % of each class aligned (unbiased), the
set LfF evaluates on (its "valid"). Every image's corruption draws come from a generator seeded by
(data_seed, split, position), so the same seed gives the same images however generation is parallelised.
Training setting (DFA's protocol): torchvision ResNet-18 from scratch, Adam lr 1e-3, weight decay 0,
batch 256, 284 epochs (about DFA's 50k iterations), no LR decay; random crop 32 with padding 4,
horizontal flip and normalisation, batched on the device.
"""

from __future__ import annotations

import multiprocessing
import os
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from tqdm.auto import tqdm

from datasets.augment import CropFlipAugmentation
from datasets.base import Augmentation, BiasedDataset, DataError, Split
from datasets.bias_labels import exact_bias_labels
from datasets.cifar_source import CIFAR10_STATS, check_cifar10, load_cifar10, source_id
from datasets.corruptions import CORRUPTION_TYPES, frost_dir
from datasets.registry import register_dataset
from spaces import Domain, LogUniform, OneOf
from spaces.domains import NON_NEGATIVE_INT

TRAIN_FRACTION = 0.9
TEST_ALIGNED_FRACTION = 0.1
SPLIT_CODES = {"train": 0, "valid": 1, "test": 2}
CHUNK = 500


def corrupt_chunk(args: tuple) -> np.ndarray:
    """Corrupt a chunk of images; each image gets its own generator (picklable for worker processes)."""
    images, biases, keys, corruption_type, level = args
    functions = list(CORRUPTION_TYPES[corruption_type].values())
    out = np.empty((len(images), 3, 32, 32), dtype=np.uint8)
    for i, (image, bias, key) in enumerate(zip(images, biases, keys, strict=True)):
        out[i] = functions[bias](image, np.random.default_rng(key), level).transpose(2, 0, 1)
    return out


def corrupt_all(images: np.ndarray, biases: np.ndarray, keys: list[tuple[int, ...]], corruption_type: str,
                level: int, workers: int, desc: str) -> np.ndarray:
    jobs = [(images[s : s + CHUNK], biases[s : s + CHUNK], keys[s : s + CHUNK], corruption_type, level)
            for s in range(0, len(images), CHUNK)]
    # tqdm reads TQDM_DISABLE (run_bench.py --no-progress) only when it is imported; read it now.
    bar = partial(tqdm, total=len(jobs), desc=desc, unit="chunk", leave=False,
                  disable=os.environ.get("TQDM_DISABLE", "0").lower() not in ("", "0", "false"))
    if workers <= 1:
        parts = [corrupt_chunk(job) for job in bar(jobs)]
    else:
        # fork is cheap and works from any entry point; spawn only where CUDA is already initialised.
        method = "spawn" if torch.cuda.is_initialized() else "fork"
        with multiprocessing.get_context(method).Pool(workers) as pool:
            parts = list(bar(pool.imap(corrupt_chunk, jobs)))
    return np.concatenate(parts) if parts else np.empty((0, 3, 32, 32), dtype=np.uint8)


@register_dataset
class CorruptedCIFAR10(BiasedDataset):
    name: ClassVar[str] = "cifar10c"
    PAPER: ClassVar[str] = (
        "Corrupted CIFAR-10, LfF protocol (Nam et al., NeurIPS 2020), DFA's setting (Lee et al., NeurIPS 2021)"
    )
    RATIOS: ClassVar[tuple[float, ...]] = (0.005, 0.01, 0.02, 0.05)
    num_classes: ClassVar[int] = 10
    input_shape: ClassVar[tuple[int, int, int]] = (3, 32, 32)
    PROTOCOL_VERSION: ClassVar[int] = 1
    OPTIONS: ClassVar[dict[str, Any]] = {
        **BiasedDataset.OPTIONS,
        "severity": 4,
        "corruption_type": "type0",
        "source": "",
        "workers": 0,
    }
    OPTION_DOMAINS: ClassVar[dict[str, Domain]] = {
        **BiasedDataset.OPTION_DOMAINS,
        "severity": OneOf((1, 2, 3, 4)),
        "corruption_type": OneOf(tuple(CORRUPTION_TYPES)),
        "workers": NON_NEGATIVE_INT,
    }
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "model": "resnet18",
        "optimizer": "adam",
        "lr": 1e-3,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "batch_size": 256,
        "epochs": 284,
        "lr_decay_step": 0,
        "lr_decay_gamma": 1.0,
        "selection": "last_epoch",
        # DFA's code evaluates on test every 500 iterations (the published rows keep the best).
        "oracle_every_steps": 500,
    }
    QUICK: ClassVar[dict[str, Any]] = {"epochs": 2}
    TRAIN_SPACE: ClassVar[dict[str, Any]] = {"lr": LogUniform(1e-4, 3e-3)}
    NORMALIZE: ClassVar[tuple[tuple[float, ...], tuple[float, ...]]] = CIFAR10_STATS

    def level(self) -> int:
        severity = int(self.options["severity"])
        if not 1 <= severity <= 4:
            raise DataError(f"cifar10c.severity must be 1..4 (LfF's severities; Hendrycks level = severity + 1), "
                            f"got {severity}")
        return severity + 1

    def generation_params(self, root: Path, ratio: float) -> dict[str, Any]:
        kind = self.options["corruption_type"]
        if kind not in CORRUPTION_TYPES:
            raise DataError(f"cifar10c.corruption_type must be one of {', '.join(CORRUPTION_TYPES)}, got {kind}")
        return {
            **super().generation_params(root, ratio),
            "level": self.level(),
            "corruption_type": kind,
            "corruptions": list(CORRUPTION_TYPES[kind]),
            "source": source_id(str(self.options["source"])),
        }

    def check_source(self, root: Path) -> None:
        if self.options["corruption_type"] == "type0":
            try:
                frost_dir()
            except RuntimeError as error:
                raise DataError(str(error)) from None
        check_cifar10(root, str(self.options["source"]))

    def generate(self, root: Path, ratio: float) -> dict[str, Split]:
        seed = int(self.options["data_seed"])
        source = str(self.options["source"])
        kind = str(self.options["corruption_type"])
        workers = int(self.options["workers"]) or (os.cpu_count() or 1)
        images, targets = load_cifar10(root, source, train=True)
        order = np.random.default_rng([seed, round(ratio * 1_000_000), 2]).permutation(len(targets))
        cut = int(len(targets) * TRAIN_FRACTION)
        test_images, test_targets = load_cifar10(root, source, train=False)
        parts = {
            "train": (images[order[:cut]], targets[order[:cut]], ratio),
            "valid": (images[order[cut:]], targets[order[cut:]], ratio),
            "test": (test_images, test_targets, 1 - TEST_ALIGNED_FRACTION),
        }
        splits = {}
        for name, (split_images, split_targets, conflict) in parts.items():
            biases = exact_bias_labels(split_targets, conflict, self.num_classes)
            # The test split's draws do not depend on r, so it is the same images for every ratio.
            ratio_key = 0 if name == "test" else round(ratio * 1_000_000)
            keys = [(seed, ratio_key, SPLIT_CODES[name], i) for i in range(len(split_targets))]
            corrupted = corrupt_all(split_images, biases, keys, kind, self.level(), workers, f"cifar10c {name}")
            splits[name] = Split(corrupted, split_targets, biases)
        return splits

    def train_augmentation(self, device: torch.device) -> Augmentation | None:
        return CropFlipAugmentation(padding=4)
