"""Shared fixtures. Source data comes from $DATA_ROOT (CI: ../shared/data). Without the genuine MNIST
files there, ``data_root`` is a synthetic MNIST of the same format (``tests/synthetic_mnist.py``),
accepted through the test hook of ``datasets.mnist``, so every test that needs MNIST still runs; only
``genuine_mnist_root`` (tests about the real files themselves) skips then."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from synthetic_mnist import write_synthetic_mnist  # noqa: E402

from datasets.mnist import MD5, TEST_MD5_ENV, raw_dir  # noqa: E402

# Under pytest-xdist the cores are shared by the workers: each worker, and every process it starts
# (run_bench.py children read OMP_NUM_THREADS), gets its share, so that no core is oversubscribed.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
os.environ["OMP_NUM_THREADS"] = str(THREADS)
torch.set_num_threads(THREADS)


def _data_root() -> Path:
    env = os.environ.get("DATA_ROOT")
    return Path(env).resolve() if env else (ROOT.parent / "shared" / "data")


def has_mnist(root: Path) -> bool:
    return all((raw_dir(root) / name).is_file() for name in MD5)


def synthetic_root(folder: Path) -> Path:
    """Write a synthetic MNIST into ``folder`` and let the MD5 check accept it (this process and its
    children)."""
    os.environ[TEST_MD5_ENV] = json.dumps(write_synthetic_mnist(folder))
    return folder


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    """A data root with MNIST: the genuine files under $DATA_ROOT, else a synthetic stand-in."""
    root = _data_root()
    return root if has_mnist(root) else synthetic_root(tmp_path_factory.mktemp("synthetic-data"))


@pytest.fixture(scope="session")
def genuine_mnist_root() -> Path:
    root = _data_root()
    if not has_mnist(root):
        pytest.skip(f"the genuine MNIST files are not under {root}/MNIST/raw (set DATA_ROOT)")
    return root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """Generated datasets, built once per test run: under xdist one folder for all workers (entries are
    locked while built, ``datasets.cache``)."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return tmp_path_factory.mktemp("cache")
    shared = tmp_path_factory.getbasetemp().parent / "shared-cache"
    shared.mkdir(exist_ok=True)
    return shared


# The CPU always; CUDA where there is one (``pytest -m cuda`` runs only those cases: the GPU check).
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[
        pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")]),
]


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each test that takes it runs on the CPU and, where CUDA exists, on CUDA."""
    return torch.device(request.param)


# Files that take longest start first, so that under xdist the rest fills in around them; the Ray tests
# mostly wait for Ray's processes to start, so they overlap well with the CPU-bound ones.
FIRST = ("test_ray.py", "test_gpu_check.py", "test_resume.py", "test_plugins.py", "test_cifar10c.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(FIRST)))
