"""One cmnist training epoch (54k images, CONV net, batch 128, PGD augmentation): the suite's path
(device-resident uint8 data, index batches, batched augmentation, ERM update) against a pipeline built
like the authors' (``reference_pipeline``), timed in the same process."""

from __future__ import annotations

import time

import torch

from bench.data import epoch_order, iterate_batches
from benchmarks.reference_pipeline import reference_epoch
from datasets import DATASETS
from datasets.augment import PGDColoredMNISTAugmentation
from methods import METHODS, RunContext
from models import build_model


def suite_epoch(split) -> int:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    hparams = dict(DATASETS["cmnist"].TRAIN_DEFAULTS)
    ctx = RunContext(10, (3, 28, 28), split.targets, torch.device("cpu"), generator)
    method = METHODS["erm"](hparams, ctx)
    method.models.train()
    order = epoch_order(len(split), None, generator, torch.device("cpu"))
    augment = PGDColoredMNISTAugmentation()
    for batch in iterate_batches(split, order, int(hparams["batch_size"]), augment, generator):
        method.update(batch)
    return len(order)


def test_cmnist_conv_epoch(benchmark, cmnist_train):
    torch.manual_seed(0)
    model = build_model("conv", 10, (3, 28, 28))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-3)
    start = time.perf_counter()
    reference_epoch(cmnist_train.images, cmnist_train.targets, model, optimizer)
    reference_seconds = time.perf_counter() - start

    samples = benchmark.pedantic(suite_epoch, args=(cmnist_train,), rounds=2, iterations=1)
    benchmark.extra_info["samples"] = samples
    benchmark.extra_info["threads"] = torch.get_num_threads()
    benchmark.extra_info["reference_seconds"] = reference_seconds
    benchmark.extra_info["speedup"] = reference_seconds / benchmark.stats.stats.median
