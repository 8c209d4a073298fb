"""One process's share of the cifar10c step benchmark (``test_resnet18_pipeline.py``): time ResNet-18
training steps at batch 256 on 32 px inputs under one configuration and print the seconds per step as
JSON. A process of its own per configuration, because the numerics pins and the thread count must be set
before torch loads, and because two processes with one thread each is one of the layouts compared.

Paths:
- ``bare``: the model step alone (torchvision ResNet-18, forward, cross-entropy, backward, Adam) on
  random tensors already in the model's layout: the physical limit of a step;
- ``suite``: the suite's own ERM step as a cifar10c run takes it (``bench.trainer.Training.train_epoch``:
  index batches gathered from uint8 images, crop/flip/normalise, the update, the loop's bookkeeping),
  without the periodic evaluations, which are timed by the records as phases of their own.

    python benchmarks/cifar10c_step.py --path suite --threads 2 --numerics native [--channels-last]
        [--compile] [--bf16] [--steps 6] [--warmup 2] [--images CACHE.npz] [--weights CHECKPOINT.pt]
        [--flush-denormal]

The last three are for telling a running sweep's step from the benchmark's: the dataset cache's real
training images instead of random ones, the model and Adam state of a run's in-run checkpoint instead of a
fresh initialisation, and denormals flushed to zero.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", choices=("bare", "suite"), required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--numerics", choices=("native", "portable"), default="native")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (the suite's --amp)")
    parser.add_argument("--steps", type=int, default=6, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first (compilation, allocator)")
    parser.add_argument("--images", type=Path, help="suite: a cifar10c dataset cache (.npz) to take images from")
    parser.add_argument("--weights", type=Path, help="suite: an ERM run's in-run checkpoint to start from")
    parser.add_argument("--flush-denormal", action="store_true", help="torch.set_flush_denormal(True)")
    return parser.parse_args(argv)


def bare_steps(args: argparse.Namespace, total: int) -> list[float]:
    import torch
    import torch.nn.functional as F

    from models import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", 10, (3, 32, 32)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randn(BATCH, 3, 32, 32)
    y = torch.randint(0, 10, (BATCH,))
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if args.compile:
        for part in model.children():
            part.compile()
    times = []
    for _ in range(total):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return times


def suite_steps(args: argparse.Namespace, total: int) -> list[float]:
    import numpy as np
    import torch

    from bench.data import DeviceSplit
    from bench.hparams import resolve_hparams
    from bench.runner import configure
    from bench.trainer import DeviceData, Training
    from datasets import DATASETS, Split
    from datasets.cache import read_archive
    from methods import METHODS, RunContext

    device = torch.device("cpu")
    dataset = DATASETS["cifar10c"]
    rng = np.random.default_rng(0)
    n = BATCH * total
    if args.images:
        split = read_archive(args.images)["train"].head(n)
    else:
        split = Split(rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n), np.zeros(n, int))
    empty = Split(split.images[:0], split.targets[:0], split.biases[:0])
    splits = {name: DeviceSplit(s, device, dataset.NORMALIZE, channels_last=args.channels_last)
              for name, s in (("train", split), ("valid", empty), ("test", empty))}
    data = DeviceData(**splits, num_classes=10, augment=dataset({**dataset.OPTIONS}).train_augmentation(device))
    hparams = resolve_hparams(METHODS["erm"], dataset, 0.05, "paper", None, {}, 0)
    hparams["oracle_every_steps"] = 0  # the periodic test evaluations are not part of a step
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    method = METHODS["erm"](hparams, RunContext(10, (3, 32, 32), splits["train"].targets, device, generator))
    if args.weights:
        method.load_state_dict(torch.load(args.weights, map_location=device, weights_only=False)["state"]["method"])
    configure(method, device, {"channels_last": args.channels_last, "compile": args.compile})
    training = Training(method, data, generator, progress=False, amp=args.bf16, checkpointing=None)
    stage = method.stages()[0]
    times = []
    update = method.update

    def timed_update(batch):  # the time between two updates' ends is one whole step of the loop
        stats = update(batch)
        times.append(time.perf_counter())
        return stats

    method.update = timed_update
    start = time.perf_counter()
    training.train_epoch(stage)
    return [b - a for a, b in zip([start, *times[:-1]], times, strict=True)]


def main(argv: list[str]) -> None:
    args = parse(argv)
    # Before torch loads: the numerics pins (portable) or the thread count (native).
    sys.path.insert(0, str(ROOT))
    from bench import numerics

    if args.numerics == "native":
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
    numerics.apply_before_torch(args.numerics)
    import torch

    numerics.enter(args.numerics)
    torch.set_flush_denormal(args.flush_denormal)
    if args.numerics == "native":
        torch.set_num_threads(args.threads)
    total = args.warmup + args.steps
    times = (bare_steps if args.path == "bare" else suite_steps)(args, total)[args.warmup:]
    print(json.dumps({"step_seconds": statistics.median(times), "steps": len(times),
                      "threads": torch.get_num_threads(), "capability": torch.backends.cpu.get_cpu_capability()}))


if __name__ == "__main__":
    main(sys.argv[1:])
