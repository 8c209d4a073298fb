"""CIFAR-10 source images: torchvision's CIFAR10 under the data root (downloaded when online), or an
ImageFolder tree ``train/<class>/*``, ``test/<class>/*`` (e.g. the offline JPEG copy)."""

from __future__ import annotations

import contextlib
import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.base import DataError

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
HELP = ("pass --set cifar10c.source=PATH to an ImageFolder tree train/<class>/*, test/<class>/* "
        "or put torchvision's cifar-10-batches-py under --data-root")

# Per-channel (mean, std) the LfF and DFA code normalise CIFAR-10 with; DFA uses them for BFFHQ as well.
CIFAR10_STATS: tuple[tuple[float, ...], tuple[float, ...]] = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010))


def source_id(source: str) -> str:
    """Identity of the source for the cache key: the ImageFolder file list (names and sizes), or
    torchvision's CIFAR-10 (checked by torchvision itself)."""
    if not source:
        return "torchvision-cifar10"
    folder = Path(source)
    digest = hashlib.sha256()
    for path in sorted(folder.glob("*/*/*")):
        digest.update(f"{path.relative_to(folder)}:{path.stat().st_size}\n".encode())
    return f"imagefolder:{digest.hexdigest()[:16]}"


def check_cifar10(root: Path, source: str) -> None:
    if source:
        folder = Path(source)
        for split in ("train", "test"):
            found = sorted(p.name for p in (folder / split).glob("*") if p.is_dir())
            if tuple(found) != CLASSES:
                raise DataError(f"{folder / split} must hold one folder per CIFAR-10 class "
                                f"({', '.join(CLASSES)}); found {', '.join(found) or 'nothing'}")
        return
    try:
        _torchvision(root, train=False)
    except Exception as error:
        raise DataError(f"CIFAR-10 not found under {root} and the download failed ({type(error).__name__}); "
                        f"{HELP}") from None


def _torchvision(root: Path, train: bool):
    from torchvision.datasets import CIFAR10

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return CIFAR10(str(root), train=train, download=True)


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def load_cifar10(root: Path, source: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) uint8 RGB and labels (N,) int64 of the train or test split."""
    if not source:
        data = _torchvision(root, train)
        return np.asarray(data.data), np.asarray(data.targets, dtype=np.int64)
    folder = Path(source) / ("train" if train else "test")
    paths, labels = [], []
    for label, name in enumerate(CLASSES):
        files = sorted((folder / name).iterdir())
        paths += files
        labels += [label] * len(files)
    with ThreadPoolExecutor() as pool:
        images = list(pool.map(_read, paths, chunksize=256))
    return np.stack(images), np.asarray(labels, dtype=np.int64)
