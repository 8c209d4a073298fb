"""The cost of portable numerics (``bench.numerics``): training steps with every CPU code path pinned to
AVX2 against the native paths of this CPU, each in a fresh process (the pins must be set before torch
loads), both at one thread, alternating so that both see the same load; and portable numerics with the
exact square roots they take by default (``exact_sqrt``) against without. Workloads: a cmnist step (CONV
net, batch 128, PGD's augmentation) and a cifar10c step (ResNet-18, batch 256, Adam)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from bench.numerics import PORTABLE_ENV

PROBE = Path(__file__).with_name("numerics_probe.py")
SMALL = bool(os.environ.get("BENCH_SMALL"))
STEPS = {"cmnist": 4 if SMALL else 60, "cifar10c": 1 if SMALL else 8}
ROUNDS = 1 if SMALL else 3


def probe(setting: str, workload: str) -> dict:
    numerics, *exact = setting.split("+")
    env = {k: v for k, v in os.environ.items() if k not in PORTABLE_ENV}  # native: this CPU's own paths
    proc = subprocess.run([sys.executable, str(PROBE), numerics, workload, str(STEPS[workload]), *exact], env=env,
                          capture_output=True, text=True, timeout=600, check=True)
    return json.loads(proc.stdout.splitlines()[-1])


@pytest.mark.parametrize("workload", ["cmnist", "cifar10c"])
def test_portable_numerics_cost(benchmark, workload):
    runs: dict[str, list[float]] = {"native": [], "portable": [], "portable+exact": []}
    seen = {}

    def alternate():
        for numerics in runs:
            result = probe(numerics, workload)
            runs[numerics].append(result["step_seconds"])
            seen[numerics] = result

    benchmark.pedantic(alternate, rounds=ROUNDS, iterations=1)
    native, portable, exact = (statistics.median(runs[n]) for n in ("native", "portable", "portable+exact"))
    benchmark.extra_info.update({
        "workload": workload, "native_step_seconds": native, "portable_step_seconds": portable,
        "slowdown": portable / native, "exact_sqrt_step_seconds": exact, "exact_sqrt_cost": exact / portable,
        "native_capability": seen["native"]["cpu_capability"],
        "native_onednn_isa": seen["native"]["onednn_isa"], "portable_capability": seen["portable"]["cpu_capability"],
    })
    assert seen["portable"]["cpu_capability"] == "AVX2" and seen["portable"]["threads"] == 1
    assert seen["portable+exact"]["exact_sqrt"] and not seen["portable"]["exact_sqrt"]
