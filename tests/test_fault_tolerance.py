"""Failure isolation and crash-resume with the local launcher (the Ray launcher's: ``test_ray.py``)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from child_runs import start_run, wait_run

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


def sigkill_mid_sweep_then_rerun(tmp_path, data_root, cache_dir, launcher: str, reap=lambda: None) -> None:
    """SIGKILL a six-run sweep's driver after two records, call ``reap`` (to end what the driver left), then
    rerun the same command: every run is recorded exactly once."""
    out = tmp_path / "out"
    argv = args(out, data_root, cache_dir, "--methods", "erm,lff,pgd", "--seeds", "0,1", "--launcher", launcher)
    driver, log = start_run(argv)
    results = out / "results.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and (not results.exists() or results.read_text().count("\n") < 2):
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)  # in the middle of the third run (or while writing a record)
    wait_run(driver, log)
    reap()
    killed_at = len(read_records(results))
    assert 2 <= killed_at < 6
    code, output = wait_run(*start_run(argv))
    assert code == 0, output
    keys = [json.loads(line)["key"] for line in results.read_text().splitlines()]
    assert len(keys) == 6 and len(set(keys)) == 6


def test_sigkill_mid_sweep_then_rerun_gives_each_run_exactly_once(tmp_path, data_root, cache_dir):
    sigkill_mid_sweep_then_rerun(tmp_path, data_root, cache_dir, "local")


def test_hparams_seed_runs_are_separate_and_self_describing(tmp_path, data_root, cache_dir):
    out = tmp_path / "out"
    holdout = ("--set", "cmnist-lff.split=holdout")  # the search chooses by validation, so it needs one
    assert main(args(out, data_root, cache_dir, "--methods", "lff", *holdout)) == 0
    assert main(args(out, data_root, cache_dir, "--methods", "lff", "--hparams-seed", "2", *holdout)) == 0
    default, searched = read_records(out / "results.jsonl")
    assert default.get("hparams_seed", 0) == 0 and searched["hparams_seed"] == 2
    assert default["key"] != searched["key"] and default["hparams"]["q"] != searched["hparams"]["q"]


def children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/task").exists() or sys.platform != "linux", reason="reads Linux's /proc")
def test_a_killed_driver_takes_its_jobs_workers_with_it(tmp_path, data_root, cache_dir):
    """A driver killed mid-sweep once left its --jobs workers training on as orphans."""
    out = tmp_path / "out"
    command = [sys.executable, "run_bench.py", *args(out, data_root, cache_dir, "--methods", "erm,lff", "--jobs", "2",
                                                      "--epochs", "50")]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    workers: set[int] = set()
    while time.time() < deadline and len(workers) < 2:  # both workers started and training
        time.sleep(0.2)
        workers = {pid for pid in children(proc.pid)
                   if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()}
        workers = workers if (out / "checkpoints").is_dir() else set()
    assert len(workers) >= 2, "the sweep's workers never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.1)
    left = [pid for pid in workers if alive(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"{len(left)} worker(s) outlived the driver"
