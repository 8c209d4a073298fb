"""``run_bench.py`` runs in child processes, forked from a server that has already imported torch and the
suite (multiprocessing's forkserver), so that each child skips the seconds of interpreter start-up and
imports that ``python run_bench.py`` costs. Each child is still a process of its own, killed as a
preempted machine would kill it (by itself at a named point, ``bench.faults``, or by the test): whatever
it wrote is all the rerun gets.

Only runs whose numerics are the test process's own go through here: the children inherit the server's
already-loaded libraries, so a run that needs portable pins set before torch loads must start through
``run_bench.py`` instead.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import sys
import tempfile
from multiprocessing.process import BaseProcess
from pathlib import Path

from bench.faults import KILL_AT

ROOT = Path(__file__).resolve().parents[1]
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["bench.cli"])


def _run(argv: list[str], environ: dict[str, str], log: str) -> None:
    from bench.cli import main

    os.environ.clear()
    os.environ.update(environ)
    os.chdir(ROOT)
    with open(log, "w") as handle:  # the child's own output, for the failure message
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
    try:
        code = main(argv)
    finally:
        # A forked child ends in os._exit, which skips what ``python run_bench.py`` does at exit (Ray's
        # shutdown of the local cluster it started, among others): run those handlers here.
        atexit._run_exitfuncs()
    sys.exit(code)


def start_run(argv: list[str], **environ: str) -> tuple[BaseProcess, Path]:
    """Start ``run_bench.py argv`` in a child process, with ``environ`` added to this process's
    environment; its output goes to the returned log."""
    handle, name = tempfile.mkstemp(prefix="child-run-", suffix=".log")
    os.close(handle)
    child = _CONTEXT.Process(target=_run, args=(argv, {**os.environ, **environ}, name))
    child.start()
    return child, Path(name)


def wait_run(child: BaseProcess, log: Path, timeout: float = 600) -> tuple[int, str]:
    """The child's exit code (negative: the signal that ended it) and the end of its output; a child still
    running after ``timeout`` seconds is killed and fails the test (its SIGKILL is not the one tested)."""
    child.join(timeout)
    hung = child.exitcode is None
    if hung:
        child.kill()
        child.join()
    output = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    log.unlink(missing_ok=True)
    assert not hung, f"the child run was still running after {timeout} s: {output}"
    return child.exitcode, output


def killed_run(argv: list[str], point: str) -> None:
    """Run ``run_bench.py argv`` in a child process that SIGKILLs itself at ``point``."""
    code, output = wait_run(*start_run(argv, **{KILL_AT: point}))
    assert code == -signal.SIGKILL, (point, code, output)
