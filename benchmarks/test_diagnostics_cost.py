"""The diagnostics' cost against a paper-preset run: one ``run_diagnostics`` on cmnist (54k training and
10k test images, CONV net: the training-loss pass, ERM's bias probe) against 100 training epochs
(ERM's paper schedule, the shortest one), the epoch timed in the same process. Target: at most 5 %."""

from __future__ import annotations

import time

import torch

from bench.data import DeviceSplit
from bench.diagnostics import run_diagnostics
from benchmarks.test_cmnist_epoch import suite_epoch
from datasets import DATASETS
from datasets.cache import load_or_build
from methods import METHODS, RunContext

PAPER_EPOCHS = 100


def test_diagnostics_cost(benchmark, cmnist_train, data_paths):
    spec = DATASETS["cmnist"](dict(DATASETS["cmnist"].OPTIONS))
    test = DeviceSplit(load_or_build(spec, data_paths.data_root, 0.01, data_paths.cache_dir).test, torch.device("cpu"))
    start = time.perf_counter()
    suite_epoch(cmnist_train)
    epoch_seconds = time.perf_counter() - start

    ctx = RunContext(10, (3, 28, 28), cmnist_train.targets, torch.device("cpu"), torch.Generator().manual_seed(0))
    method = METHODS["erm"](dict(DATASETS["cmnist"].TRAIN_DEFAULTS), ctx)
    method.models.eval()
    benchmark.pedantic(run_diagnostics, args=(method, cmnist_train, test), rounds=2, iterations=1)
    benchmark.extra_info["epoch_seconds"] = epoch_seconds
    benchmark.extra_info["fraction_of_paper_run"] = benchmark.stats.stats.median / (PAPER_EPOCHS * epoch_seconds)
