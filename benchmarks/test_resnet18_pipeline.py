"""The cifar10c training pipeline against its physical limit: throughput of the suite's ERM epoch path
(uint8 images on the device, index batches, batched crop/flip/normalise, update) divided by the
throughput of ResNet-18's own forward+backward+Adam step on device-resident random tensors at the same
batch size. Runs on $BENCH_DEVICE (default cpu; the GPU check sets cuda): on CUDA over one whole epoch
of cifar10c's size (45k images, 176 steps), on the CPU over 3 steps.

On the CPU, ``test_cifar10c_step_configurations`` then times, in the same run and each in processes of
its own (``cifar10c_step.py``), the bare model step and the suite's own training step under the
configurations a paper-scale cifar10c run could take: one run on every thread against one one-thread run
per core at once (the layouts), native against portable numerics, channels_last, ``--compile``, and bf16
autocast where the CPU has AMX or AVX-512 BF16; and projects a paper-scale run's training time from the
fastest fp32 configuration."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bench.data import DeviceSplit, iterate_batches
from bench.numerics import PORTABLE_ENV, cpu_flags
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


STEP_WORKER = Path(__file__).with_name("cifar10c_step.py")
PAPER_STEPS = 284 * 176  # cifar10c's paper preset: 284 epochs of 176 batches, about DFA's 50k iterations
# name: (path, processes, threads each, flags); "all" = every core in one process, "cores" = one per core.
CONFIGURATIONS = {
    "bare_1xN": ("bare", 1, "all", ()),
    "bare_Nx1": ("bare", "cores", 1, ()),
    "suite_1xN": ("suite", 1, "all", ()),
    "suite_Nx1": ("suite", "cores", 1, ()),
    "suite_Nx1_portable": ("suite", "cores", 1, ("--numerics", "portable")),
    "suite_1xN_channels_last": ("suite", 1, "all", ("--channels-last",)),
    "suite_1xN_compile": ("suite", 1, "all", ("--compile",)),
    "suite_1xN_bf16": ("suite", 1, "all", ("--bf16",)),
}


def time_configuration(path: str, processes: int, threads: int, flags: tuple[str, ...]) -> list[float]:
    """Seconds per step of each of ``processes`` worker processes started together."""
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}
    warmup = "4" if "--compile" in flags else "2"
    command = [sys.executable, str(STEP_WORKER), "--path", path, "--threads", str(threads), "--steps", "6",
               "--warmup", warmup, *flags]
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    outputs = [worker.communicate(timeout=900)[0] for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), outputs
    return [json.loads(out.splitlines()[-1])["step_seconds"] for out in outputs]


@pytest.mark.skipif(os.environ.get("BENCH_DEVICE", "cpu") != "cpu" or bool(os.environ.get("BENCH_SMALL")),
                    reason="the CPU configurations of a cifar10c step; minutes long, so not in the dry run")
def test_cifar10c_step_configurations(benchmark):
    cores = os.cpu_count() or 1
    bf16 = bool({"amx_tile", "avx512_bf16"} & set(cpu_flags()))
    wanted = {name: c for name, c in CONFIGURATIONS.items() if bf16 or not name.endswith("_bf16")}
    step_seconds: dict[str, float] = {}
    throughput: dict[str, float] = {}

    def measure_all():
        for name, (path, processes, threads, flags) in wanted.items():
            count = cores if processes == "cores" else processes
            seconds = time_configuration(path, count, cores if threads == "all" else threads, flags)
            step_seconds[name] = statistics.mean(seconds)
            throughput[name] = sum(1 / s for s in seconds)  # steps per second of the whole machine

    benchmark.pedantic(measure_all, rounds=1, iterations=1)
    fp32 = [name for name in throughput if name.startswith("suite") and not name.endswith(("_bf16", "_portable"))]
    fastest = max(fp32, key=throughput.get)
    layout = "1xN" if throughput["suite_1xN"] >= throughput["suite_Nx1"] else "Nx1"
    benchmark.extra_info.update(
        cores=cores, step_seconds=step_seconds, steps_per_s=throughput, fastest_fp32=fastest,
        better_layout=layout,
        layout_gain=max(throughput["suite_1xN"], throughput["suite_Nx1"]) / min(throughput["suite_1xN"],
                                                                                throughput["suite_Nx1"]),
        suite_over_bare_1xN=step_seconds["suite_1xN"] / step_seconds["bare_1xN"],
        suite_over_bare_Nx1=step_seconds["suite_Nx1"] / step_seconds["bare_Nx1"],
        portable_slowdown=step_seconds["suite_Nx1_portable"] / step_seconds["suite_Nx1"],
        channels_last_speedup=step_seconds["suite_1xN"] / step_seconds["suite_1xN_channels_last"],
        compile_speedup=step_seconds["suite_1xN"] / step_seconds["suite_1xN_compile"],
        bf16_speedup=step_seconds["suite_1xN"] / step_seconds["suite_1xN_bf16"] if bf16 else None,
        # One ERM run's optimiser steps at the fastest fp32 configuration, the machine to itself (a
        # layout of N one-thread runs finishes N runs in N times one run's time).
        paper_erm_training_s_projected=PAPER_STEPS / throughput[fastest] * (cores if "Nx1" in fastest else 1),
    )
