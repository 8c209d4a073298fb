"""Fault injection for the tests: a run that kills itself (SIGKILL, as a preempted machine) at a named
point of its training loop, so the tests can prove that a rerun continues where it was cut.

``DEBIAS_BENCH_TEST_KILL_AT``: the point, ``<stage>:<steps>`` (after that many optimiser steps of the
stage) or ``<stage>:start`` (after the stage's start hook -- PGD's scoring, JTT's error set -- and before
its checkpoint). ``DEBIAS_BENCH_TEST_KILL_ONCE``: a marker file; only the process that creates it dies,
so a retried Ray task goes on. Users never set these.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

KILL_AT = "DEBIAS_BENCH_TEST_KILL_AT"
KILL_ONCE = "DEBIAS_BENCH_TEST_KILL_ONCE"


def kill_point_armed() -> bool:
    return bool(os.environ.get(KILL_AT))


def kill_point(label: str) -> None:
    """SIGKILL this process if ``label`` is the point the test asked for."""
    if os.environ.get(KILL_AT) != label:
        return
    marker = os.environ.get(KILL_ONCE)
    if marker:
        try:
            Path(marker).touch(exist_ok=False)
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)
