"""``results.jsonl``: one self-describing JSON line per finished run.

Appends are whole lines, flushed and fsynced, so a crash can at worst leave one torn last line. Reading
tolerates (and reports) such a line; the next append cuts it off first, so no record is ever glued to a
fragment or duplicated.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any


def read_records(path: Path) -> list[dict[str, Any]]:
    """All complete records in ``path`` (none if it does not exist); warns about a torn last line."""
    if not path.exists():
        return []
    records = []
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines):
                warnings.warn(f"{path}: ignoring a torn last line (an interrupted write)", stacklevel=2)
            else:
                raise ValueError(f"{path}:{number}: not a JSON record") from None
    return records


def _cut_torn_tail(path: Path) -> None:
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size == 0:
            return
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        data = path.read_bytes()
        keep = data.rfind(b"\n") + 1
        handle.truncate(keep)


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record as a single line, durable before returning."""
    line = json.dumps(_finite(record), sort_keys=True, allow_nan=False) + "\n"
    if path.exists():
        _cut_torn_tail(path)
    with path.open("ab") as handle:
        handle.write(line.encode())
        handle.flush()
        os.fsync(handle.fileno())


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
