"""Cost of one in-run checkpoint (``bench.trainer.Training.checkpoint``: the whole run state, written
atomically with fsync) against one training epoch of the same method, timed in the same process.

- CONV net: PGD on cmnist at 1 % (two CONV nets with SGD momentum, the selection snapshot, the per-sample
  sampling probabilities and epoch order over 54k images), against the suite's cmnist epoch.
- ResNet-18: DFA on cifar10c (two ResNet-18 encoders with Adam, the selection snapshot, two per-sample
  EMAs over 45k images), against DFA's own update at batch 256 times the epoch's 176 steps.
Target: under 5 % of an epoch when checkpointing every epoch. The default (automatic) spacing bounds the
overhead at 5 % of the run whatever the ratio. Runs on $BENCH_DEVICE (default cpu)."""

from __future__ import annotations

import math
import os
import time

import numpy as np
import torch

from bench.checkpoint import Checkpointer
from bench.data import DeviceSplit
from bench.hparams import resolve_hparams
from bench.trainer import Checkpointing, DeviceData, Training
from benchmarks.test_cmnist_epoch import suite_epoch
from datasets import DATASETS, Split
from methods import METHODS, Batch, RunContext

CIFAR10C_TRAIN = 45_000
# $BENCH_SMALL (the GPU check's CPU dry run): a 2k-image stand-in, one timed step, to test the script.
SMALL = bool(os.environ.get("BENCH_SMALL"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def prepared_training(method, split: DeviceSplit, folder) -> Training:
    """A run's loop mid-way: a selection snapshot and a current epoch order, as at an epoch end."""
    data = DeviceData(split, split, split, 10, None)
    training = Training(method, data, method.ctx.generator, False, False,
                        Checkpointing(Checkpointer(folder, "benchmark", "benchmark"), 0))
    training.state.best = {"stage": "train", "epoch": 1, "valid_loss": 0.0, "state": method.snapshot()}
    training.state.epoch_order = torch.randperm(len(split), device=split.targets.device)
    return training


def test_checkpoint_cost_conv(benchmark, cmnist_train, tmp_path):
    start = time.perf_counter()
    suite_epoch(cmnist_train)
    epoch_seconds = time.perf_counter() - start

    hparams = resolve_hparams(METHODS["pgd"], DATASETS["cmnist"], 0.01, "paper", None, {})
    ctx = RunContext(10, (3, 28, 28), cmnist_train.targets, torch.device("cpu"), torch.Generator().manual_seed(0))
    method = METHODS["pgd"](hparams, ctx)
    method.probabilities = torch.full((len(cmnist_train),), 1 / len(cmnist_train), dtype=torch.float64)
    method.active = method.SECOND
    training = prepared_training(method, cmnist_train, tmp_path)
    benchmark.pedantic(training.checkpoint, args=(False,), rounds=5, iterations=1, warmup_rounds=1)
    benchmark.extra_info["epoch_seconds"] = epoch_seconds
    benchmark.extra_info["bytes"] = training.state.checkpoints["bytes"]
    benchmark.extra_info["fraction_of_epoch"] = benchmark.stats.stats.median / epoch_seconds


def test_checkpoint_cost_resnet18(benchmark, tmp_path):
    device = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
    rng = np.random.default_rng(0)
    n = 2048 if SMALL else CIFAR10C_TRAIN
    split = DeviceSplit(Split(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n),
                              np.zeros(n, int)), device, DATASETS["cifar10c"].NORMALIZE)
    torch.manual_seed(0)
    hparams = resolve_hparams(METHODS["dfa"], DATASETS["cifar10c"], 0.01, "paper", None, {})
    generator = torch.Generator(device=device).manual_seed(0)
    method = METHODS["dfa"](hparams, RunContext(10, (3, 32, 32), split.targets, device, generator))
    batch_size = int(hparams["batch_size"])
    index = torch.arange(batch_size, device=device)
    batch = Batch(index, split.inputs(index), split.targets[index])
    method.update(batch)  # warm-up
    steps = 20 if device.type == "cuda" else 1 if SMALL else 2
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        method.update(batch)
    _sync(device)
    epoch_seconds = (time.perf_counter() - start) / steps * math.ceil(CIFAR10C_TRAIN / batch_size)

    training = prepared_training(method, split, tmp_path)
    benchmark.pedantic(training.checkpoint, args=(False,), rounds=1 if SMALL else 3, iterations=1,
                       warmup_rounds=0 if SMALL else 1)
    benchmark.extra_info["epoch_seconds"] = epoch_seconds
    benchmark.extra_info["bytes"] = training.state.checkpoints["bytes"]
    benchmark.extra_info["fraction_of_epoch"] = benchmark.stats.stats.median / epoch_seconds
