"""``run_bench.py verify FOLDER [--run KEY]``: rerun every record of a results folder made under portable
numerics (or the one record whose key starts with ``KEY``) on this machine and compare the new record with
the committed one bit for bit (``weights_sha256``, the
dataset fingerprint, every test metric, the oracle, the epoch log, the selection and the diagnostics).

It is how a machine shows that it reproduces a committed reference run (``results/portable-reference``):
exit 0 when every record matches, 1 when one differs (each difference named), 2 for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from bench.numerics import NumericsError, check
from bench.runner import RunPaths, RunSpec, execute
from reporting.records import RecordError, finite, read_records

# Everything a run computed; timing, environment, resumes and dates are about the machine, not the result.
COMPARED = ("weights_sha256", "dataset_fingerprint", "dataset_sizes", "test_acc", "test_aligned_acc",
            "test_conflicting_acc", "worst_group_acc", "test_cell_mean_acc", "test_loss", "test_group_acc",
            "oracle_test_acc", "oracle", "epochs", "selection", "selected", "last_epoch_test", "stage_steps",
            "method_info", "diagnostics")
SPEC_FIELDS = tuple(f.name for f in fields(RunSpec))


def spec_of(record: dict[str, Any]) -> RunSpec:
    """The run a record describes, checked against the record's own key."""
    spec = RunSpec(**{name: record[name] for name in SPEC_FIELDS if name in record})
    if spec.key != record.get("key"):
        raise ValueError(f"the record's fields do not give its key {record.get('key')}")
    return spec


def ok_records(folder: str, run: str | None = None) -> list[dict[str, Any]]:
    """The ok records of ``folder/results.jsonl``; with ``run``, the one whose key starts with it."""
    results = Path(folder) / "results.jsonl"
    if not results.is_file():
        raise ValueError(f"{results} not found")
    records = [r for r in read_records(results) if r.get("status") == "ok"]
    if run is not None:
        records = [r for r in records if r["key"].startswith(run)]
        if len(records) != 1:
            raise ValueError(f"--run {run}: {len(records)} ok records of {results} match; give a unique key")
    elif not records:
        raise ValueError(f"{results} has no ok record to verify")
    return records


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The data options every command that reruns a record takes."""
    parser.add_argument("--data-root", default="./data")
    parser.add_argument("--cache-dir", default="./cache")


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The compared fields where ``new`` (as it would be written) differs from ``old``."""
    new = json.loads(json.dumps(finite(new), sort_keys=True))
    return [name for name in COMPARED if old.get(name) != new.get(name)]


def verify(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run_bench.py verify",
                                     description="rerun a folder's portable-numerics records and compare bit for bit")
    parser.add_argument("folder", help="a results folder with results.jsonl")
    parser.add_argument("--run", default=None, help="only the record with this key (or a unique prefix of it)")
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    try:
        records = ok_records(args.folder, args.run)
        specs = [spec_of(r) for r in records]
        native = [s.key for s in specs if s.numerics != "portable"]
        if native:
            raise ValueError(f"run {native[0]} was made under native numerics, which no other machine "
                             "reproduces bit for bit")
        check("portable")
    except (ValueError, RecordError, NumericsError, TypeError) as error:
        print(f"run_bench.py verify: error: {error}", file=sys.stderr)
        return 2
    paths = RunPaths(Path(args.data_root), Path(args.cache_dir))
    device = torch.device("cpu")
    mismatched = 0
    for old, spec in zip(records, specs, strict=True):
        new = execute(spec, paths, device, progress=False)
        where = f"{spec.method} {spec.dataset} r={spec.ratio} seed={spec.seed}"
        if new["status"] != "ok":
            print(f"{where}: the rerun failed: {new['error']}")
            mismatched += 1
            continue
        changed = differences(old, new)
        if changed:
            mismatched += 1
            print(f"{where}: DIFFERS in {', '.join(changed)} (weights_sha256 {old['weights_sha256'][:16]} "
                  f"committed, {new['weights_sha256'][:16]} here)")
        else:
            print(f"{where}: bit-identical (weights_sha256 {new['weights_sha256'][:16]})")
    env = new["env"]
    print(f"{len(records) - mismatched} of {len(records)} records reproduced on {env['cpu_model']} "
          f"(CPU capability {env['cpu_capability']}, oneDNN {env['onednn_isa']})")
    return 1 if mismatched else 0
