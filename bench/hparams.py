"""Resolve a run's hyperparameters from the layers that set them, lowest first:

1. the training loop's settings (``methods.base.LOOP_DEFAULTS``: iteration budget, drop_last, oracle
   evaluations), then the dataset's training setting (``TRAIN_DEFAULTS``: model, optimiser, schedule, epochs);
2. the method's ``HPARAMS``, then ``DATASET_HPARAMS[dataset]``, then ``DATASET_HPARAMS[(dataset, ratio)]``
   (e.g. DFA's per-ratio lambdas);
3. with ``--hparams-seed K > 0``, a random draw of the searchable keys (``bench.search``);
4. the preset (``quick`` shortens the schedule; ``paper`` keeps the published one);
5. ``--epochs``; hyperparameters counted in epochs are scaled with the schedule, and an iteration budget
   gives way to the epoch count (``--epochs 2`` means two epochs for every method);
6. ``--set <dataset>.<key>=value`` for a training setting (e.g. ``cmnist.model=timm/resnet18``: every
   method on that dataset), then ``--set <method>.<key>=value``.
"""

from __future__ import annotations

from typing import Any

from bench.search import draw
from datasets import BiasedDataset
from methods import Method
from methods.base import LOOP_DEFAULTS, LOOP_DOMAINS

PRESETS = ("quick", "paper")


class HparamError(ValueError):
    """A bad ``--set`` or preset; the message is one line."""


def coerce(value: str, like: Any, name: str) -> Any:
    """Parse a ``--set`` string into the type of the default it overrides."""
    try:
        if isinstance(like, bool):
            lowered = value.lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError
            return lowered in ("true", "1")
        if isinstance(like, int):
            return int(value)
        if isinstance(like, float):
            return float(value)
    except ValueError:
        raise HparamError(f"--set {name}={value}: expected a {type(like).__name__}") from None
    return value


def parse_sets(items: list[str]) -> dict[str, dict[str, str]]:
    """``["erm.lr=0.1", "cmnist.train_size=500"]`` -> ``{"erm": {"lr": "0.1"}, "cmnist": {...}}``."""
    parsed: dict[str, dict[str, str]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        scope, dot, key = name.partition(".")
        if not eq or not dot or not scope or not key:
            raise HparamError(f"--set {item!r}: expected SCOPE.KEY=VALUE, e.g. erm.lr=0.01 or cmnist.train_size=500")
        parsed.setdefault(scope, {})[key] = value
    return parsed


def resolve_hparams(
    method: type[Method],
    dataset: type[BiasedDataset],
    ratio: float,
    preset: str,
    epochs: int | None,
    sets: dict[str, str],
    hparams_seed: int = 0,
    dataset_sets: dict[str, str] | None = None,
) -> dict[str, Any]:
    """``sets``: this method's ``--set``; ``dataset_sets``: the dataset-scope ``--set`` of training settings."""
    base = {
        **LOOP_DEFAULTS,
        **dataset.TRAIN_DEFAULTS,
        **method.HPARAMS,
        **method.DATASET_HPARAMS.get(dataset.name, {}),
        **method.DATASET_HPARAMS.get((dataset.name, ratio), {}),
    }
    space = {**dataset.TRAIN_SPACE, **method.HPARAM_SPACE}
    base.update(draw(space, method.name, dataset.name, hparams_seed))
    hp = dict(base)
    if preset not in PRESETS:
        raise HparamError(f"unknown preset {preset}; valid: {', '.join(PRESETS)}")
    if preset == "quick":
        hp.update(dataset.QUICK)
    if epochs is not None:
        hp["epochs"] = epochs
    if hp["epochs"] != base["epochs"]:
        for key in method.EPOCH_HPARAMS:
            if key in base and base[key] > 0:
                hp[key] = max(1, round(base[key] * hp["epochs"] / base["epochs"]))
        hp["iterations"] = 0
    for scope, scoped in ((dataset.name, dataset_sets or {}), (method.name, sets)):
        for key, value in scoped.items():
            if key not in base:
                raise HparamError(f"--set {scope}.{key}: unknown key; valid: {', '.join(sorted(base))}")
            hp[key] = coerce(value, base[key], f"{scope}.{key}")
    given = {key: f"--set {dataset.name}.{key}={value}" for key, value in (dataset_sets or {}).items()}
    given.update({key: f"--set {method.name}.{key}={value}" for key, value in sets.items()})
    check_domains(method, dataset, hp, given)
    return hp


def check_domains(method: type[Method], dataset: type[BiasedDataset], hp: dict[str, Any],
                  given: dict[str, str]) -> None:
    """Every value inside the domain declared next to its default; HparamError naming the first one not
    (``given``: how the command line set a key, to quote it)."""
    domains = {**LOOP_DOMAINS, **dataset.TRAIN_DOMAINS, **method.HPARAM_DOMAINS}
    for key, domain in domains.items():
        if key in hp and not domain.contains(hp[key]):
            where = given.get(key, f"{method.name}.{key}={hp[key]!r}")
            raise HparamError(f"{where} on {dataset.name}: must be {domain.describe()}")


def training_keys(dataset: type[BiasedDataset]) -> set[str]:
    """The training settings a dataset-scope ``--set`` may give every method: the loop's and the dataset's."""
    return set(LOOP_DEFAULTS) | set(dataset.TRAIN_DEFAULTS)


def split_dataset_sets(dataset: type[BiasedDataset], sets: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """A dataset-scope ``--set`` is either a dataset option or a training setting for every method."""
    options = {k: v for k, v in sets.items() if k in dataset.OPTIONS}
    training = {k: v for k, v in sets.items() if k not in dataset.OPTIONS}
    unknown = sorted(k for k in training if k not in training_keys(dataset))
    if unknown:
        raise HparamError(f"--set {dataset.name}.{unknown[0]}: unknown key; valid: options "
                          f"{', '.join(sorted(dataset.OPTIONS))}, or training settings "
                          f"{', '.join(sorted(training_keys(dataset)))}")
    return options, training


def resolve_options(dataset: type[BiasedDataset], sets: dict[str, str]) -> dict[str, Any]:
    options = dict(dataset.OPTIONS)
    for key, value in sets.items():
        if key not in options:
            raise HparamError(f"--set {dataset.name}.{key}: unknown key; valid: {', '.join(sorted(options))}")
        options[key] = coerce(value, options[key], f"{dataset.name}.{key}")
        domain = dataset.OPTION_DOMAINS.get(key)
        if domain is not None and not domain.contains(options[key]):
            raise HparamError(f"--set {dataset.name}.{key}={value}: must be {domain.describe()}")
    return options


def schedule_label(method: type[Method], dataset: type[BiasedDataset], ratio: float, preset: str,
                   hp: dict[str, Any]) -> str:
    """How a run's schedule relates to the published one: ``paper``, ``quick``, or both lengths where an
    ``--epochs`` or ``--set`` changed the paper preset's (e.g. ``30 epochs per stage, not the paper's 284
    epochs per stage``)."""
    if preset == "quick":
        return "quick"
    paper = resolve_hparams(method, dataset, ratio, "paper", None, {})

    def length(h: dict[str, Any]) -> str:
        iterations = int(h.get("iterations", 0))
        return f"{iterations} iterations" if iterations > 0 else f"{h['epochs']} epochs per stage"

    if length(hp) == length(paper):
        return "paper"
    return f"{length(hp)}, not the paper's {length(paper)}"
