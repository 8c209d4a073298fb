"""Fixtures for the speed benchmarks: the real cmnist data at 1 % on the CPU.

Run with ``make benchmark`` (or ``pytest benchmarks``). Each benchmark times a baseline and the suite's
own path in the same process, so ratios are meaningful on a noisy machine."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.data import DeviceSplit  # noqa: E402
from bench.runner import RunPaths  # noqa: E402
from datasets import DATASETS  # noqa: E402
from datasets.cache import load_or_build  # noqa: E402
from datasets.mnist import MD5, raw_dir  # noqa: E402


@pytest.fixture(scope="session")
def data_paths() -> RunPaths:
    """$DATA_ROOT (default ../shared/data) and $DEBIAS_BENCH_CACHE (default ./cache); skips without MNIST."""
    root = Path(os.environ.get("DATA_ROOT", ROOT.parent / "shared" / "data")).resolve()
    if not all((raw_dir(root) / name).is_file() for name in MD5):
        pytest.skip(f"MNIST not found under {root}/MNIST/raw (set DATA_ROOT)")
    return RunPaths(root, Path(os.environ.get("DEBIAS_BENCH_CACHE", ROOT / "cache")))


@pytest.fixture(scope="session")
def cmnist_train(data_paths: RunPaths) -> DeviceSplit:
    spec = DATASETS["cmnist"](dict(DATASETS["cmnist"].OPTIONS))
    data = load_or_build(spec, data_paths.data_root, 0.01, data_paths.cache_dir)
    return DeviceSplit(data.train, torch.device("cpu"))
