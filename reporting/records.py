"""``results.jsonl``: one self-describing JSON line per finished run.

Appends are whole lines, flushed and fsynced, so a crash can at worst leave one torn last line. Reading
tolerates (and reports) such a line; the next append cuts it off first, so no record is ever glued to a
fragment or duplicated.

Any other bad line -- not JSON, not an object, a record missing a field the tables need or with a field
of the wrong type, a record from another tool -- is a ``RecordError`` naming the file, the line and the
problem; a reader that asks for it (``on_bad``) is told instead and gets the good records.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable
from numbers import Real
from pathlib import Path
from typing import Any

STATUSES = ("ok", "failed")
# Fields every record has, and those an ok record adds, with their types: what the tables read directly.
REQUIRED = {"key": str, "method": str, "dataset": str, "ratio": Real, "seed": int, "status": str}
REQUIRED_OK = {"test_acc": Real, "timing": dict, "env": dict}
REQUIRED_TIMING = {"total_s": Real, "phases_s": dict}


class RecordError(ValueError):
    """A bad line in a results file; the message (one line) names the file, the line and the problem."""


def _wrong(fields: dict[str, type], record: dict[str, Any], prefix: str = "") -> str | None:
    missing = [name for name in fields if record.get(name) is None]
    if missing:
        return f"missing {', '.join(prefix + name for name in missing)}"
    for name, kind in fields.items():
        value = record[name]
        if not isinstance(value, kind) or (kind is not str and isinstance(value, bool)):
            return f"{prefix}{name} is {type(value).__name__}, expected {'number' if kind is Real else kind.__name__}"
    return None


def record_problem(record: Any) -> str | None:
    """Why ``record`` is not a debias-bench record the tables can read, or None."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not a record object"
    problem = _wrong(REQUIRED, record)
    if problem:
        known = sum(name in record for name in REQUIRED)
        return problem if known > len(REQUIRED) // 2 else f"not a debias-bench record ({problem})"
    if record["status"] not in STATUSES:
        return f"status {record['status']!r}; valid: {', '.join(STATUSES)}"
    if record["status"] == "ok":
        return (_wrong(REQUIRED_OK, record) or _wrong(REQUIRED_TIMING, record["timing"], "timing.")
                or _not_finite(record) or _not_finite(record["timing"], "timing."))
    return None


def _not_finite(record: dict[str, Any], prefix: str = "") -> str | None:
    """A number field that is NaN or infinite: JSON has neither, so our writer stores them as null
    (``finite``), and a table would silently drop such a record from one metric and show it in others."""
    for name, value in record.items():
        if isinstance(value, float) and not math.isfinite(value):
            return f"{prefix}{name} is {value}, expected a finite number"
    return None


def read_records(path: Path, on_bad: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """All complete records in ``path`` (none if it does not exist); warns about a torn last line. A bad
    line raises RecordError, or with ``on_bad`` is passed to it (one line) and skipped."""
    if not path.exists():
        return []
    records = []
    lines = path.read_bytes().split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if number == len(lines):
                warnings.warn(f"{path}:{number}: ignoring a torn last line (an interrupted write)", stacklevel=2)
                continue
            problem = "not a JSON record"
        else:
            problem = record_problem(record)
        if problem is None:
            records.append(record)
        elif on_bad is None:
            raise RecordError(f"{path}:{number}: {problem}")
        else:
            on_bad(f"{path}:{number}: {problem}")
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


def finite(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record as a single line, durable before returning."""
    line = json.dumps(finite(record), sort_keys=True, allow_nan=False) + "\n"
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


def mixed_machines(resumed_from: list[dict[str, Any]]) -> list[str]:
    """The resumes of a run (its ``resumed_from``) where another machine or other numerics went on from a
    checkpoint (native numerics allow it; the continuation then matches neither machine's own run), each
    as 'stage after N epoch(s): A -> B'. Entries of records made before the machines were recorded count
    as unmixed."""
    mixed = []
    for entry in resumed_from:
        if "written_on" not in entry:
            continue
        if entry["written_on"] != entry.get("machine") or entry.get("written_numerics") != entry.get("numerics"):
            before, after = entry["written_on"] or "not recorded", entry.get("machine") or "not recorded"
            if before == after:
                before += f" ({entry.get('written_numerics')})"
                after += f" ({entry.get('numerics')})"
            mixed.append(f"{entry['stage']} after {entry['epoch']} epoch(s): {before} -> {after}")
    return mixed
