"""CPU numerics: which code path each library takes, and how to pin it so a run is bit-identical anywhere.

PyTorch's own kernels (ATen, with SLEEF), oneDNN (convolutions), MKL (matrix products) and numpy's
OpenBLAS each pick their code path by the CPU's instruction sets (AVX2, AVX-512, AMX), and each path
rounds differently; the number of threads splits reductions differently too. So the same run gives other
last bits on another machine, and a long training amplifies them into points of accuracy.

- ``native``: every library takes its fastest path for this CPU, threads as the launcher gives them.
- ``portable``: every CPU code path pinned to AVX2 (with FMA), which every x86-64 server and desktop
  processor of the last decade has (Intel since Haswell, 2013; AMD since Excavator, 2015, and every Zen),
  MKL to its vendor-independent branch, and one thread per run, all set before torch loads
  (``PORTABLE_ENV``), so that a run's record (``weights_sha256``, every metric) is the same on any such
  machine of the same vendor. Across vendors that holds for short runs (``tests/other_cpu`` checks what the
  libraries choose by making a process see the other vendor), but paper-scale records still part after a
  few epochs: some path rounds differently on the two vendors' silicon (issue 41). The candidate found is
  MKL's vector square root (it refines ``rsqrtps``), which portable runs avoid through the engine setting
  ``exact_sqrt`` (``bench.plan``), pending a rerun on an AMD CPU.
  Parallelism then comes from ``--jobs``. It is the default of the paper preset on the CPU (but for a
  sweep of ``NATIVE_PAPER_DATASETS`` alone); ``native`` elsewhere (a CUDA run's GPU kernels cannot be
  pinned this way).

This module imports torch only inside functions: ``run_bench.py`` calls ``apply_from_argv`` before
anything loads torch.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

NUMERICS = ("native", "portable")
PORTABLE_THREADS = 1
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's vectorised kernels and SLEEF
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN's JIT kernels (convolutions, some matmuls)
    # MKL's conditional numerical reproducibility. Not "AVX2,STRICT": MKL's AVX2 branch still dispatches on
    # the CPU's vendor (its exp and log, VML, round differently on an AMD CPU than on an Intel one, and a
    # 2-epoch cmnist run gave other weights), while its COMPATIBLE branch is the same on both. It costs
    # little here: the convolutions run in oneDNN, and MKL computes only the small matrix products.
    "MKL_CBWR": "COMPATIBLE",
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's and scipy's OpenBLAS (the diagnostics' probe): AVX2 kernels
    "OMP_NUM_THREADS": str(PORTABLE_THREADS),
    "MKL_NUM_THREADS": str(PORTABLE_THREADS),
    "OPENBLAS_NUM_THREADS": str(PORTABLE_THREADS),
}
# What torch reports once the pins are in effect (oneDNN's name for its AVX2 level).
PORTABLE_CAPABILITY = "AVX2"
PORTABLE_ONEDNN_ISA = "Intel AVX2"
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


class NumericsError(ValueError):
    """Portable numerics asked for but not in effect (or not possible here); one-line message."""


# Datasets whose paper preset computes with native numerics on the CPU: a ResNet-18 step is 2.2-2.6x slower
# under the AVX2 pins (``make benchmark``: ``cifar10c_step_*``, ``portable_numerics_slowdown_cifar10c``) and
# a paper-scale run is tens of hours, so their records are reproducible on CPUs that take the same code
# paths rather than on any. Named here, not on the dataset classes: it is read before torch loads.
NATIVE_PAPER_DATASETS = ("cifar10c",)


def default_numerics(preset: str, device_type: str, datasets: tuple[str, ...] = ()) -> str:
    """Portable for the paper preset on the CPU, where reference tables are made, unless every dataset of
    the sweep is one of ``NATIVE_PAPER_DATASETS`` (one process computes one way: a sweep that mixes them
    with others stays portable); native otherwise."""
    if preset != "paper" or device_type != "cpu":
        return "native"
    return "native" if datasets and set(datasets) <= set(NATIVE_PAPER_DATASETS) else "portable"


def requested(argv: list[str]) -> str | None:
    """The numerics a ``run_bench.py`` command line asks for, read without torch: ``--numerics``, else the
    preset's default (CUDA asked for explicitly: native). None for subcommands that train nothing."""
    if argv[:1] in (["verify"], ["trace"]):
        return "portable"
    if argv[:1] in (["report"], ["list"], ["status"]):
        return None
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--numerics", default=None)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--datasets", default="cmnist")
    args, _ = parser.parse_known_args(argv)
    if args.numerics is not None:
        return args.numerics
    datasets = tuple(name.strip() for name in args.datasets.split(",") if name.strip())
    return default_numerics(args.preset, "cuda" if args.device == "cuda" else "cpu", datasets)


def apply_before_torch(numerics: str | None) -> None:
    """Set the portable pins in this process's environment (inherited by its workers). Must run before
    torch is imported; ``check`` verifies afterwards that they took effect."""
    if numerics == "portable" and "torch" not in sys.modules:
        os.environ.update(PORTABLE_ENV)


def apply_from_argv(argv: list[str]) -> None:
    apply_before_torch(requested(argv))


@cache
def onednn_isa() -> str | None:
    """The instruction set oneDNN dispatches to, as its verbose mode prints it (read once per process,
    from file descriptor 1, around one small convolution)."""
    import torch

    if not torch.backends.mkldnn.is_available():
        return None
    sys.stdout.flush()
    saved = os.dup(1)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        try:
            with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                torch.nn.functional.conv2d(torch.ones(8, 8, 16, 16), torch.ones(16, 8, 3, 3))
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        capture.seek(0)
        text = capture.read().decode(errors="replace")
    found = re.search(r"info,cpu,isa:([^\n]*)", text)
    return found.group(1).strip() if found else None


def check(numerics: str) -> None:
    """NumericsError unless ``numerics`` is what this process computes with."""
    if numerics not in NUMERICS:
        raise NumericsError(f"unknown numerics {numerics}; valid: {', '.join(NUMERICS)}")
    if numerics == "native":
        return
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    isa = onednn_isa()
    unset = [name for name, value in PORTABLE_ENV.items() if os.environ.get(name) != value]
    if unset or capability != PORTABLE_CAPABILITY or (isa is not None and isa != PORTABLE_ONEDNN_ISA):
        flags = cpu_flags()
        if not {"avx2", "fma"} <= set(flags):
            raise NumericsError("portable numerics need a CPU with AVX2 and FMA; this one has "
                                f"{', '.join(flags) or 'neither'}; use --numerics native")
        raise NumericsError(f"portable numerics are not in effect (PyTorch CPU capability {capability}, oneDNN "
                            f"{isa}, {len(unset)} of the pins unset): they must be set before torch loads; run "
                            "through run_bench.py, or use --numerics native")


def enter(numerics: str) -> None:
    """Before a run: check its numerics and, for portable, pin its threads and keep passes without
    gradients in the default memory layout (``methods.base.set_channels_last_inference``)."""
    check(numerics)
    from methods.base import set_channels_last_inference

    set_channels_last_inference(numerics != "portable")
    if numerics == "portable":
        import torch

        torch.set_num_threads(PORTABLE_THREADS)


@cache
def _cpuinfo() -> dict[str, str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, colon, value = line.partition(":")
        if colon and name.strip() not in fields:
            fields[name.strip()] = value.strip()
    return fields


def cpu_model() -> str:
    """The CPU's name, with its family and model numbers (virtual machines often show a generic name)."""
    import platform

    info = _cpuinfo()
    name = info.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in info and "model" in info:
        return f"{name} (family {info['cpu family']}, model {info['model']})"
    return name


def cpu_vendor() -> str:
    """``GenuineIntel``, ``AuthenticAMD``, ... ('' where /proc/cpuinfo does not say)."""
    return _cpuinfo().get("vendor_id", "")


def cpu_flags() -> list[str]:
    """The instruction sets of ``CPU_FLAGS`` this CPU has (Linux; empty elsewhere)."""
    present = set(_cpuinfo().get("flags", "").split())
    return [flag for flag in CPU_FLAGS if flag in present]


@cache
def _torch_blas() -> str:
    import torch

    config = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=(\w+)", config)
    mkl = re.search(r"Math Kernel Library Version ([^\s]+)", config)
    name = blas.group(1) if blas else "unknown"
    return f"{name} {mkl.group(1)}" if name == "mkl" and mkl else name


def _numpy_blas() -> str | None:
    from threadpoolctl import threadpool_info

    for library in threadpool_info():
        if library.get("user_api") == "blas":
            core = library.get("architecture")
            return f"{library['internal_api']} {library.get('version')}" + (f" ({core})" if core else "")
    return None


def state() -> dict[str, Any]:
    """What decides this process's CPU numerics: the identity a checkpoint must match to be resumed."""
    import torch

    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "onednn_isa": onednn_isa(),
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
        "threads": torch.get_num_threads(),
    }


def describe(numerics: str) -> dict[str, Any]:
    """The record's account of where and how it computed."""
    import torch

    return {
        "numerics": numerics,
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        **state(),
        "blas": _torch_blas(),
        "numpy_blas": _numpy_blas(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "pinned_env": {name: os.environ[name] for name in PORTABLE_ENV if name in os.environ},
    }
