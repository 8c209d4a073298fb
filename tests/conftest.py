"""Shared fixtures. Source data comes from $DATA_ROOT (CI: ../shared/data); tests that need MNIST are
skipped with a reason when it is absent, everything else runs anywhere."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datasets.mnist import MD5, raw_dir  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


def _data_root() -> Path:
    env = os.environ.get("DATA_ROOT")
    return Path(env).resolve() if env else (ROOT.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if not all((raw_dir(root) / name).is_file() for name in MD5):
        pytest.skip(f"MNIST not found under {root}/MNIST/raw (set DATA_ROOT)")
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")
