"""From command-line arguments to the runs of a sweep: every name, value and combination validated
before any run starts (``UsageError``: one line, exit code 2, nothing written)."""

from __future__ import annotations

import argparse
import importlib.util
from collections.abc import Callable
from typing import Any

from bench.hparams import PRESETS, HparamError, parse_sets, resolve_hparams, resolve_options, split_dataset_sets
from bench.launcher import LAUNCHERS
from bench.numerics import NUMERICS, default_numerics
from bench.runner import RunSpec
from datasets import DATASETS
from methods import METHODS
from models import ModelError, check_model


class UsageError(ValueError):
    """Bad command-line input: reported as one line, exit code 2, nothing written."""


def _names(value: str, registry: dict, kind: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in registry]
    if unknown or not names:
        raise UsageError(f"unknown {kind} {', '.join(unknown) or '(none)'}; valid: {', '.join(registry)}")
    return list(dict.fromkeys(names))


def _number_list(value: str, flag: str, kind: type, valid: Callable[[Any], bool], expected: str) -> list:
    """Parse a comma-separated list of numbers for ``flag``: each converted by ``kind`` and accepted by
    ``valid``, duplicates dropped in order; UsageError naming ``expected`` otherwise."""
    try:
        numbers = [kind(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{flag} {value!r}: expected comma-separated {expected}") from None
    if not numbers or not all(valid(n) for n in numbers):
        raise UsageError(f"{flag} {value!r}: expected comma-separated {expected}")
    return list(dict.fromkeys(numbers))


def _numerics(args: argparse.Namespace, device_type: str, datasets: list[str]) -> str:
    numerics = getattr(args, "numerics", None) or default_numerics(args.preset, device_type, tuple(datasets))
    if numerics not in NUMERICS:
        raise UsageError(f"unknown numerics {numerics}; valid: {', '.join(NUMERICS)}")
    if numerics == "portable" and device_type != "cpu":
        raise UsageError("--numerics portable pins CPU code paths; a CUDA run cannot be pinned so: use --device cpu "
                         "or --numerics native")
    return numerics


def plan(args: argparse.Namespace, device_type: str = "cpu") -> list[RunSpec]:
    """Validate the arguments and return the runs of the sweep on a device of ``device_type``; UsageError
    on bad input."""
    methods = _names(args.methods, METHODS, "method") if args.methods else list(METHODS)
    datasets = _names(args.datasets, DATASETS, "dataset")
    given = (_number_list(args.ratios, "--ratios", float, lambda r: 0 < r < 1, "numbers in (0, 1)")
             if args.ratios else None)
    ratios = {d: given or list(DATASETS[d].RATIOS) for d in datasets}  # default: the literature's columns
    seeds = _number_list(args.seeds, "--seeds", int, lambda s: s >= 0, "non-negative integers")
    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset}; valid: {', '.join(PRESETS)}")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    if args.hparams_seed < 0:
        raise UsageError("--hparams-seed must be >= 0")
    if args.jobs != "auto" and not (str(args.jobs).isdigit() and int(args.jobs) >= 1):
        raise UsageError(f"--jobs {args.jobs}: must be a positive number of runs or auto")
    if args.launcher not in LAUNCHERS:
        raise UsageError(f"unknown launcher {args.launcher}; valid: {', '.join(LAUNCHERS)}")
    if args.launcher == "ray" and importlib.util.find_spec("ray") is None:
        raise UsageError("--launcher ray needs Ray: pip install '.[ray]'")
    try:
        sets = parse_sets(args.sets)
        unknown = [s for s in sets if s not in METHODS and s not in DATASETS]
        if unknown:
            raise UsageError(
                f"--set {unknown[0]}.*: unknown scope; valid: {', '.join([*METHODS, *DATASETS])}"
            )
        scoped = {d: split_dataset_sets(DATASETS[d], sets.get(d, {})) for d in datasets}
        options = {d: resolve_options(DATASETS[d], scoped[d][0]) for d in datasets}
        hparams = {
            (m, d, r): resolve_hparams(METHODS[m], DATASETS[d], r, args.preset, args.epochs, sets.get(m, {}),
                                       args.hparams_seed, dataset_sets=scoped[d][1])
            for m in methods for d in datasets for r in ratios[d]
        }
        models = {(hp["model"], d, bool(hp.get("pretrained", False))) for (_, d, _), hp in hparams.items()}
        for model, d, pretrained in sorted(models):
            check_model(model, DATASETS[d].num_classes, DATASETS[d](options[d]).model_input_shape(), pretrained)
    except (HparamError, ModelError) as error:
        raise UsageError(str(error)) from None
    for d in datasets:
        if DATASETS[d](options[d]).has_validation():
            continue
        hint = f"hold one out with --set {d}.split=holdout" if "split" in options[d] else "it holds none out"
        if args.hparams_seed > 0:
            raise UsageError(f"--hparams-seed chooses among draws by validation loss, but {d} with these options "
                             f"has no validation split; {hint}")
        for (m, dataset, _), hp in hparams.items():
            if dataset == d and hp.get("selection") == "best_valid_loss":
                raise UsageError(f"{m} selects by best_valid_loss, but {d} with these options has no validation "
                                 f"split; {hint}, or --set {m}.selection=last_epoch")
    numerics = _numerics(args, device_type, datasets)
    engine = {name: True for name in ("amp", "channels_last", "compile") if getattr(args, name)}
    # Portable numerics need square roots that every vendor's CPU rounds alike (issue 41: MKL's vector sqrt
    # refines rsqrtps); records made before this setting existed are its off state (``--no-exact-sqrt``).
    exact_sqrt = getattr(args, "exact_sqrt", None)
    if exact_sqrt is None:
        exact_sqrt = numerics == "portable"
    if exact_sqrt:
        engine["exact_sqrt"] = True
    return [
        RunSpec(m, d, r, s, args.preset, hparams[m, d, r], options[d], engine, args.hparams_seed, numerics)
        for d in datasets for r in ratios[d] for m in methods for s in seeds
    ]
