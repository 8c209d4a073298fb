"""Where a sweep's runs execute: in this process one after another, ``jobs`` at a time in worker
processes on one device, or as tasks on a Ray cluster.

Workers only compute: every record comes back to the caller, which alone writes ``results.jsonl``, so a
cluster needs no shared filesystem for results (the source data and the dataset cache must be readable
at the same absolute paths on the workers). A run that fails in its own code is a ``failed`` record, not
retried; a Ray worker that is lost (killed, crashed, out of memory) is retried ``max_retries`` times and
then recorded as failed, never dropped. Where the output folder is shared with the workers, a retried
run continues from its last in-run checkpoint (``OUT/checkpoints``) and its record lists the resumes.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bench.messages import one_line_warnings
from bench.numerics import PORTABLE_ENV, cpu_vendor
from bench.runner import RunPaths, RunSpec, execute, failed_record

LAUNCHERS = ("local", "ray")
ROOT = Path(__file__).resolve().parents[1]
# Never shipped to Ray workers with the code.
RAY_EXCLUDES = [".venv", ".git", "cache", "data", "results", "*.pt", "*.npz", ".pytest_cache", ".ruff_cache"]


@dataclass(frozen=True)
class RayOptions:
    address: str | None = None
    gpus_per_run: float = 0.0
    cpus_per_run: float = 1.0
    max_retries: int = 2


PR_SET_PDEATHSIG = 1  # prctl(2)


def _init_worker(threads: int, driver: int) -> None:
    """A ``--jobs`` worker: its thread share, and its end when the driver ends. Without that, a driver
    killed mid-sweep (SIGTERM, SIGKILL, a closed session) left its workers training on, orphans that
    took the cores and whose records had no one left to write them. On Linux the kernel sends the worker
    SIGKILL when the driver dies (prctl PR_SET_PDEATHSIG); its run resumes from its checkpoint next time."""
    torch.set_num_threads(threads)
    one_line_warnings()
    if sys.platform == "linux":
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != driver:  # the driver died before the call above
            os._exit(1)


def _local(specs: list[RunSpec], paths: RunPaths, device: torch.device, jobs: int,
           progress: bool) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
    if jobs <= 1:
        for spec in specs:
            yield spec, execute(spec, paths, device, progress=progress)
        return
    threads = max(1, usable_cores() // jobs)
    context = multiprocessing.get_context("spawn")  # safe with CUDA, unlike fork
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker,
                             initargs=(threads, os.getpid())) as pool:
        futures = {pool.submit(execute, spec, paths, device, False): spec for spec in specs}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _ray_task(spec: RunSpec, paths: RunPaths, use_gpu: bool, threads: int) -> dict[str, Any]:
    torch.set_num_threads(threads)
    return execute(spec, paths, torch.device("cuda" if use_gpu else "cpu"), progress=False)


def _ray(specs: list[RunSpec], paths: RunPaths, options: RayOptions) -> Iterator[tuple[RunSpec, dict[str, Any]]]:
    import ray

    if not ray.is_initialized():
        # Workers start their own Python: portable numerics must reach them before they import torch.
        pins = PORTABLE_ENV if any(spec.numerics == "portable" for spec in specs) else {}
        ray.init(
            address=options.address,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"working_dir": str(ROOT), "excludes": RAY_EXCLUDES, "env_vars": pins},
        )
    task = ray.remote(
        num_cpus=options.cpus_per_run, num_gpus=options.gpus_per_run, max_retries=options.max_retries
    )(_ray_task)
    threads = max(1, int(options.cpus_per_run))
    absolute = paths.absolute()
    pending = {task.remote(spec, absolute, options.gpus_per_run > 0, threads): spec for spec in specs}
    device = torch.device("cuda" if options.gpus_per_run > 0 else "cpu")
    try:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            spec = pending.pop(done[0])
            try:
                record = ray.get(done[0])
            except ray.exceptions.RayError as error:
                record = failed_record(
                    spec, f"{type(error).__name__} after {options.max_retries} retries: {error}".splitlines()[0],
                    device,
                )
            yield spec, record
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which a container or ``taskset`` may narrow)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def auto_jobs(device: torch.device, specs: list[RunSpec]) -> int:
    """``--jobs auto``: how many runs at once fill this machine fastest. On a GPU, 1 (``--jobs N`` shares
    it on purpose). On the CPU under portable numerics, one run per core (each is pinned to one thread).
    Under native numerics the better layout of a ResNet-18 step depends on the CPU (``make benchmark``,
    ``cifar10c_step_*``): on an Intel Xeon (family 6, model 207) one run on both threads is 1.12x the
    throughput of two one-thread runs, on an AMD EPYC (family 25, model 17) two one-thread runs are 1.2x
    that of one two-thread run; so two threads a run on Intel CPUs and one on AMD ones, never more runs than
    the sweep has. Both were measured on 2-core machines only: on more cores the rule keeps the measured
    unit (two cores a run on Intel) rather than assuming that one run scales to every thread."""
    if device.type != "cpu":
        return 1
    cores = usable_cores()
    portable = all(spec.numerics == "portable" for spec in specs)
    vendor = cpu_vendor()
    jobs = cores if portable or vendor == "AuthenticAMD" else cores // 2
    return max(1, min(jobs, len(specs)))


def run_all(specs: list[RunSpec], paths: RunPaths, device: torch.device, jobs: int, progress: bool,
            launcher: str = "local", ray_options: RayOptions | None = None) -> Iterator[tuple[RunSpec, dict]]:
    """Yield (spec, record) as runs finish (in order with one local job, else in completion order)."""
    if launcher == "ray":
        return _ray(specs, paths, ray_options or RayOptions())
    return _local(specs, paths, device, jobs, progress)
