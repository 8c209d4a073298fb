"""``run_bench.py``: sweep methods x datasets x bias ratios x seeds, resumably, and write the tables."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from bench.checkpoint import FOLDER as CHECKPOINTS
from bench.checkpoint import remove_checkpoints
from bench.environment import DEVICES, DeviceError, git_commit, resolve_device
from bench.hparams import PRESETS
from bench.launcher import RayOptions, auto_jobs, run_all
from bench.listing import list_command
from bench.messages import one_line_warnings, warn
from bench.numerics import NUMERICS, NumericsError
from bench.numerics import check as check_numerics
from bench.plan import UsageError, plan
from bench.plugins import PluginError, load_plugins
from bench.runner import RunPaths, RunSpec, load_data
from bench.status import MANIFEST, status
from bench.sweep_lock import SweepLock, SweepLocked
from bench.trace import trace
from bench.verify import verify
from datasets import DATASETS, DataError
from methods import METHODS
from reporting.convergence import convergence_rows
from reporting.published import PublishedError, load_published
from reporting.records import RecordError, append_record, read_records, write_text_atomic
from reporting.report import render_report
from reporting.tables import TABLE_FILES, latest_ok

EXIT_FAILED = 100  # exit code 100 + N: N runs failed (2: bad input)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_bench.py",
        description="Benchmark debiasing methods on synthetic-bias datasets. With no flags: the quick "
        "preset, every method on cmnist at 0.5/1/5 %%, seed 0.",
    )
    parser.add_argument("--methods", default=None, help=f"comma list of {', '.join(METHODS)} and plugins' "
                        "methods (default: every registered method)")
    parser.add_argument("--datasets", default="cmnist", help=f"comma list of {', '.join(DATASETS)}")
    parser.add_argument("--ratios", default=None,
                        help="bias-conflicting fractions in (0, 1) (default: each dataset's published columns)")
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
    parser.add_argument("--jobs", default="1",
                        help="runs executed concurrently on the device, or auto: this CPU's faster layout for "
                             "native numerics (bench.launcher.auto_jobs), one run per core for portable, 1 on "
                             "a GPU (default 1)")
    parser.add_argument("--launcher", default="local", help="local (this machine) or ray (a Ray cluster)")
    parser.add_argument("--ray-address", default=None, help="Ray cluster to join (default: start a local one)")
    parser.add_argument("--gpus-per-run", type=float, default=None,
                        help="Ray: GPUs per run, fractions share a GPU (default 1 if this machine has CUDA, else 0)")
    parser.add_argument("--cpus-per-run", type=float, default=1.0, help="Ray: CPUs per run (default 1)")
    parser.add_argument("--max-retries", type=int, default=2, help="Ray: retries of a run whose worker is lost")
    parser.add_argument("--plugins", action="append", default=[], metavar="SPEC",
                        help="import a module (name) or a .py file (path) that registers methods or datasets "
                             "(repeatable); installed packages' debias_bench.methods / .datasets entry points too")
    parser.add_argument("--checkpoint-every", default="auto", metavar="WHEN",
                        help="in-run checkpoints under OUT/checkpoints, for resuming a killed run: auto (stage "
                             "starts and epoch ends, spaced to cost under 5 %%), epoch (every epoch end), N "
                             "(also every N optimiser steps) or off (default auto)")
    parser.add_argument("--numerics", default=None,
                        help="native (each library's fastest CPU code path) or portable (every CPU code path "
                             "pinned to AVX2, one thread per run: the same record on any x86-64 machine; "
                             "default for --preset paper on the CPU, else native)")
    parser.add_argument("--exact-sqrt", action=argparse.BooleanOptionalAction, default=None,
                        help="square roots rounded as IEEE 754 rounds them (the augmentation's crop sides, Adam's "
                             "update) instead of MKL's approximate vector sqrt, whose last bit differs between "
                             "Intel and AMD CPUs (default: on with portable numerics, else off)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return parser


def prepare_data(specs: list[RunSpec], paths: RunPaths) -> None:
    """Build or verify every (dataset, ratio) cache up front, so missing data fails before any run."""
    seen = set()
    for spec in specs:
        key = (spec.dataset, spec.ratio, tuple(sorted(spec.dataset_options.items())))
        if key not in seen:
            seen.add(key)
            load_data(spec, paths)


def write_reports(out: Path, records: list[dict], published: pd.DataFrame) -> str:
    # Imported here: matplotlib is most of a second of start-up, which every worker process of a sweep (spawned,
    # so importing this module again) would pay for plots only the driver draws, at the end.
    from reporting import plots as draw

    tables = {name: render(records) for name, render in TABLE_FILES.items()}
    for name, text in tables.items():
        write_text_atomic(out / name, text)
    plots = []
    if latest_ok(records):
        for name, plot in (("accuracy_vs_ratio.png", draw.accuracy_vs_ratio),
                           ("training_curves.png", draw.training_curves), ("time_per_phase.png", draw.time_per_phase)):
            plot(records, out / name)
            plots.append(name)
        if convergence_rows(records):
            draw.convergence_curves(records, out / "convergence.png")
            plots.append("convergence.png")
        plots += list(draw.group_accuracy_maps(records, out)) + list(draw.conflict_pr_curves(records, out))
    write_text_atomic(out / "report.md", render_report(records, plots, published, out))
    return tables["table.md"]


def report(argv: list[str]) -> int:
    """``run_bench.py report OUT [--skip-bad]``: re-render every table from OUT/results.jsonl alone, no
    training. A bad line is one error naming the file and line (exit 2); ``--skip-bad`` names each on stderr
    and renders the good records."""
    parser = argparse.ArgumentParser(prog="run_bench.py report", description="re-render a sweep's tables")
    parser.add_argument("out", help="the sweep's output folder (with results.jsonl)")
    parser.add_argument("--skip-bad", action="store_true",
                        help="skip bad lines (each named on stderr) and render the good records")
    args = parser.parse_args(argv)
    results = Path(args.out) / "results.jsonl"
    try:
        if not results.is_file():
            raise UsageError(f"{results} not found")
        published = load_published()
        skipped: list[str] = []
        records = read_records(results, on_bad=skipped.append if args.skip_bad else None)
        for line in skipped:
            warn(f"skipped {line}")
        if not records:
            raise UsageError(f"{results} has no records" + (" left after the skipped lines" if skipped else ""))
    except RecordError as error:
        print(f"run_bench.py: error: {error} (--skip-bad renders the good records)", file=sys.stderr)
        return 2
    except (UsageError, PublishedError) as error:
        print(f"run_bench.py: error: {error}", file=sys.stderr)
        return 2
    print(write_reports(results.parent, records, published))
    return 0


def check_out(out: Path) -> Path:
    """Refuse an ``--out`` that cannot be a writable folder, before anything is written anywhere."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {out}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {existing} is not writable")
    return out


def create_out(out: Path) -> None:
    """Create ``out`` and prove a file can be written in it; on failure remove what was created."""
    missing = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as error:
        for folder in missing:  # deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise UsageError(f"--out {out}: cannot write there ({error.strerror or error})") from None


def checkpoint_every(text: str) -> tuple[bool, int | None]:
    """``--checkpoint-every``: (enabled, every_steps) as ``bench.trainer.Checkpointing`` takes them."""
    named = {"auto": (True, None), "epoch": (True, 0), "off": (False, None)}
    if text in named:
        return named[text]
    if text.isdigit() and int(text) > 0:
        return True, int(text)
    raise UsageError(f"--checkpoint-every {text}: must be auto, epoch, off or a positive number of steps")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    one_line_warnings()
    if argv[:1] == ["report"]:
        return report(argv[1:])
    if argv[:1] == ["list"]:
        return list_command(argv[1:])
    if argv[:1] == ["verify"]:
        return verify(argv[1:])
    if argv[:1] == ["status"]:
        return status(argv[1:])
    if argv[:1] == ["trace"]:
        return trace(argv[1:])
    args = build_parser().parse_args(argv)
    command = shlex.join(["python", "run_bench.py", *argv])
    try:
        plugins = tuple(plugin.spec for plugin in load_plugins(args.plugins))
        device = resolve_device(args.device)
        specs = plan(args, device.type)
        args.jobs = auto_jobs(device, specs) if args.jobs == "auto" else int(args.jobs)
        for setting in sorted({spec.numerics for spec in specs}):
            check_numerics(setting)
        gpus = args.gpus_per_run if args.gpus_per_run is not None else float(device.type == "cuda")
        ray_options = RayOptions(args.ray_address, gpus, args.cpus_per_run, args.max_retries)
        published = load_published()
        out = check_out(Path(args.out) if args.out else Path("results") / args.preset)
        checkpoints, every_steps = checkpoint_every(args.checkpoint_every)
        paths = RunPaths(Path(args.data_root), Path(args.cache_dir), plugins,
                         out / CHECKPOINTS if checkpoints else None, every_steps)
        with bars_hidden(args.no_progress):
            prepare_data(specs, paths)
            create_out(out)
            with SweepLock(out, command):
                return sweep(args, specs, paths, device, ray_options, out, published, command)
    except (UsageError, DeviceError, DataError, PublishedError, PluginError, SweepLocked, NumericsError,
            RecordError) as error:
        print(f"run_bench.py: error: {error}", file=sys.stderr)
        return 2


@contextlib.contextmanager
def bars_hidden(hidden: bool) -> Iterator[None]:
    """``--no-progress`` hides every bar, the dataset builds' too, in this process and in the workers it
    starts: ``TQDM_DISABLE`` in the environment, which the workers inherit (the dataset builds read it
    when they draw a bar; tqdm itself only when it is imported, as in a worker)."""
    saved = os.environ.get("TQDM_DISABLE")
    if hidden:
        os.environ["TQDM_DISABLE"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TQDM_DISABLE", None)
        else:
            os.environ["TQDM_DISABLE"] = saved


def write_manifest(out: Path, specs: list[RunSpec], jobs: int, command: str) -> None:
    """``OUT/sweep.json``: the runs this folder's sweeps were asked for, so that ``run_bench.py status``
    can tell the runs not started yet from the ones that are not part of it. A later command into the
    same folder adds its runs (e.g. another ``--hparams-seed``) and becomes the one named."""
    path = out / MANIFEST
    runs: dict[str, dict] = {}
    if path.is_file():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            runs = {run["key"]: run for run in json.loads(path.read_text())["runs"]}
    for spec in specs:
        runs.setdefault(spec.key, {"key": spec.key, "method": spec.method, "dataset": spec.dataset,
                                   "ratio": spec.ratio, "seed": spec.seed, "preset": spec.preset,
                                   "hparams_seed": spec.hparams_seed, "numerics": spec.numerics,
                                   "engine": spec.engine, "hparams": spec.hparams,
                                   "dataset_options": spec.dataset_options})
    manifest = {"command": command, "jobs": jobs, "git_commit": git_commit(), "runs": list(runs.values())}
    write_text_atomic(path, json.dumps(manifest, indent=1, default=str) + "\n")


def other_settings(spec: RunSpec) -> Iterator[tuple[RunSpec, str]]:
    """The same run under the other numerics and exact-sqrt settings, each with the flags that ask for it.
    Both enter a run's key, and both defaults have changed (``cifar10c``'s paper preset from portable to
    native numerics; portable runs from MKL's square roots to exact ones), so a folder may hold runs made
    under other settings than the ones the same command asks for now."""
    for numerics in NUMERICS:
        for exact in (False, True):
            engine = {k: v for k, v in spec.engine.items() if k != "exact_sqrt"}
            if exact:
                engine["exact_sqrt"] = True
            other = replace(spec, numerics=numerics, engine=engine)
            if other.key != spec.key:
                yield other, f"--numerics {numerics} --{'' if exact else 'no-'}exact-sqrt"


def warn_other_settings(pending: list[RunSpec], done: set, checkpoints: Path | None) -> None:
    """Say which runs to do have a record or in-run checkpoint here under other numerics settings (which
    this sweep will not take) before it starts them afresh."""
    found: dict[str, int] = {}
    for spec in pending:
        for other, flags in other_settings(spec):
            if other.key in done or (checkpoints is not None and (checkpoints / f"{other.key}.pt").is_file()):
                found[flags] = found.get(flags, 0) + 1
                break
    for flags, count in found.items():
        warn(f"{count} of the {len(pending)} runs to do have a record or checkpoint here made under other numerics "
             f"settings; they will run again under these ({flags} takes those instead)")


def sweep(args: argparse.Namespace, specs: list[RunSpec], paths: RunPaths, device, ray_options: RayOptions,
          out: Path, published: pd.DataFrame, command: str) -> int:
    """Run the pending runs of ``specs`` into ``out`` and render the reports; the exit code."""
    git_commit()  # pin the commit this sweep runs before any run starts
    write_manifest(out, specs, args.jobs, command)
    results = out / "results.jsonl"
    done = {record.get("key") for record in read_records(results)}
    pending = [spec for spec in specs if spec.key not in done]
    print(f"preset {args.preset} on {device}: {len(specs)} runs, {len(specs) - len(pending)} already done "
          f"in {results}", file=sys.stderr)
    warn_other_settings(pending, done, paths.checkpoints)

    failures = 0
    progress = not args.no_progress
    finished = run_all(pending, paths, device, args.jobs, progress, args.launcher, ray_options)
    for spec, record in tqdm(finished, total=len(pending), desc="sweep", unit="run", disable=not progress):
        record["command"] = command
        append_record(results, record)
        if paths.checkpoints is not None:
            remove_checkpoints(paths.checkpoints, spec.key)
        if record["status"] != "ok":
            failures += 1
            tqdm.write(f"run failed: {spec.method} {spec.dataset} r={spec.ratio} seed={spec.seed}: "
                       f"{record['error']}", file=sys.stderr)

    if paths.checkpoints is not None:
        with contextlib.suppress(OSError):
            paths.checkpoints.rmdir()  # only when empty: no run of this folder left unfinished
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = read_records(results)
    # The folder's files describe the folder: every record in it, as ``run_bench.py report OUT`` renders them,
    # so a sweep that adds runs to a folder (more seeds, another method) leaves no table of its part alone.
    print(write_reports(out, records, published))
    print(f"wrote {out}/{', '.join([*TABLE_FILES, 'report.md'])}", file=sys.stderr)
    if failures:
        print(f"{failures} of {len(pending)} runs failed (see results.jsonl); exit code {EXIT_FAILED + failures}",
              file=sys.stderr)
    return EXIT_FAILED + min(failures, 155) if failures else 0
