"""Host-device synchronisations per training step on CUDA, for every method on cmnist's setting (CONV
net, the batch augmentation on the device, batch 128): CUDA's sync debug mode warns at each synchronising
call, and the warnings raised while the suite's step runs (batch gathering, augmentation, ``update``) are
counted over 20 steps after a warm-up. Target: none inside the step. Skipped without CUDA."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from bench.data import DeviceSplit, iterate_batches
from bench.hparams import resolve_hparams
from datasets import DATASETS, Split
from methods import METHODS, RunContext

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
STEPS, N = 20, 128 * 24


def synchronisations(steps) -> int:
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            steps()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    torch.cuda.synchronize()
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("name", ["erm", "lff", "jtt", "dfa", "pgd"])
def test_cuda_syncs_per_step(benchmark, name):
    device = torch.device("cuda")
    rng = np.random.default_rng(0)
    split = DeviceSplit(Split(rng.integers(0, 256, (N, 3, 28, 28), dtype=np.uint8), rng.integers(0, 10, N),
                              rng.integers(0, 10, N)), device)
    dataset = DATASETS["cmnist"]
    sets = {"curriculum_step": "0"} if name == "dfa" else {}  # DFA's feature swap inside the counted steps
    hparams = resolve_hparams(METHODS[name], dataset, 0.01, "paper", None, sets)
    generator = torch.Generator(device=device).manual_seed(0)
    torch.manual_seed(0)
    method = METHODS[name](hparams, RunContext(10, (3, 28, 28), split.targets, device, generator))
    method.models.train()
    augment = dataset(dict(dataset.OPTIONS)).train_augmentation(device)
    batch_size = int(hparams["batch_size"])

    def steps() -> None:
        order = torch.randperm(N, generator=generator, device=device)[: STEPS * batch_size]
        for batch in iterate_batches(split, order, batch_size, augment, generator):
            method.update(batch)

    steps()  # warm-up: cuDNN's algorithm choice and the allocator may synchronise once
    counted = benchmark.pedantic(synchronisations, args=(steps,), rounds=1, iterations=1)
    benchmark.extra_info["method"] = name
    benchmark.extra_info["syncs_per_step"] = counted / STEPS
