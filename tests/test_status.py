"""``run_bench.py status OUT``: every run of a sweep as done, running, interrupted or not started, with the
projected time left; one line of error for a folder that is not a sweep's."""

from __future__ import annotations

import fcntl
import json
import re
import threading

import pytest
import torch
from child_runs import killed_run
from test_resume import command

from bench.cli import main
from bench.hparams import resolve_hparams
from bench.status import read_checkpoints, step_rates, sweep_running
from bench.sweep_lock import LOCK_NAME, SweepLock, SweepLocked
from datasets import DATASETS
from methods import METHODS


def status_lines(out, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["status", str(out)])
    return code, capsys.readouterr().out.splitlines()


def row(lines: list[str], run: str) -> list[str]:
    (line,) = [line for line in lines if line.startswith(f"| {run} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_status_follows_a_sweep_from_interrupted_to_done(tmp_path, data_root, cache_dir, capsys):
    out = tmp_path / "out"
    argv = [*command(out, data_root, cache_dir, "erm,lff", "--checkpoint-every", "epoch")]
    killed_run(argv, "train:12")  # ERM, the first run, killed in its third epoch (5 steps per epoch)
    manifest = json.loads((out / "sweep.json").read_text())
    assert [run["method"] for run in manifest["runs"]] == ["erm", "lff"]

    code, lines = status_lines(out, capsys)
    assert code == 0
    erm, lff = row(lines, "erm cmnist 5% seed 0"), row(lines, "lff cmnist 5% seed 0")
    assert erm[1] == "interrupted"
    assert erm[2] == "10 of 15 steps (66.7 %)"  # the last checkpoint: the end of epoch 2
    assert erm[3] == "train (1/1), epoch 2/3, step 10"
    assert erm[4].startswith("test ") and erm[4].endswith(" % at step 10")  # the oracle curve's last point
    recent, so_far = re.fullmatch(r"([0-9.]+) \(so far ([0-9.]+)\)", erm[5]).groups()
    assert float(recent) > 0 and float(so_far) > 0 and erm[6].endswith(" h")
    newest, previous = (state for state, _ in read_checkpoints(out, manifest["runs"][0]["key"]))
    assert float(recent) == pytest.approx(5 / (newest["wall_s"] - previous["wall_s"]), abs=6e-4)  # epoch 2 alone
    assert lff[1] == "not started" and lff[6].startswith("~")  # from ERM's seconds per step, twice the models
    assert "2 runs: 1 interrupted, 1 not started. Sweep not running." in "\n".join(lines)

    with SweepLock(out, "a sweep"):  # a live sweep holds the folder: its checkpointed run is running
        assert row(status_lines(out, capsys)[1], "erm cmnist 5% seed 0")[1] == "running"

    assert main(argv) == 0
    code, lines = status_lines(out, capsys)
    assert code == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    erm = row(lines, "erm cmnist 5% seed 0")
    assert erm[1] == "done" and erm[2].startswith(f"test {100 * records[0]['test_acc']:.2f} %")
    assert erm[3] == f"finished in {records[0]['timing']['total_s'] / 3600:.1f} h"
    assert "Projected time left: none." in "\n".join(lines)


@pytest.mark.parametrize("make", ["missing", "empty", "not_json", "no_hparams"])
def test_status_of_a_folder_that_is_not_a_sweep_is_one_line_of_error(tmp_path, capsys, make):
    out = tmp_path / "out"
    if make != "missing":
        out.mkdir()
    if make == "not_json":
        (out / "sweep.json").write_text("{not json")
    if make == "no_hparams":
        run = {"key": "k", "method": "erm", "dataset": "cmnist", "ratio": 0.05, "seed": 0}
        (out / "sweep.json").write_text(json.dumps({"runs": [run]}))
    assert main(["status", str(out)]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line.startswith("run_bench.py: error: ") and str(out) in line
    assert captured.out == ""


def test_a_sweep_starting_while_status_probes_the_lock_waits_for_the_probe(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    probe = (out / LOCK_NAME).open("a+")
    fcntl.flock(probe.fileno(), fcntl.LOCK_SH)  # status's probe, released 0.3 s later
    threading.Timer(0.3, fcntl.flock, (probe.fileno(), fcntl.LOCK_UN)).start()
    with SweepLock(out, "a sweep"):
        assert sweep_running(out)
    probe.close()
    with SweepLock(out, "the first sweep"), pytest.raises(SweepLocked, match="the first sweep"):
        SweepLock(out, "a second sweep").__enter__()  # a sweep that holds the folder is still refused


def test_the_pace_between_checkpoints_skips_an_interval_with_a_resume():
    plan = {"stages": [{"name": "train", "epochs": 2, "steps": None}], "steps_per_epoch": 100}

    def state(steps: int, wall: float, resumes: int) -> dict:
        return {"plan": plan, "position": {"stage": 0, "steps": steps}, "stage_steps": {}, "wall_s": wall,
                "resumed_from": [{"step": 10}] * resumes}

    assert step_rates(state(150, 100.0, 0), state(100, 75.0, 0)) == (1.5, 2.0)
    assert step_rates(state(150, 100.0, 1), state(100, 75.0, 0)) == (1.5, None)  # a restart in between
    assert step_rates(state(150, 100.0, 0), None) == (1.5, None)


def test_a_folder_with_a_done_a_failed_a_fresh_and_an_unstarted_run_is_all_projected(tmp_path, capsys):
    """The state of a long sweep between runs: ERM done, LfF checkpointed at step 0 only (no pace of its own,
    resumed once on another machine), PGD failed with a checkpoint left behind, DFA not started. Both
    unfinished runs are projected at the pace ERM's record gives, scaled by their models; the failed run
    stays failed."""
    cmnist = DATASETS["cmnist"]
    runs = [{"key": f"k-{name}", "method": name, "dataset": "cmnist", "ratio": 0.05, "seed": 0,
             "hparams": resolve_hparams(METHODS[name], cmnist, 0.05, "paper", 2, {}),
             "dataset_options": dict(cmnist.OPTIONS)} for name in ("erm", "lff", "pgd", "dfa")]
    out = tmp_path / "out"
    (out / "checkpoints").mkdir(parents=True)
    (out / "sweep.json").write_text(json.dumps({"command": "run_bench.py", "jobs": 1, "runs": runs}))
    erm_steps = 2 * 10  # 2 epochs of 1,280 images at batch 128
    erm = {**{k: runs[0][k] for k in ("key", "method", "dataset", "ratio", "seed")}, "status": "ok",
           "test_acc": 0.5, "env": {}, "timing": {"total_s": 1800.0 * erm_steps, "phases_s": {}},
           "dataset_sizes": {"train": 1280}}
    pgd = {**{k: runs[2][k] for k in ("key", "method", "dataset", "ratio", "seed")}, "status": "failed",
           "error": "RuntimeError: out of memory"}
    (out / "results.jsonl").write_text(json.dumps(erm) + "\n" + json.dumps(pgd) + "\n")
    fresh = {"plan": {"stages": [{"name": "train", "epochs": 2, "steps": None}], "steps_per_epoch": 10},
             "position": {"stage": 0, "epoch": 0, "steps": 0}, "log": [], "stage_steps": {}, "wall_s": 0.0,
             "method": {"optimizers": {"biased": {}, "debiased": {}}}, "oracle": {"curve": []}}
    moved = {"stage": "train", "epoch": 0, "step": 0, "batch": 0, "machine": "Intel", "written_on": "AMD"}
    torch.save({"state": {**fresh, "resumed_from": [moved]}}, out / "checkpoints" / "k-lff.pt")
    torch.save({"state": fresh}, out / "checkpoints" / "k-pgd.pt")

    code, lines = status_lines(out, capsys)
    assert code == 0
    assert row(lines, "erm cmnist 5% seed 0")[1] == "done"
    lff = row(lines, "lff cmnist 5% seed 0")
    assert lff[1] == "interrupted" and lff[6] == "~20.0 h"  # 20 steps x 2 models x ERM's 1,800 s
    assert lff[7] == ("mixed machines: train after 0 epoch(s): AMD -> Intel; "  # both notes, neither hidden
                      "~ at the dataset's seconds per model-step: no pace of its own yet")
    pgd_row = row(lines, "pgd cmnist 5% seed 0")
    assert pgd_row[1] == "failed" and pgd_row[6] == "" and "out of memory" in pgd_row[7]
    dfa = row(lines, "dfa cmnist 5% seed 0")
    assert dfa[1] == "not started" and dfa[6].startswith("~") and dfa[6] != "~0.0 h"
    summary = next(line for line in lines if line.startswith("4 runs:"))
    assert "1 done, 1 interrupted, 1 failed, 1 not started" in summary and "not projected" not in summary
