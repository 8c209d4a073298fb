"""``--jobs N``: 2N one-epoch cmnist runs (54k images, CONV net), N at a time on one device, against the
same runs one after another. A small model leaves a GPU mostly idle, so concurrent runs fill it; on the
CPU the runs share the cores (each of N workers gets cores / N threads). Worker start-up is included, as
a user pays it. Runs on $BENCH_DEVICE (default cpu; the GPU check sets cuda), $BENCH_JOBS workers
(default 2)."""

from __future__ import annotations

import os
import time

import torch

from bench.cli import build_parser, plan
from bench.launcher import run_all
from bench.runner import RunPaths, RunSpec, load_data


def sweep(jobs: int) -> list[RunSpec]:
    args = build_parser().parse_args([
        "--methods", "erm", "--datasets", "cmnist", "--ratios", "0.01", "--seeds", ",".join(map(str, range(2 * jobs))),
        "--epochs", "1", "--set", "cmnist.eval_size=2000",
    ])
    return plan(args)


def test_jobs_throughput_gain(benchmark, data_paths: RunPaths):
    device = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
    jobs = int(os.environ.get("BENCH_JOBS", "2"))
    specs = sweep(jobs)

    def run(n_jobs: int) -> float:
        start = time.perf_counter()
        records = [record for _, record in run_all(specs, data_paths, device, n_jobs, progress=False)]
        assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
        return time.perf_counter() - start

    load_data(specs[0], data_paths)  # the cache, built once outside the timings
    sequential = run(1)
    concurrent = benchmark.pedantic(run, args=(jobs,), rounds=1, iterations=1)
    benchmark.extra_info["runs"] = len(specs)
    benchmark.extra_info["jobs"] = jobs
    benchmark.extra_info["sequential_seconds"] = sequential
    benchmark.extra_info["concurrent_seconds"] = concurrent
    benchmark.extra_info["gain"] = sequential / concurrent
