"""The cifar10c training pipeline against its physical limit: throughput of the suite's ERM epoch path
(uint8 images on the device, index batches, batched crop/flip/normalise, update) divided by the
throughput of ResNet-18's own forward+backward+Adam step on device-resident random tensors at the same
batch size. Runs on $BENCH_DEVICE (default cpu; the GPU check sets cuda): on CUDA over one whole epoch
of cifar10c's size (45k images, 176 steps), on the CPU over 3 steps."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from bench.data import DeviceSplit, iterate_batches
from datasets import DATASETS, Split
from datasets.augment import CropFlipAugmentation
from methods import METHODS, RunContext

BATCH = 256
CIFAR10C_TRAIN = 45_000


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def test_resnet18_pipeline_efficiency(benchmark):
    device = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
    # $BENCH_SMALL: the GPU check's CPU dry run, one step, only to test the script.
    steps = math.ceil(CIFAR10C_TRAIN / BATCH) if device.type == "cuda" else 1 if os.environ.get("BENCH_SMALL") else 3
    n = BATCH * steps
    rng = np.random.default_rng(0)
    split = Split(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n), np.zeros(n, int))
    train = DeviceSplit(split, device, DATASETS["cifar10c"].NORMALIZE)
    generator = torch.Generator(device=device).manual_seed(0)
    torch.manual_seed(0)
    hparams = dict(DATASETS["cifar10c"].TRAIN_DEFAULTS)
    method = METHODS["erm"](hparams, RunContext(10, (3, 32, 32), train.targets, device, generator))
    method.models.train()
    augment = CropFlipAugmentation(4)

    def pipeline_epoch():
        order = torch.randperm(n, generator=generator, device=device)
        for batch in iterate_batches(train, order, BATCH, augment, generator):
            method.update(batch)
        _sync(device)

    model, optimizer = method.models["model"], method.optimizers["model"]
    x = torch.randn(BATCH, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (BATCH,), device=device)

    def model_only():
        for _ in range(steps):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)

    model_only()  # warm-up (cuDNN autotuning, allocator)
    start = time.perf_counter()
    model_only()
    model_seconds = time.perf_counter() - start
    benchmark.pedantic(pipeline_epoch, rounds=2, iterations=1, warmup_rounds=1)
    efficiency = model_seconds / benchmark.stats.stats.median
    benchmark.extra_info.update(device=str(device), steps=steps, model_only_seconds=model_seconds,
                                efficiency=efficiency, step_seconds=benchmark.stats.stats.median / steps)
