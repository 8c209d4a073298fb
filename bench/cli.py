"""``run_bench.py``: sweep methods x datasets x bias ratios x seeds, resumably, and write the tables."""

from __future__ import annotations

import argparse
import importlib.util
import os
import shlex
import sys
import warnings
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from bench.environment import DEVICES, DeviceError, git_commit, resolve_device
from bench.hparams import PRESETS, HparamError, parse_sets, resolve_hparams, resolve_options, split_dataset_sets
from bench.launcher import LAUNCHERS, RayOptions, run_all
from bench.runner import RunPaths, RunSpec, load_data
from datasets import DATASETS, DataError
from methods import METHODS
from models import ModelError, check_model
from reporting.plots import (
    accuracy_vs_ratio,
    conflict_pr_curves,
    group_accuracy_maps,
    time_per_phase,
    training_curves,
)
from reporting.published import PublishedError, load_published
from reporting.records import append_record, read_records, write_text_atomic
from reporting.report import render_report
from reporting.tables import latest_ok, render_csv, render_latex, render_markdown, render_timing

DEFAULT_RATIOS = "0.005,0.01,0.05"
EXIT_FAILED = 100  # exit code 100 + N: N runs failed (2: bad input)


class UsageError(ValueError):
    """Bad command-line input: reported as one line, exit code 2, nothing written."""


def _names(value: str, registry: dict, kind: str) -> list[str]:
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in registry]
    if unknown or not names:
        raise UsageError(f"unknown {kind} {', '.join(unknown) or '(none)'}; valid: {', '.join(registry)}")
    return list(dict.fromkeys(names))


def _ratios(value: str) -> list[float]:
    try:
        ratios = [float(r) for r in value.split(",") if r.strip()]
    except ValueError:
        raise UsageError(f"--ratios {value!r}: expected comma-separated numbers in (0, 1)") from None
    bad = [r for r in ratios if not 0 < r < 1]
    if bad or not ratios:
        raise UsageError(f"--ratios: each bias ratio must be in (0, 1), got {value!r}")
    return list(dict.fromkeys(ratios))


def _seeds(value: str) -> list[int]:
    try:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        raise UsageError(f"--seeds {value!r}: expected comma-separated integers") from None
    if not seeds or any(s < 0 for s in seeds):
        raise UsageError(f"--seeds {value!r}: expected non-negative integers")
    return list(dict.fromkeys(seeds))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_bench.py",
        description="Benchmark debiasing methods on synthetic-bias datasets. With no flags: the quick "
        "preset, every method on cmnist at 0.5/1/5 %%, seed 0.",
    )
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma list of {', '.join(METHODS)}")
    parser.add_argument("--datasets", default="cmnist", help=f"comma list of {', '.join(DATASETS)}")
    parser.add_argument("--ratios", default=DEFAULT_RATIOS, help="bias-conflicting fractions in (0, 1)")
    parser.add_argument("--seeds", default="0", help="comma list of training seeds")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per stage (overrides the preset)")
    parser.add_argument("--preset", default="quick", help=f"{' or '.join(PRESETS)} (paper: published schedule)")
    parser.add_argument("--data-root", default=os.environ.get("DATA_ROOT", "./data"),
                        help="source datasets (default $DATA_ROOT or ./data)")
    parser.add_argument("--cache-dir", default=os.environ.get("DEBIAS_BENCH_CACHE", "./cache"),
                        help="generated datasets (default $DEBIAS_BENCH_CACHE or ./cache)")
    parser.add_argument("--out", default=None, help="output folder (default results/<preset>)")
    parser.add_argument("--device", default="auto", help=f"{', '.join(DEVICES)}")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="override a hyperparameter or dataset option: <method>.<key>=v or <dataset>.<key>=v")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast (mixed precision)")
    parser.add_argument("--channels-last", action="store_true", help="channels-last memory format for conv nets")
    parser.add_argument("--compile", action="store_true", help="torch.compile each model's parts")
    parser.add_argument("--hparams-seed", type=int, default=0,
                        help="0: default hyperparameters; K > 0: the K-th random draw (DomainBed-style search)")
    parser.add_argument("--jobs", type=int, default=1, help="runs executed concurrently on the device (default 1)")
    parser.add_argument("--launcher", default="local", help="local (this machine) or ray (a Ray cluster)")
    parser.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    parser.add_argument("--gpus-per-run", type=float, default=None,
                        help="Ray: GPUs per run, fractions share a GPU (default 1 if this machine has CUDA, else 0)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray: CPUs per run (default 1)")
    parser.add_argument("--max-retries", type=int, default=2, help="Ray: retries of a run whose worker is lost")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def plan(args: argparse.Namespace) -> list[RunSpec]:
    """Validate the arguments and return the runs of the sweep; UsageError on bad input."""
    methods = _names(args.methods, METHODS, "method")
    datasets = _names(args.datasets, DATASETS, "dataset")
    ratios = _ratios(args.ratios)
    seeds = _seeds(args.seeds)
    if args.preset not in PRESETS:
        raise UsageError(f"unknown preset {args.preset}; valid: {', '.join(PRESETS)}")
    if args.epochs is not None and args.epochs < 1:
        raise UsageError("--epochs must be at least 1")
    if args.hparams_seed < 0:
        raise UsageError("--hparams-seed must be >= 0")
    if args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
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
            for m in methods for d in datasets for r in ratios
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
    engine = {name: True for name in ("amp", "channels_last", "compile") if getattr(args, name)}
    return [
        RunSpec(m, d, r, s, args.preset, hparams[m, d, r], options[d], engine, args.hparams_seed)
        for d in datasets for r in ratios for m in methods for s in seeds
    ]


def prepare_data(specs: list[RunSpec], paths: RunPaths) -> None:
    """Build or verify every (dataset, ratio) cache up front, so missing data fails before any run."""
    seen = set()
    for spec in specs:
        key = (spec.dataset, spec.ratio, tuple(sorted(spec.dataset_options.items())))
        if key not in seen:
            seen.add(key)
            load_data(spec, paths)


def write_reports(out: Path, records: list[dict], published: pd.DataFrame) -> str:
    table = render_markdown(records)
    write_text_atomic(out / "table.md", table)
    write_text_atomic(out / "table.csv", render_csv(records))
    write_text_atomic(out / "table.tex", render_latex(records))
    write_text_atomic(out / "timing.md", render_timing(records))
    plots = []
    if latest_ok(records):
        for name, draw in (("accuracy_vs_ratio.png", accuracy_vs_ratio), ("training_curves.png", training_curves),
                           ("time_per_phase.png", time_per_phase)):
            draw(records, out / name)
            plots.append(name)
        plots += list(group_accuracy_maps(records, out)) + list(conflict_pr_curves(records, out))
    write_text_atomic(out / "report.md", render_report(records, plots, published))
    return table


def report(argv: list[str]) -> int:
    """``run_bench.py report OUT``: re-render every table from OUT/results.jsonl alone, no training."""
    if len(argv) != 1:
        print("run_bench.py: error: usage: run_bench.py report OUT_FOLDER", file=sys.stderr)
        return 2
    results = Path(argv[0]) / "results.jsonl"
    if not results.is_file():
        print(f"run_bench.py: error: {results} not found", file=sys.stderr)
        return 2
    try:
        published = load_published()
    except PublishedError as error:
        print(f"run_bench.py: error: {error}", file=sys.stderr)
        return 2
    print(write_reports(results.parent, read_records(results), published))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:
        return report(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        specs = plan(args)
        device = resolve_device(args.device)
        gpus = args.gpus_per_run if args.gpus_per_run is not None else float(device.type == "cuda")
        ray_options = RayOptions(args.ray_address, gpus, args.cpus_per_run, args.max_retries)
        paths = RunPaths(Path(args.data_root), Path(args.cache_dir))
        published = load_published()
        prepare_data(specs, paths)
    except (UsageError, DeviceError, DataError, PublishedError) as error:
        print(f"run_bench.py: error: {error}", file=sys.stderr)
        return 2

    git_commit()  # pin the commit this sweep runs before any run starts
    out = Path(args.out) if args.out else Path("results") / args.preset
    out.mkdir(parents=True, exist_ok=True)
    results = out / "results.jsonl"
    done = {record.get("key") for record in read_records(results)}
    pending = [spec for spec in specs if spec.key not in done]
    print(f"preset {args.preset} on {device}: {len(specs)} runs, {len(specs) - len(pending)} already done "
          f"in {results}", file=sys.stderr)

    failures = 0
    progress = not args.no_progress
    finished = run_all(pending, paths, device, args.jobs, progress, args.launcher, ray_options)
    command = shlex.join(["python", "run_bench.py", *argv])
    for spec, record in tqdm(finished, total=len(pending), desc="sweep", unit="run", disable=not progress):
        record["command"] = command
        append_record(results, record)
        if record["status"] != "ok":
            failures += 1
            tqdm.write(f"run failed: {spec.method} {spec.dataset} r={spec.ratio} seed={spec.seed}: "
                       f"{record['error']}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = read_records(results)
    wanted = {spec.key for spec in specs}
    print(write_reports(out, [r for r in records if r.get("key") in wanted], published))
    print(f"wrote {out}/table.md, table.csv, table.tex, timing.md, report.md", file=sys.stderr)
    if failures:
        print(f"{failures} of {len(pending)} runs failed (see results.jsonl); exit code {EXIT_FAILED + failures}",
              file=sys.stderr)
    return EXIT_FAILED + min(failures, 155) if failures else 0
