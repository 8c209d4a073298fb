"""A synthetic MNIST in the genuine idx format, for tests on machines without the real files: 60k train
and 10k test 28 x 28 grey images of ten class templates (random strokes, shifted and noised per image),
so that models can learn them, with the same file names and sizes as MNIST."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np

from datasets.mnist import raw_dir

SIZES = {"train": 60_000, "t10k": 10_000}


def _templates(rng: np.random.Generator) -> np.ndarray:
    """Ten 28 x 28 stroke images in [0, 1]: a few random line segments each, blurred."""
    yy, xx = np.mgrid[0:28, 0:28]
    templates = np.zeros((10, 28, 28))
    for c in range(10):
        for _ in range(3):
            (y0, x0), (y1, x1) = rng.integers(6, 22, (2, 2))
            for t in np.linspace(0, 1, 30):
                y, x = y0 + t * (y1 - y0), x0 + t * (x1 - x0)
                templates[c] = np.maximum(templates[c], np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 2.0))
    return templates


def _images(labels: np.ndarray, templates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    images = templates[labels]
    shifts = rng.integers(-2, 3, (len(labels), 2))
    for axis in (0, 1):
        for shift in (-2, -1, 1, 2):
            chosen = shifts[:, axis] == shift
            images[chosen] = np.roll(images[chosen], shift, axis=axis + 1)
    images = images * rng.uniform(0.7, 1.0, (len(labels), 1, 1)) + rng.normal(0, 0.03, images.shape)
    return (np.clip(images, 0, 1) * 255).astype(np.uint8)


def write_synthetic_mnist(root: Path, seed: int = 0) -> dict[str, str]:
    """Write the four idx files under ``root/MNIST/raw``; return their MD5 sums by file name."""
    folder = raw_dir(root)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    templates = _templates(rng)
    sums = {}
    for prefix, n in SIZES.items():
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = _images(labels, templates, rng)
        files = {f"{prefix}-images-idx3-ubyte": struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes(),
                 f"{prefix}-labels-idx1-ubyte": struct.pack(">II", 2049, n) + labels.tobytes()}
        for name, content in files.items():
            (folder / name).write_bytes(content)
            sums[name] = hashlib.md5(content).hexdigest()
    return sums
