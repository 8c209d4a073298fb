"""Device selection and the environment block every record carries."""

from __future__ import annotations

import platform
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import torch

from bench.numerics import cpu_model
from bench.numerics import describe as describe_numerics

DEVICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """The requested device is not available; one-line message."""


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise DeviceError(f"unknown device {name}; valid: {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


@cache
def git_commit() -> str | None:
    """HEAD of the checkout, read once per process: the code a long sweep runs is the code it started
    with, even if the checkout moves on meanwhile (the CLI calls this before the first run)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def describe(device: torch.device, numerics: str = "native") -> dict[str, Any]:
    """Where a run computed: versions, device, commit, and the CPU's numerics (``bench.numerics``: the
    CPU model, the instruction sets PyTorch and oneDNN use, the BLAS, the threads and the pins)."""
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": device_name,
        "git_commit": git_commit(),
        **describe_numerics(numerics),
    }


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated on CUDA; peak resident set size of the process on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
