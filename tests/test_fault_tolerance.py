"""Failure isolation and crash-resume with the local launcher, and the same sweep through a local Ray."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bench.cli import main
from reporting.records import read_records

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--datasets", "cmnist-lff", "--ratios", "0.05", "--epochs", "1", "--no-progress",
         "--set", "cmnist-lff.train_size=400", "--set", "cmnist-lff.eval_size=200"]


def args(out, data_root, cache_dir, *extra):
    return ["--out", str(out), "--data-root", str(data_root), "--cache-dir", str(cache_dir), *SMALL, *extra]


def test_diverging_run_is_recorded_failed_and_the_sweep_goes_on(tmp_path, data_root, cache_dir, capsys):
    out = tmp_path / "out"
    code = main(args(out, data_root, cache_dir, "--methods", "erm,lff", "--set", "erm.lr=1e12"))
    records = {r["method"]: r for r in read_records(out / "results.jsonl")}
    assert code == 101  # 100 + one failed run
    assert records["erm"]["status"] == "failed" and "non-finite training loss" in records["erm"]["error"]
    assert records["lff"]["status"] == "ok"
    assert "1 of 2 runs failed" in capsys.readouterr().err


ray_missing = importlib.util.find_spec("ray") is None
RAY_PROCESSES = "raylet|gcs_server|ray::"


def ray_pids() -> set[int]:
    found = subprocess.run(["pgrep", "-f", RAY_PROCESSES], capture_output=True, text=True).stdout.split()
    return {int(pid) for pid in found}


@pytest.mark.parametrize("launcher", [
    "local",
    pytest.param("ray", marks=pytest.mark.skipif(ray_missing, reason="Ray is not installed (pip install '.[ray]')")),
])
def test_sigkill_mid_sweep_then_rerun_gives_each_run_exactly_once(tmp_path, data_root, cache_dir, launcher):
    out = tmp_path / "out"
    command = [sys.executable, "run_bench.py", *args(out, data_root, cache_dir, "--methods", "erm,lff,pgd",
                                                      "--seeds", "0,1", "--launcher", launcher)]
    before = ray_pids()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = out / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not results.exists() or results.read_text().count("\n") < 2):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # in the middle of the third run (or while writing a record)
    proc.wait()
    time.sleep(1)
    for pid in ray_pids() - before:  # Ray's agents outlive a SIGKILLed driver that started them
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    killed_at = len(read_records(results))
    assert 2 <= killed_at < 6
    assert subprocess.run(command, cwd=ROOT, capture_output=True).returncode == 0
    keys = [json.loads(line)["key"] for line in results.read_text().splitlines()]
    assert len(keys) == 6 and len(set(keys)) == 6


@pytest.mark.skipif(ray_missing, reason="Ray is not installed (pip install '.[ray]')")
def test_ray_launcher_matches_local_and_isolates_failures(tmp_path, data_root, cache_dir):
    import ray

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the Ray tasks run with one thread each: same arithmetic
    try:
        local = tmp_path / "local"
        sweep = ["--methods", "erm,pgd", "--seeds", "0,1"]
        assert main(args(local, data_root, cache_dir, *sweep)) == 0
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"working_dir": str(ROOT), "excludes": [".venv", ".git", "cache", "results"]})
        distributed = tmp_path / "ray"
        assert main(args(distributed, data_root, cache_dir, *sweep, "--launcher", "ray")) == 0
        failing = tmp_path / "failing"
        code = main(args(failing, data_root, cache_dir, "--methods", "erm,lff", "--launcher", "ray",
                         "--set", "erm.lr=1e12"))
    finally:
        ray.shutdown()
        torch.set_num_threads(threads)

    by_key = {r["key"]: r for r in read_records(local / "results.jsonl")}
    remote = read_records(distributed / "results.jsonl")
    assert sorted(r["key"] for r in remote) == sorted(by_key)
    for record in remote:
        assert record["status"] == "ok"
        assert record["epochs"] == by_key[record["key"]]["epochs"]
        assert record["test_acc"] == by_key[record["key"]]["test_acc"]
    assert code == 101
    statuses = {r["method"]: r["status"] for r in read_records(failing / "results.jsonl")}
    assert statuses == {"erm": "failed", "lff": "ok"}


def test_hparams_seed_runs_are_separate_and_self_describing(tmp_path, data_root, cache_dir):
    out = tmp_path / "out"
    holdout = ("--set", "cmnist-lff.split=holdout")  # the search chooses by validation, so it needs one
    assert main(args(out, data_root, cache_dir, "--methods", "lff", *holdout)) == 0
    assert main(args(out, data_root, cache_dir, "--methods", "lff", "--hparams-seed", "2", *holdout)) == 0
    default, searched = read_records(out / "results.jsonl")
    assert default.get("hparams_seed", 0) == 0 and searched["hparams_seed"] == 2
    assert default["key"] != searched["key"] and default["hparams"]["q"] != searched["hparams"]["q"]


@pytest.mark.skipif(ray_missing, reason="Ray is not installed (pip install '.[ray]')")
@pytest.mark.parametrize("retries, status", [(2, "ok"), (0, "failed")])
def test_a_lost_ray_worker_is_retried_from_its_checkpoint_then_recorded(tmp_path, data_root, cache_dir, retries,
                                                                        status):
    import ray

    from bench.faults import KILL_AT, KILL_ONCE

    marker = tmp_path / "crashed"
    # The first worker to reach the run's second (last) optimiser step SIGKILLs itself, as a lost machine.
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False,
             runtime_env={"working_dir": str(ROOT), "excludes": [".venv", ".git", "cache", "results"],
                          "env_vars": {KILL_AT: "train:2", KILL_ONCE: str(marker)}})
    try:
        out = tmp_path / "out"
        code = main(args(out, data_root, cache_dir, "--methods", "erm", "--launcher", "ray",
                         "--max-retries", str(retries), "--checkpoint-every", "1"))
    finally:
        ray.shutdown()
    (record,) = read_records(out / "results.jsonl")
    assert marker.exists(), "the worker did crash once"
    assert record["status"] == status
    if status == "failed":
        assert code == 101 and "after 0 retries" in record["error"]
    else:
        assert code == 0
        # The retried task continued from the checkpoint of step 1 (the folder is shared here).
        assert record["resumed_from"] == [{"stage": "train", "epoch": 0, "step": 1, "batch": 1}]
