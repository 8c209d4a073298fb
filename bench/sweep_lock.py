"""One sweep per output folder at a time.

A second ``run_bench.py`` on the same ``--out`` would run the same pending runs again beside the first
and append duplicates. The first sweep holds an exclusive ``flock`` on ``OUT/.sweep.lock`` and writes who
it is into the file; a second one fails to take the lock and refuses, naming the first. The kernel drops
the lock when its process ends, however it ends (a crash or SIGKILL included), so a dead sweep never
leaves the folder locked: the next one takes the lock and resumes.

``run_bench.py status`` probes the lock with a shared ``flock`` held for a moment; a sweep that starts in
that moment keeps trying for ``PATIENCE_S`` before it concludes that another sweep holds the folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

LOCK_NAME = ".sweep.lock"
PATIENCE_S = 2.0


def take_exclusive(handle: IO[str], patience_s: float = PATIENCE_S) -> bool:
    """Take the exclusive lock, retrying for ``patience_s``: a status probe holds it only for a moment."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)


class SweepLocked(RuntimeError):
    """Another live sweep holds the folder; the message names it."""


class SweepLock:
    def __init__(self, out: Path, command: str):
        self.path = out / LOCK_NAME
        self.command = command
        self.handle: IO[str] | None = None

    def __enter__(self) -> SweepLock:
        handle = self.path.open("a+")
        if not take_exclusive(handle):
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            try:
                who = json.loads(holder)
                named = f"pid {who['pid']} on {who['host']} since {who['started']}: {who['command']}"
            except (ValueError, KeyError):
                named = "another process"
            raise SweepLocked(f"{self.path.parent} is in use by another sweep ({named}); wait for it or use "
                              "another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                                 "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}))
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
