"""User code that registers methods and datasets from outside this repository.

``--plugins SPEC`` (repeatable) imports a module by name or a ``.py`` file by path; installed packages can
also register through the entry-point groups ``debias_bench.methods`` and ``debias_bench.datasets`` (each
entry point names a module to import). A plugin registers with the same decorators as the built-in code
(``methods.registry.register_method``, ``datasets.registry.register_dataset``) and depends only on the
method and dataset interfaces. Every record of a run whose method or dataset came from a plugin carries
the plugin's source path and the SHA-256 of its file, so a rerun with changed plugin code is visible.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from dataclasses import asdict, dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from datasets import DATASETS
from methods import METHODS

ENTRY_POINT_GROUPS = ("debias_bench.methods", "debias_bench.datasets")


class PluginError(ValueError):
    """A plugin that cannot be used; the message is one line naming it."""


@dataclass(frozen=True)
class Plugin:
    spec: str
    path: str
    sha256: str
    methods: tuple[str, ...]
    datasets: tuple[str, ...]


LOADED: dict[str, Plugin] = {}  # spec -> plugin, so that loading twice (e.g. in a worker) is a no-op


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _import(spec: str) -> Path:
    """Import ``spec`` (a ``.py`` path or a module name) and return its source file."""
    if spec.endswith(".py") or "/" in spec:
        path = Path(spec).resolve()
        if not path.is_file():
            raise PluginError(f"--plugins {spec}: no such file")
        name = f"debias_bench_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        module_spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return path
    module = importlib.import_module(spec)
    return Path(module.__file__ or spec).resolve()


def load_plugin(spec: str) -> Plugin:
    """Import one plugin; PluginError (one line) when it fails, clashes with a registered name, or
    registers nothing."""
    if spec in LOADED:
        return LOADED[spec]
    before_methods, before_datasets = set(METHODS), set(DATASETS)
    try:
        path = _import(spec)
    except PluginError:
        raise
    except ValueError as error:
        if "registered twice" in str(error):
            raise PluginError(f"--plugins {spec}: {error}; choose another name") from None
        raise PluginError(f"--plugins {spec}: import failed: {type(error).__name__}: {error}") from None
    except Exception as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise PluginError(f"--plugins {spec}: import failed: {type(error).__name__}: {detail}") from None
    methods = tuple(m for m in METHODS if m not in before_methods)
    datasets = tuple(d for d in DATASETS if d not in before_datasets)
    if not methods and not datasets:
        raise PluginError(f"--plugins {spec}: registers no method and no dataset (decorate a Method subclass "
                          "with @register_method or a BiasedDataset with @register_dataset)")
    plugin = Plugin(spec, str(path), _file_hash(path) if path.is_file() else "", methods, datasets)
    LOADED[spec] = plugin
    return plugin


def load_plugins(specs: list[str] | tuple[str, ...], include_entry_points: bool = True) -> list[Plugin]:
    """``--plugins`` in order, then the installed packages' entry points (each once)."""
    plugins = [load_plugin(spec) for spec in specs]
    if include_entry_points:
        for group in ENTRY_POINT_GROUPS:
            for point in entry_points(group=group):
                if point.module not in LOADED:
                    plugins.append(load_plugin(point.module))
    return plugins


def provenance(method: str, dataset: str) -> list[dict[str, Any]]:
    """The plugins that registered ``method`` or ``dataset``, as the record stores them."""
    return [{k: v for k, v in asdict(p).items() if k in ("spec", "path", "sha256")}
            for p in LOADED.values() if method in p.methods or dataset in p.datasets]
