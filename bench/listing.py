"""``run_bench.py list [methods|datasets|models] [--plugins SPEC ...]``: what can be run and set.

Each method with its paper, its own hyperparameters (defaults and domains) and where a dataset changes
them; each dataset with its source, its default bias ratios, its options and its training setting; the
models. Every name is printed as ``--set`` takes it (``lff.q``, ``cmnist-lff.split``).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from typing import Any

from bench.plugins import PluginError, load_plugins
from datasets import DATASETS
from methods import METHODS
from methods.base import LOOP_DEFAULTS, LOOP_DOMAINS
from models import MODELS
from models.timm_backbone import FIND_NAMES, PREFIX

KINDS = ("methods", "datasets", "models")


def _paper(cls: type) -> str:
    if getattr(cls, "PAPER", ""):
        return cls.PAPER
    doc = inspect.getdoc(inspect.getmodule(cls)) or inspect.getdoc(cls) or ""
    return doc.split("\n\n")[0].replace("\n", " ") or "(no citation given)"


def _setting(scope: str, key: str, value: Any, domains: dict[str, Any]) -> str:
    domain = domains.get(key)
    return f"  {scope}.{key} = {value!r}" + (f"  ({domain.describe()})" if domain is not None else "")


def describe_methods() -> list[str]:
    lines = ["methods (--methods NAME; --set METHOD.KEY=VALUE):"]
    for name, cls in METHODS.items():
        lines += ["", f"{name}: {_paper(cls)}"]
        if cls.BIAS_SUPERVISED:
            lines.append("  BIAS-SUPERVISED: trains with the training set's bias labels, which no other method "
                         "sees; an upper bound, not a competitor")
        own = [_setting(name, k, v, cls.HPARAM_DOMAINS) for k, v in cls.HPARAMS.items()]
        lines += own or ["  (no hyperparameters of its own)"]
        for where, overrides in cls.DATASET_HPARAMS.items():
            label = where if isinstance(where, str) else f"{where[0]} at {where[1] * 100:g} %"
            lines.append(f"  on {label}: " + ", ".join(f"{k}={v!r}" for k, v in overrides.items()))
        if cls.HPARAM_SPACE:
            lines.append("  searched by --hparams-seed: " + ", ".join(sorted(cls.HPARAM_SPACE)))
    lines += ["", "every method also takes the training settings of its dataset (see `list datasets`), e.g. "
              "--set erm.lr=0.01, and the loop settings:"]
    lines += [_setting("METHOD", k, v, LOOP_DOMAINS) for k, v in LOOP_DEFAULTS.items()]
    return lines


def describe_datasets() -> list[str]:
    lines = ["datasets (--datasets NAME; --set DATASET.KEY=VALUE for an option, or for a training setting "
             "of every method on it):"]
    for name, cls in DATASETS.items():
        lines += ["", f"{name}: {_paper(cls)}",
                  "  default --ratios: " + ",".join(f"{r:g}" for r in cls.RATIOS)]
        lines.append("  options:")
        lines += ["  " + _setting(name, k, v, cls.OPTION_DOMAINS) for k, v in cls.OPTIONS.items()]
        lines.append("  training setting (every method, unless the method changes it):")
        lines += ["  " + _setting(name, k, v, cls.TRAIN_DOMAINS) for k, v in cls.TRAIN_DEFAULTS.items()]
        if cls.QUICK:
            lines.append("  quick preset: " + ", ".join(f"{k}={v!r}" for k, v in cls.QUICK.items()))
    return lines


def describe_models() -> list[str]:
    return ["models (--set DATASET.model=NAME or METHOD.model=NAME):", "",
            *[f"{name}" for name in MODELS],
            f"{PREFIX}<name>: any timm architecture, without weights unless --set DATASET.pretrained=true; "
            f"{FIND_NAMES}"]


def list_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run_bench.py list", description="What can be run and set.")
    parser.add_argument("kind", nargs="?", default=None, help=f"one of {', '.join(KINDS)} (default: all)")
    parser.add_argument("--plugins", action="append", default=[], metavar="SPEC", help="import plugins first")
    args = parser.parse_args(argv)
    if args.kind is not None and args.kind not in KINDS:
        print(f"run_bench.py list: error: unknown kind {args.kind}; valid: {', '.join(KINDS)}", file=sys.stderr)
        return 2
    try:
        load_plugins(args.plugins)
    except PluginError as error:
        print(f"run_bench.py list: error: {error}", file=sys.stderr)
        return 2
    parts = {"methods": describe_methods, "datasets": describe_datasets, "models": describe_models}
    chosen = [args.kind] if args.kind else list(KINDS)
    print("\n\n".join("\n".join(parts[kind]()) for kind in chosen))
    return 0
