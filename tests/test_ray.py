"""The Ray launcher: a SIGKILLed driver's rerun records every run once, results match the local launcher,
failures stay isolated, and a lost worker is retried from its checkpoint.

These tests start local Ray clusters and end the Ray processes a killed driver leaves, which would end
another test's cluster too: this file runs whole on one xdist worker (``make test``: ``--dist loadfile``)
and no other file starts Ray."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import pytest
import torch
from test_fault_tolerance import ROOT, args, sigkill_mid_sweep_then_rerun

from bench.cli import main
from bench.faults import KILL_AT, KILL_ONCE
from reporting.records import read_records

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")

RAY_PROCESSES = "raylet|gcs_server|ray::"


def ray_pids() -> set[int]:
    found = subprocess.run(["pgrep", "-f", RAY_PROCESSES], capture_output=True, text=True).stdout.split()
    return {int(pid) for pid in found}


def test_sigkill_mid_sweep_then_rerun_gives_each_run_exactly_once(tmp_path, data_root, cache_dir):
    before = ray_pids()

    def reap() -> None:  # Ray's agents outlive a SIGKILLed driver that started them
        time.sleep(1)
        for pid in ray_pids() - before:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    sigkill_mid_sweep_then_rerun(tmp_path, data_root, cache_dir, "ray", reap)


def test_ray_launcher_matches_local_and_isolates_failures(tmp_path, data_root, cache_dir):
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


@pytest.mark.parametrize("retries, status", [(2, "ok"), (0, "failed")])
def test_a_lost_ray_worker_is_retried_from_its_checkpoint_then_recorded(tmp_path, data_root, cache_dir, retries,
                                                                        status):
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
        assert [{k: e[k] for k in ("stage", "epoch", "step", "batch")} for e in record["resumed_from"]] == [
            {"stage": "train", "epoch": 0, "step": 1, "batch": 1}]
