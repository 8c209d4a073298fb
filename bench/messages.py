"""What the suite tells its user on stderr: each warning one line, ``run_bench.py: warning: ...``.

Python's default warning display adds the category and the source line that raised it, which reads as a
crash to a user; every warning that reaches a user of ``run_bench.py`` (torn record lines, rebuilt caches,
checkpoints that cannot be continued, a library's own ``warnings.warn``) goes through ``warn`` or, for
``warnings.warn`` anywhere, through ``one_line_warnings``, in the driver and in its ``--jobs`` workers.
"""

from __future__ import annotations

import sys
import warnings

PREFIX = "run_bench.py: warning: "


def warn(message: str) -> None:
    print(f"{PREFIX}{message}", file=sys.stderr, flush=True)


def _format(message: Warning | str, category: type[Warning], filename: str, lineno: int,
            line: str | None = None) -> str:
    return PREFIX + " ".join(str(message).split("\n")) + "\n"


def one_line_warnings() -> None:
    """Show every ``warnings.warn`` of this process as one ``run_bench.py: warning:`` line. It replaces the
    format, not the display, so code that records warnings (``warnings.catch_warnings(record=True)``,
    pytest) still gets them."""
    warnings.formatwarning = _format
