"""BFFHQ, biased FFHQ (target: age young/old, bias: gender), as released with DFA (Lee et al., NeurIPS
2021). Only the 0.5 % split exists.

Layout under ``--data-root`` (the DFA release; labels in each file name's suffix ``_{target}_{bias}.png``):
  bffhq/0.5pct/align/<class>/*.png, bffhq/0.5pct/conflict/<class>/*.png, bffhq/valid/*.png, bffhq/test/*.png
Images are decoded once into the cache at their stored size and resized to 224x224 on the device
(bilinear, antialiased, as torchvision's ``Resize((224, 224))`` on tensors). DFA evaluates on the
bias-conflicting test samples only: that is ``test_conflicting_acc``; ``test_acc`` is over the whole test
split. Training setting (DFA's): ResNet-18 from scratch, Adam lr 1e-4, batch 64, about 50k iterations;
random crop 224 with padding 4, horizontal flip, and the CIFAR-10 mean / std for normalisation, as DFA's
code normalises BFFHQ (not ImageNet's statistics).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from datasets.augment import CropFlipAugmentation
from datasets.base import Augmentation, BiasedDataset, DataError, Split
from datasets.cifar_source import CIFAR10_STATS
from datasets.registry import register_dataset
from spaces import Domain, LogUniform
from spaces.domains import POSITIVE_INT

WHERE = ("BFFHQ is distributed by the DFA authors (kakaoenterprise/Learning-Debiased-Disentangled, a Google "
         "Drive link in its README); unpack it so that {root}/bffhq/0.5pct/align, {root}/bffhq/0.5pct/conflict, "
         "{root}/bffhq/valid and {root}/bffhq/test exist")
LABELS = re.compile(r"_(\d+)_(\d+)\.png$")
SIZE = 224


def parse_labels(path: Path) -> tuple[int, int]:
    match = LABELS.search(path.name)
    if match is None:
        raise DataError(f"{path}: expected a file name ending in _<target>_<bias>.png")
    return int(match.group(1)), int(match.group(2))


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).transpose(2, 0, 1)


def read_split(paths: list[Path]) -> Split:
    if not paths:
        return Split(np.empty((0, 3, 1, 1), np.uint8), np.empty(0, np.int64), np.empty(0, np.int64))
    labels = np.array([parse_labels(p) for p in paths], dtype=np.int64)
    with ThreadPoolExecutor() as pool:
        images = list(pool.map(_read, paths, chunksize=64))
    shapes = {image.shape for image in images}
    if len(shapes) != 1:
        raise DataError(f"BFFHQ images must share one size; found {sorted(shapes)}")
    return Split(np.stack(images), labels[:, 0], labels[:, 1])


def resize(x: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """To size x size, bilinear with antialiasing (torchvision's tensor ``Resize``)."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


def listing_id(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(f"{path.name}:{path.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]


@register_dataset
class BFFHQ(BiasedDataset):
    name: ClassVar[str] = "bffhq"
    PAPER: ClassVar[str] = "BFFHQ, DFA's release (Lee et al., NeurIPS 2021)"
    num_classes: ClassVar[int] = 2
    input_shape: ClassVar[tuple[int, int, int]] = (3, SIZE, SIZE)
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "model": "resnet18",
        "optimizer": "adam",
        "lr": 1e-4,
        "momentum": 0.0,
        "weight_decay": 0.0,
        "batch_size": 64,
        "epochs": 166,
        "lr_decay_step": 0,
        "lr_decay_gamma": 1.0,
        "selection": "best_valid_loss",
        # DFA's code evaluates on test every 500 iterations (the published rows keep the best).
        "oracle_every_steps": 500,
    }
    QUICK: ClassVar[dict[str, Any]] = {"epochs": 1}
    TRAIN_SPACE: ClassVar[dict[str, Any]] = {"lr": LogUniform(1e-5, 1e-3)}
    NORMALIZE: ClassVar[tuple[tuple[float, ...], tuple[float, ...]]] = CIFAR10_STATS
    RATIOS: ClassVar[tuple[float, ...]] = (0.005,)
    # image_size: the side images are resized to on the device (DFA: 224; smaller for quick tests).
    OPTIONS: ClassVar[dict[str, Any]] = {**BiasedDataset.OPTIONS, "image_size": SIZE}
    OPTION_DOMAINS: ClassVar[dict[str, Domain]] = {**BiasedDataset.OPTION_DOMAINS, "image_size": POSITIVE_INT}

    @staticmethod
    def folders(root: Path) -> dict[str, list[Path]]:
        base = Path(root) / "bffhq"
        return {
            "train": [base / "0.5pct" / "align", base / "0.5pct" / "conflict"],
            "valid": [base / "valid"],
            "test": [base / "test"],
        }

    def generate(self, root: Path, ratio: float) -> dict[str, Split]:
        if ratio not in self.RATIOS:
            raise DataError(f"bffhq exists at ratio 0.005 only (the 0.5pct release), got {ratio}")
        return {name: read_split(paths) for name, paths in self.files(root).items()}

    def files(self, root: Path) -> dict[str, list[Path]]:
        return {name: sorted(p for folder in folders for p in folder.rglob("*.png"))
                for name, folders in self.folders(root).items()}

    def generation_params(self, root: Path, ratio: float) -> dict[str, Any]:
        listing = {name: listing_id(paths) for name, paths in self.files(root).items()}
        return {**super().generation_params(root, ratio), "files": listing}

    def check_source(self, root: Path) -> None:
        missing = [str(f) for fs in self.folders(root).values() for f in fs if not f.is_dir()]
        if missing:
            raise DataError(f"BFFHQ not found ({missing[0]} is missing). " + WHERE.format(root=root))

    def model_input_shape(self) -> tuple[int, int, int]:
        size = int(self.options["image_size"])
        return (3, size, size)

    def input_transform(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        return partial(resize, size=int(self.options["image_size"]))

    def train_augmentation(self, device: torch.device) -> Augmentation | None:
        return CropFlipAugmentation(padding=4)
