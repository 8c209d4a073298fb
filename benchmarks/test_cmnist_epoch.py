"""One cmnist training epoch (54k images, CONV net, batch 128, PGD augmentation) through the suite's
training path: device-resident uint8 data, index batches, batched augmentation, ERM update."""

from __future__ import annotations

import torch

from bench.data import epoch_order, iterate_batches
from datasets import DATASETS
from datasets.augment import PGDColoredMNISTAugmentation
from methods import METHODS, RunContext


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
    samples = benchmark.pedantic(suite_epoch, args=(cmnist_train,), rounds=2, iterations=1)
    benchmark.extra_info["samples"] = samples
    benchmark.extra_info["threads"] = torch.get_num_threads()
