"""On-disk cache of generated splits: compact uint8 arrays in one .npz, keyed and fingerprinted.

The cache file name is a hash of the generation parameters, so another protocol, ratio or seed never
reads a foreign file. A JSON sidecar stores the parameters and a hash of the arrays; on load both are
checked, and a stale or corrupt entry is rebuilt (with a warning), never silently used. Processes that
share a cache folder (two sweeps, parallel test workers) take an exclusive ``flock`` per entry while they
load or build it, so an entry is built once and never read half-written. A process hashes an entry's
arrays once: a file it has already checked and that is unchanged since (same inode, size and times) is
not hashed again on its next load (a sweep loads each dataset once up front and once per run). As git does
with its index, a file changed less than a second before its check is not remembered: on a kernel whose file
times move in clock ticks of a few milliseconds, a rewrite within the same tick would keep every field of its
identity.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from datasets.base import SPLITS, BiasedData, BiasedDataset, Split

FIELDS = ("images", "targets", "biases")
# The arrays hash this process has already checked, per cache file identity (see ``_identity``).
_CHECKED: dict[tuple[str, int, int, int, int], str] = {}
SETTLED_NS = 1_000_000_000  # how long after its last change a checked file is remembered


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def params_key(params: dict[str, Any]) -> str:
    return hashlib.sha256(_canonical(params).encode()).hexdigest()[:16]


def arrays_hash(splits: dict[str, Split]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for split in SPLITS:
        for field in FIELDS:
            array = np.ascontiguousarray(getattr(splits[split], field))
            digest.update(f"{split}.{field}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes() if array.size == 0 else memoryview(array).cast("B"))
    return digest.hexdigest()


def fingerprint(params: dict[str, Any], content_hash: str) -> str:
    """Identity of the exact data a run used: generation parameters, array contents, subset sizes."""
    return hashlib.sha256(f"{_canonical(params)}|{content_hash}".encode()).hexdigest()[:16]


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _save(paths: tuple[Path, Path], splits: dict[str, Split], meta: dict[str, Any]) -> None:
    arrays = {f"{s}.{f}": getattr(splits[s], f) for s in SPLITS for f in FIELDS}
    _atomic_write(paths[0], lambda handle: np.savez(handle, **arrays))
    _atomic_write(paths[1], lambda handle: handle.write(json.dumps(meta, indent=1).encode()))


def read_archive(path: Path) -> dict[str, Split]:
    """The splits of a cache's ``.npz`` archive, unchecked (``load_or_build`` checks them against their
    parameters and hash)."""
    with np.load(path) as archive:
        return {s: Split(*(archive[f"{s}.{f}"] for f in FIELDS)) for s in SPLITS}


def _identity(path: Path) -> tuple[str, int, int, int, int]:
    """What changes whenever the file does: every write here replaces it (a new inode) and sets its times."""
    stat = path.stat()
    return str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _load(paths: tuple[Path, Path], params: dict[str, Any]) -> tuple[dict[str, Split], str] | None:
    """The cached splits and their hash, or None when absent; raises ValueError when stale/corrupt."""
    data_path, meta_path = paths
    if not data_path.exists() and not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        identity = _identity(data_path)
        splits = read_archive(data_path)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"unreadable ({type(error).__name__}: {error})") from error
    if meta.get("params") != params:
        raise ValueError("generation parameters differ")
    recorded = meta.get("arrays_hash")
    content_hash = recorded if _CHECKED.get(identity) == recorded else arrays_hash(splits)
    if recorded != content_hash:
        raise ValueError("array contents do not match their recorded hash")
    if time.time_ns() - identity[4] >= SETTLED_NS:
        _CHECKED[identity] = content_hash
    return splits, content_hash


@contextlib.contextmanager
def _entry_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed); the kernel drops it if the process dies."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def load_or_build(spec: BiasedDataset, root: Path, ratio: float, cache_dir: Path) -> BiasedData:
    """Load the splits of ``spec`` at ``ratio`` from the cache, building (and caching) them if needed."""
    params = spec.generation_params(root, ratio)
    cache_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{spec.name}-{params_key(params)}"
    paths = (cache_dir / f"{stem}.npz", cache_dir / f"{stem}.json")
    with _entry_lock(cache_dir / f"{stem}.lock"):
        try:
            cached = _load(paths, params)
        except ValueError as problem:
            warnings.warn(f"rebuilding cache {paths[0]}: {problem}", stacklevel=2)
            cached = None
        if cached is None:
            spec.check_source(root)
            splits = spec.generate(root, ratio)
            content_hash = arrays_hash(splits)
            _save(paths, splits, {"params": params, "arrays_hash": content_hash})
        else:
            splits, content_hash = cached

    sizes = spec.subset_sizes()
    take = Split.head if spec.IID_ORDER else Split.spread
    used = {name: take(splits[name], sizes[name]) for name in SPLITS}
    full_params = {**params, "subset": sizes}
    if not spec.IID_ORDER and any(sizes.values()):  # a new rule for these subsets: a new fingerprint
        full_params["subset_rule"] = "spread"
    return BiasedData(
        train=used["train"],
        valid=used["valid"],
        test=used["test"],
        fingerprint=fingerprint(full_params, content_hash),
        params=full_params,
    )
