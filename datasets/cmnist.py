"""Colored MNIST with the PGD protocol (Ahn, Kim & Yun, ICLR 2023; authors' ``datagen`` code).

Every training sample is bias-conflicting with probability r, then coloured with one of the 9 other
colours drawn uniformly; otherwise with its digit's colour. Pixel = clamp(gray/255 * (colour + noise)),
noise ~ N(0, 1e-4) per sample and channel. MNIST train is split 54k/6k into train/valid, both at ratio
r; MNIST test is coloured with conflict probability 0.9, i.e. colour independent of the digit.

Deviations from the authors' generator, both deliberate:
- it draws from an unseeded RNG; here every draw comes from ``numpy.random.default_rng`` seeded by
  ``data_seed`` (and the ratio), so the same seed always gives the same images;
- images are stored as uint8, truncating ``x * 255`` exactly as the authors' ``ToPILImage`` does in the
  training path; their valid/test tensors stay float, so those differ from ours by < 1/255.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from datasets.augment import PGDColoredMNISTAugmentation
from datasets.base import Augmentation, BiasedDataset, Split
from datasets.mnist import ensure_mnist, load_mnist, stand_in_identity
from datasets.registry import register_dataset
from spaces import LogUniform

COLORS = np.array(
    [
        [0.8627451, 0.07843137, 0.23529412],
        [0.0, 0.50196078, 0.50196078],
        [0.99215686, 0.91372549, 0.0627451],
        [0.0, 0.58431373, 0.71372549],
        [0.929411765, 0.568627451, 0.129411765],
        [0.568627451, 0.117647059, 0.737254902],
        [0.274509804, 0.941176471, 0.941176471],
        [0.980392157, 0.77254902, 0.733333333],
        [0.823529412, 0.960784314, 0.235294118],
        [0.501960784, 0.0, 0.0],
    ],
    dtype=np.float32,
)
NOISE_STD = 1e-4
TEST_CONFLICT_PROBABILITY = 0.9
TRAIN_FRACTION = 0.9


def draw_bias_labels(targets: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """Each sample conflicts with probability ``ratio``; a conflicting one gets one of the other
    9 labels uniformly (same law as the authors' rejection loop)."""
    conflicting = rng.random(len(targets)) < ratio
    offsets = rng.integers(1, 10, size=len(targets))
    return np.where(conflicting, (targets + offsets) % 10, targets).astype(np.int64)


def colorize(gray: np.ndarray, biases: np.ndarray, rng: np.random.Generator, chunk: int = 10_000) -> np.ndarray:
    """(N, 28, 28) grey uint8 -> (N, 3, 28, 28) uint8 coloured by ``COLORS[bias] + noise``."""
    noise = rng.normal(0.0, NOISE_STD, size=(len(gray), 3)).astype(np.float32)
    out = np.empty((len(gray), 3, *gray.shape[1:]), dtype=np.uint8)
    for start in range(0, len(gray), chunk):
        stop = start + chunk
        color = COLORS[biases[start:stop]] + noise[start:stop]
        pixels = gray[start:stop, None].astype(np.float32) * color[:, :, None, None] / 255.0
        out[start:stop] = (np.clip(pixels, 0.0, 1.0) * 255.0).astype(np.uint8)
    return out


@register_dataset
class ColoredMNIST(BiasedDataset):
    name: ClassVar[str] = "cmnist"
    PAPER: ClassVar[str] = "Colored MNIST, PGD protocol (Ahn, Kim & Yun, ICLR 2023)"
    num_classes: ClassVar[int] = 10
    input_shape: ClassVar[tuple[int, int, int]] = (3, 28, 28)
    IID_ORDER: ClassVar[bool] = True  # every sample's bias is drawn alone, and MNIST is not sorted by digit
    # PGD's official cmnist setting (reference notes): CONV net, SGD, StepLR 0.1 every 40 of 100 epochs.
    TRAIN_DEFAULTS: ClassVar[dict[str, Any]] = {
        "model": "conv",
        "optimizer": "sgd",
        "lr": 0.02,
        "momentum": 0.9,
        "weight_decay": 1e-3,
        "batch_size": 128,
        "epochs": 100,
        "lr_decay_step": 40,
        "lr_decay_gamma": 0.1,
        "selection": "best_valid_loss",
    }
    QUICK: ClassVar[dict[str, Any]] = {"epochs": 2}
    TRAIN_SPACE: ClassVar[dict[str, Any]] = {"lr": LogUniform(2e-3, 2e-1), "weight_decay": LogUniform(1e-5, 1e-2)}

    def source_identity(self) -> dict[str, Any]:
        return stand_in_identity()

    def check_source(self, root: Path) -> None:
        ensure_mnist(root)

    def generate(self, root: Path, ratio: float) -> dict[str, Split]:
        seed = int(self.options["data_seed"])
        train_rng = np.random.default_rng([seed, round(ratio * 1_000_000)])
        gray, targets = load_mnist(root, train=True)
        biases = draw_bias_labels(targets, ratio, train_rng)
        images = colorize(gray, biases, train_rng)
        cut = int(len(targets) * TRAIN_FRACTION)

        # The unbiased test set depends on the seed only, so it is the same for every ratio.
        test_rng = np.random.default_rng([seed, 0xC0FFEE])
        test_gray, test_targets = load_mnist(root, train=False)
        test_biases = draw_bias_labels(test_targets, TEST_CONFLICT_PROBABILITY, test_rng)
        return {
            "train": Split(images[:cut], targets[:cut], biases[:cut]),
            "valid": Split(images[cut:], targets[cut:], biases[cut:]),
            "test": Split(colorize(test_gray, test_biases, test_rng), test_targets, test_biases),
        }

    def train_augmentation(self, device: torch.device) -> Augmentation | None:
        return PGDColoredMNISTAugmentation()
