"""In-run checkpoints: a run killed mid-way continues from its last checkpoint, bit-identical on the CPU.

A checkpoint holds the whole state of a run (every model, optimiser and LR schedule, the method's
per-sample state, the trainer's position, selection, epoch log and oracle, the timing so far, and every
random generator). It is written atomically (``torch.save`` to a temporary file, fsync, rename; the
previous checkpoint kept as ``.prev``), read back with ``torch.load(weights_only=True)``, and keyed by the
run's key under ``OUT/checkpoints/``. Each carries a fingerprint of the run (its key) and of the code that
wrote it (a hash of the engine's, methods', datasets' and models' sources and of the plugins): one that
does not match is ignored with a one-line warning, never mixed in. A corrupt or truncated file falls back
to the previous checkpoint, then to a fresh start. The driver removes both once the run's record is
written.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path
from typing import Any

import torch

from bench.messages import warn

FOLDER = "checkpoints"
SOURCES = ("bench", "methods", "datasets", "models", "spaces")
ROOT = Path(__file__).resolve().parents[1]


@cache
def code_fingerprint(extra: tuple[str, ...] = ()) -> str:
    """A hash of every Python source the training depends on, plus ``extra`` (e.g. plugin hashes)."""
    digest = hashlib.sha256()
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    for item in extra:
        digest.update(item.encode())
    return digest.hexdigest()[:20]


class Checkpointer:
    """Saves and loads the checkpoints of one run (``key``) in ``folder``."""

    def __init__(self, folder: Path, key: str, fingerprint: str, numerics: dict[str, Any] | None = None,
                 machine: str | None = None, other_numerics: bool = False):
        """``numerics``: what decides the run's CPU rounding (``bench.numerics.state``); a checkpoint
        written under other numerics is refused, unless ``other_numerics`` (native numerics: a run of many
        hours resumed on another CPU model or thread count goes on, and its ``resumed_from`` entry says
        that two machines' arithmetic met). None: not compared (a CUDA run). ``machine``: the CPU (or GPU)
        model this process computes on, written into each checkpoint."""
        self.path = Path(folder) / f"{key}.pt"
        self.previous = Path(folder) / f"{key}.prev.pt"
        self.fingerprint = fingerprint
        self.numerics = numerics
        self.machine = machine
        self.other_numerics = other_numerics
        # Who wrote the checkpoint ``load`` returned: {"machine": ..., "numerics": ...}.
        self.loaded_from: dict[str, Any] | None = None

    def save(self, state: dict[str, Any]) -> int:
        """Write ``state`` atomically; the previous checkpoint becomes ``.prev``. Returns its size in bytes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        with temporary.open("wb") as handle:
            torch.save({"fingerprint": self.fingerprint, "numerics": self.numerics, "machine": self.machine,
                        "state": state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if self.path.exists():
            os.replace(self.path, self.previous)
        os.replace(temporary, self.path)
        return self.path.stat().st_size

    def load(self) -> dict[str, Any] | None:
        """The newest usable checkpoint's state, or None (nothing usable: start afresh)."""
        for path in (self.path, self.previous):
            if not path.exists():
                continue
            try:
                saved = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as error:  # truncated, corrupt, or not ours
                warn(f"checkpoint {path} is unreadable ({type(error).__name__}); trying an older one")
                continue
            if not isinstance(saved, dict) or saved.get("fingerprint") != self.fingerprint:
                warn(f"checkpoint {path} was written by other code, data or hyperparameters; ignored, "
                     "starting afresh")
                return None
            if self.numerics is not None and saved.get("numerics") != self.numerics:
                written = (f"checkpoint {path} was written under other numerics "
                           f"({_numerics_text(saved.get('numerics'))}, {saved.get('machine') or 'machine not recorded'}"
                           f"; this run: {_numerics_text(self.numerics)}, {self.machine})")
                if not self.other_numerics:
                    warn(f"{written}; ignored, starting afresh")
                    return None
                warn(f"{written}; continuing from it under native numerics: the record marks the run as "
                     "computed on mixed machines")
            self.loaded_from = {"machine": saved.get("machine"), "numerics": saved.get("numerics")}
            return saved["state"]
        return None

    def remove(self) -> None:
        for path in (self.path, self.previous):
            path.unlink(missing_ok=True)


def _numerics_text(numerics: dict[str, Any] | None) -> str:
    if not numerics:
        return "not recorded"
    return ", ".join(f"{name} {value}" for name, value in numerics.items())


def remove_checkpoints(folder: Path, key: str) -> None:
    """Remove run ``key``'s checkpoints: its record is written."""
    Checkpointer(folder, key, "").remove()


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """Every random generator a run draws from: torch's CPU (dropout, init), CUDA's, and the sampler's."""
    state = {"torch": torch.get_rng_state(), "sampler": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    generator.set_state(state["sampler"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
