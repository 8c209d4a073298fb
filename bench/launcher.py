"""Run a sweep's runs one after another, or ``jobs`` at a time in worker processes on one device.

Small models leave a GPU (or a many-core CPU) idle; several concurrent runs fill it. Workers only
compute: every record comes back to the caller, which alone writes ``results.jsonl``. Each worker gets
an equal share of the CPU threads, so on the CPU N jobs do not oversubscribe the cores.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import torch

from bench.runner import RunPaths, RunSpec, execute


def _init_worker(threads: int) -> None:
    torch.set_num_threads(threads)


def run_all(specs: list[RunSpec], paths: RunPaths, device: torch.device, jobs: int,
            progress: bool) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
    """Yield (spec, record) as runs finish: in order when ``jobs`` is 1, in completion order otherwise."""
    if jobs <= 1:
        for spec in specs:
            yield spec, execute(spec, paths, device, progress=progress)
        return
    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # safe with CUDA, unlike fork
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(threads,)) as pool:
        futures = {pool.submit(execute, spec, paths, device, False): spec for spec in specs}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
