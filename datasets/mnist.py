"""MNIST source files: located under ``<root>/MNIST/raw``, downloaded by torchvision when online,
and checked against the genuine files' MD5 sums before use.

Test hook, not a user setting: the test fixtures write a synthetic MNIST of the same format and put its
files' MD5 sums in the environment variable ``DEBIAS_BENCH_TEST_MNIST_MD5`` (JSON, file name -> sum),
which then replaces the genuine sums, so that every test runs on a machine without MNIST (child processes
inherit it) while the files are still checked for integrity. No command-line flag turns the check off."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from datasets.base import DataError

MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


TEST_MD5_ENV = "DEBIAS_BENCH_TEST_MNIST_MD5"


def expected_md5() -> dict[str, str]:
    """The sums the source files must have: the genuine ones, unless the test hook replaces them."""
    hook = os.environ.get(TEST_MD5_ENV)
    return json.loads(hook) if hook else MD5


def stand_in_identity() -> dict[str, Any]:
    """The stand-in's MD5 sums while the test hook is set (for cache keys), else nothing."""
    return {"source_md5": expected_md5()} if os.environ.get(TEST_MD5_ENV) else {}


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def raw_dir(root: Path) -> Path:
    return Path(root) / "MNIST" / "raw"


def _download(root: Path) -> None:
    from torchvision.datasets import MNIST

    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        for train in (True, False):
            MNIST(str(root), train=train, download=True)


def ensure_mnist(root: Path) -> None:
    """Make sure the four genuine MNIST files are in ``<root>/MNIST/raw``; DataError otherwise."""
    folder = raw_dir(root)
    missing = [name for name in MD5 if not (folder / name).is_file()]
    if missing:
        created = next((p for p in (Path(root), Path(root) / "MNIST", folder) if not p.exists()), None)
        try:
            _download(root)
        except Exception as error:
            if created is not None:  # leave nothing half-downloaded behind
                shutil.rmtree(created, ignore_errors=True)
            raise DataError(
                f"MNIST not found in {folder} (missing {', '.join(missing)}) and the download failed "
                f"({type(error).__name__}); put the four MNIST idx files there or pass --data-root"
            ) from None
    for name, expected in expected_md5().items():
        if _md5(folder / name) != expected:
            raise DataError(
                f"{folder / name} is not the genuine MNIST file (MD5 differs from {expected}); "
                "replace it with the original or delete it to re-download"
            )


def load_mnist(root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """Grey images (N, 28, 28) uint8 and labels (N,) int64 of the MNIST train or test set."""
    from torchvision.datasets import MNIST

    source = MNIST(str(root), train=train, download=False)
    return source.data.numpy(), source.targets.numpy().astype(np.int64)
