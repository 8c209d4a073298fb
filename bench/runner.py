"""One run = (method, dataset, ratio, seed, hyperparameters): build it, train it, record it.

``execute`` never raises for a failing run: the failure becomes a ``failed`` record with the error, so a
sweep goes on. Only KeyboardInterrupt (and other BaseExceptions) escape, leaving no record, so a rerun
redoes that run.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from bench import numerics
from bench.checkpoint import Checkpointer, code_fingerprint
from bench.data import DeviceSplit
from bench.environment import describe, peak_memory_mb
from bench.hparams import schedule_label
from bench.plugins import load_plugins, provenance
from bench.trainer import Checkpointing, DeviceData, train_and_evaluate
from datasets import DATASETS
from datasets.cache import load_or_build
from methods import METHODS, RunContext

# Record field -> evaluate() key, named as the issue tracker and the tables use them.
TEST_METRICS = {
    "test_acc": "acc",
    "test_aligned_acc": "aligned_acc",
    "test_conflicting_acc": "conflicting_acc",
    "worst_group_acc": "worst_group_acc",
    "test_cell_mean_acc": "cell_mean_acc",
    "test_loss": "loss",
    "test_group_acc": "group_acc",
}


@dataclass(frozen=True)
class RunSpec:
    method: str
    dataset: str
    ratio: float
    seed: int
    preset: str
    hparams: dict[str, Any] = field(hash=False)
    dataset_options: dict[str, Any] = field(hash=False)
    # Non-default execution settings (amp, channels_last, compile, exact_sqrt); empty for the plain fp32 path.
    engine: dict[str, bool] = field(default_factory=dict, hash=False)
    # 0: the declared defaults; K > 0: the K-th random draw of the searchable hyperparameters.
    hparams_seed: int = 0
    # CPU numerics (``bench.numerics``): native code paths, or pinned to AVX2 and one thread (portable).
    numerics: str = "native"

    @property
    def key(self) -> str:
        """Identity for resuming: the same spec always maps to the same key."""
        identity = asdict(self)
        # Keys of plain runs stay what they were before these fields existed.
        for name, default in (("engine", {}), ("hparams_seed", 0), ("numerics", "native")):
            if identity[name] == default:
                del identity[name]
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class RunPaths:
    data_root: Path
    cache_dir: Path
    # ``--plugins`` to import before a run (worker processes and Ray tasks start without them)
    plugins: tuple[str, ...] = ()
    # In-run checkpoints (``bench.trainer``): their folder (None: none), and every how many optimiser
    # steps (None: automatic; 0: each epoch end).
    checkpoints: Path | None = None
    checkpoint_every_steps: int | None = None

    def absolute(self) -> RunPaths:
        """The same paths resolved, for workers that start elsewhere (Ray)."""
        folder = None if self.checkpoints is None else self.checkpoints.resolve()
        return replace(self, data_root=self.data_root.resolve(), cache_dir=self.cache_dir.resolve(),
                       checkpoints=folder)


def configure(method, device: torch.device, engine: dict[str, bool]) -> None:
    """Apply execution settings that change speed, not the method: TF32 on CUDA (always), channels-last
    memory format and torch.compile of each model's parts (on request)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if engine.get("channels_last"):
        method.models.to(memory_format=torch.channels_last)
    if engine.get("compile"):
        for model in method.models.values():
            for part in model.children():
                part.compile()


def load_data(spec: RunSpec, paths: RunPaths):
    dataset = DATASETS[spec.dataset](spec.dataset_options)
    return dataset, load_or_build(dataset, paths.data_root, spec.ratio, paths.cache_dir)


def checkpointing(spec: RunSpec, paths: RunPaths, data_fingerprint: str, device: torch.device,
                  origin: list[dict[str, Any]]) -> Checkpointing | None:
    """The run's checkpoints, fingerprinted by its key, its data, the device type and the code (engine,
    methods, datasets, models and the plugins that define it): any change makes old ones unusable. On the
    CPU they also carry the numerics they were computed with (``bench.numerics.state``) and the CPU model.
    Under portable numerics a checkpoint from other numerics is refused, as its continuation would match
    neither; under native numerics (where no record is portable anyway) the run goes on, since a
    paper-scale run may span machines, and each ``resumed_from`` entry names both machines."""
    if paths.checkpoints is None:
        return None
    plugin_hashes = tuple(sorted(json.dumps(entry, sort_keys=True) for entry in origin))
    identity = json.dumps([spec.key, data_fingerprint, device.type, code_fingerprint(plugin_hashes)])
    fingerprint = hashlib.sha256(identity.encode()).hexdigest()[:20]
    computed_with = numerics.state() if device.type == "cpu" else None
    machine = numerics.cpu_model() if device.type == "cpu" else torch.cuda.get_device_name(device)
    checkpointer = Checkpointer(paths.checkpoints, spec.key, fingerprint, computed_with, machine,
                                other_numerics=spec.numerics == "native")
    return Checkpointing(checkpointer, paths.checkpoint_every_steps)


def _train(spec: RunSpec, paths: RunPaths, device: torch.device, progress: bool,
           origin: list[dict[str, Any]], tracer: Any = None) -> dict[str, Any]:
    start = time.perf_counter()
    dataset, data = load_data(spec, paths)
    channels_last = spec.engine.get("channels_last", False)
    splits = {name: DeviceSplit(data.split(name), device, dataset.normalization(), dataset.input_transform(),
                                channels_last)
              for name in ("train", "valid", "test")}
    augment = dataset.train_augmentation(device)
    if hasattr(augment, "exact_sqrt"):  # an augmentation that takes square roots declares it
        augment.exact_sqrt = spec.engine.get("exact_sqrt", False)
    device_data = DeviceData(**splits, num_classes=dataset.num_classes, augment=augment)
    data_seconds = time.perf_counter() - start

    torch.manual_seed(spec.seed)
    generator = torch.Generator(device=device)
    generator.manual_seed(spec.seed)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    ctx = RunContext(
        num_classes=dataset.num_classes,
        input_shape=dataset.model_input_shape(),
        train_targets=device_data.train.targets,
        device=device,
        generator=generator,
        train_biases=device_data.train.biases if METHODS[spec.method].BIAS_SUPERVISED else None,
        exact_sqrt=spec.engine.get("exact_sqrt", False),
    )
    method = METHODS[spec.method](dict(spec.hparams), ctx)
    configure(method, device, spec.engine)
    outcome = train_and_evaluate(method, device_data, generator, progress=progress,
                                 amp=spec.engine.get("amp", False),
                                 checkpointing=checkpointing(spec, paths, data.fingerprint, device, origin),
                                 tracer=tracer)
    phases = {"data": data_seconds, **outcome.pop("phases")}
    test = outcome.pop("test")
    samples_per_s = outcome.pop("train_samples_per_s")
    restored = outcome.pop("restored_wall_s")
    return {
        "dataset_fingerprint": data.fingerprint,
        "dataset_sizes": {"train": len(data.train), "valid": len(data.valid), "test": len(data.test)},
        **{field: test[key] for field, key in TEST_METRICS.items()},
        # Selected on test: for comparison with numbers published that way, never used for selection.
        "oracle_test_acc": outcome["oracle"].get("test_acc"),
        **outcome,
        "timing": {
            # Work done: this process's time plus, after a resume, the time up to the checkpoint.
            "total_s": time.perf_counter() - start + restored,
            "phases_s": phases,
            "train_samples_per_s": samples_per_s,
            "peak_memory_mb": peak_memory_mb(device),
        },
    }


def _finish(record: dict[str, Any], device: torch.device, spec: RunSpec) -> dict[str, Any]:
    record["env"] = describe(device, spec.numerics)
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return record


def failed_record(spec: RunSpec, error: str, device: torch.device) -> dict[str, Any]:
    """The record of a run that could not report itself (e.g. its worker was lost)."""
    return _finish({"key": spec.key, **asdict(spec), "status": "failed", "error": error}, device, spec)


def execute(spec: RunSpec, paths: RunPaths, device: torch.device, progress: bool = True,
            tracer: Any = None) -> dict[str, Any]:
    """Run ``spec`` and return its record (status ``ok`` or ``failed``). Any exception in the run --
    an error, non-finite losses, running out of memory -- becomes a failed record with the error.
    ``tracer``: a ``bench.trace.Tracer`` (``run_bench.py trace``)."""
    record: dict[str, Any] = {"key": spec.key, **asdict(spec)}
    try:
        numerics.enter(spec.numerics)
        load_plugins(paths.plugins)
        origin = provenance(spec.method, spec.dataset)
        if origin:
            record["plugins"] = origin
        if METHODS[spec.method].BIAS_SUPERVISED:
            record["bias_supervised"] = True  # trained with the training set's bias labels: an upper bound
        record["schedule"] = schedule_label(METHODS[spec.method], DATASETS[spec.dataset], spec.ratio, spec.preset,
                                            spec.hparams)
        record.update(_train(spec, paths, device, progress, origin, tracer))
        record["status"] = "ok"
    except Exception as error:
        record["status"] = "failed"
        record["error"] = f"{type(error).__name__}: {error}"
        record["traceback"] = traceback.format_exc(limit=8)
    return _finish(record, device, spec)
