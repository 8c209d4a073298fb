"""In-run checkpoints: a run SIGKILLed mid-way and rerun gives the uninterrupted run's record exactly.

Each killed run is a real child process (``child_runs``) that kills itself (``bench.faults``) at a point drawn at random
(seeded, so a failure reproduces): an optimiser step of any stage, or -- for the two-stage methods -- the
between-stage step (PGD's scoring, JTT's error set), after a first kill inside stage 1.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from child_runs import killed_run

from bench.checkpoint import Checkpointer
from bench.cli import main
from bench.numerics import cpu_model
from reporting.records import read_records

SMALL = ["--datasets", "cmnist", "--ratios", "0.05", "--epochs", "3", "--no-progress",
         "--set", "cmnist.train_size=600", "--set", "cmnist.eval_size=200"]
STEPS_PER_EPOCH = 5  # 600 training images in batches of 128
# Everything a run computes; only timing, checkpoint counts and the resume log may differ.
COMPARED = ("test_acc", "test_aligned_acc", "test_conflicting_acc", "worst_group_acc", "test_cell_mean_acc",
            "test_loss", "test_group_acc", "oracle_test_acc", "epochs", "selected", "last_epoch_test", "oracle",
            "diagnostics", "stage_steps", "method_info", "weights_sha256", "dataset_fingerprint")
METHODS = ("erm", "lff", "dfa", "jtt", "pgd", "lc", "dpr", "groupdro")


def command(out: Path, data_root: Path, cache_dir: Path, method: str, *extra: str) -> list[str]:
    quicker = ("--set", "jtt.lambda_up=5") if method == "jtt" else ()  # a shorter upsampled epoch
    return ["--methods", method, "--out", str(out), "--data-root", str(data_root), "--cache-dir", str(cache_dir),
            *SMALL, *quicker, *extra]


def positions(record: dict) -> list[dict]:
    """Where each resume of ``record`` started (its ``resumed_from`` without the machines)."""
    return [{key: entry[key] for key in ("stage", "epoch", "step", "batch")} for entry in record["resumed_from"]]


def kill_points(plain: dict, rng: random.Random) -> list[str]:
    """Where to kill, from the uninterrupted run's epoch log: a step after the first stage's first epoch
    (so the resume starts from trained state), then for two-stage methods the between-stage step and a
    step after the second stage's first epoch. JTT's stage 1 has one epoch: its kill falls inside it."""
    steps: dict[str, list[int]] = {}
    for row in plain["epochs"]:
        steps.setdefault(row["stage"], []).append(row["steps"])
    names = list(steps)

    def inside(stage: str) -> str:
        ends = steps[stage]
        low = ends[0] + 1 if len(ends) > 1 else 1
        return f"{stage}:{rng.randint(low, ends[-1] - 1)}"

    points = [inside(names[0])]
    if len(names) == 2:
        points += [f"{names[1]}:start", inside(names[1])]
    return points


def assert_same_run(resumed: dict, plain: dict) -> None:
    assert resumed["status"] == plain["status"] == "ok"
    for name in COMPARED:
        assert resumed[name] == plain[name], name


@pytest.mark.parametrize("method", METHODS)
def test_a_killed_run_resumes_to_the_uninterrupted_record(tmp_path, data_root, cache_dir, method):
    plain_out, killed_out = tmp_path / "plain", tmp_path / "killed"
    assert main(command(plain_out, data_root, cache_dir, method)) == 0
    (plain,) = read_records(plain_out / "results.jsonl")
    assert plain["resumed_from"] == []

    points = kill_points(plain, random.Random(f"resume-{method}"))
    for point in points:
        killed_run(command(killed_out, data_root, cache_dir, method, "--checkpoint-every", "epoch"), point)
        assert not (killed_out / "results.jsonl").exists()
        assert list((killed_out / "checkpoints").glob("*.pt")), "the killed run left a checkpoint"
    assert main(command(killed_out, data_root, cache_dir, method)) == 0
    (resumed,) = read_records(killed_out / "results.jsonl")
    assert len(resumed["resumed_from"]) == len(points), resumed["resumed_from"]
    if method != "jtt":
        assert all(entry["epoch"] >= 1 for entry in resumed["resumed_from"]), resumed["resumed_from"]
    assert_same_run(resumed, plain)
    assert not (killed_out / "checkpoints").exists(), "a finished run's checkpoints are removed"


def test_fixed_step_checkpoints_resume_inside_an_epoch(tmp_path, data_root, cache_dir):
    plain_out, killed_out = tmp_path / "plain", tmp_path / "killed"
    assert main(command(plain_out, data_root, cache_dir, "lff")) == 0
    killed_run(command(killed_out, data_root, cache_dir, "lff", "--checkpoint-every", "2"), "train:9")
    assert main(command(killed_out, data_root, cache_dir, "lff", "--checkpoint-every", "2")) == 0
    (resumed,) = read_records(killed_out / "results.jsonl")
    assert positions(resumed) == [{"stage": "train", "epoch": 1, "step": 8, "batch": 3}]
    (entry,) = resumed["resumed_from"]  # the same machine wrote the checkpoint and went on from it
    assert entry["machine"] == entry["written_on"] == cpu_model() and entry["numerics"] == entry["written_numerics"]
    assert_same_run(resumed, read_records(plain_out / "results.jsonl")[0])
    report = (killed_out / "report.md").read_text()
    assert "Resumed from an in-run checkpoint" in report
    assert "lff cmnist 5% seed 0: train after 1 epoch(s), step 8" in report
    assert "No run was resumed" in (plain_out / "report.md").read_text()


def checkpoint_path(out: Path) -> Path:
    (path,) = (out / "checkpoints").glob("*[0-9a-f].pt")
    return path


def test_a_checkpoint_of_other_hyperparameters_is_ignored_with_a_warning(tmp_path, data_root, cache_dir, capfd):
    other_out, out = tmp_path / "other", tmp_path / "out"
    killed_run(command(other_out, data_root, cache_dir, "erm", "--set", "erm.lr=0.05"), "train:12")
    killed_run(command(out, data_root, cache_dir, "erm"), "train:3")
    # The other run's checkpoint, put where this run looks for its own.
    checkpoint_path(other_out).replace(checkpoint_path(out))
    for stale in (out / "checkpoints").glob("*.prev.pt"):
        stale.unlink()
    capfd.readouterr()
    assert main(command(out, data_root, cache_dir, "erm")) == 0
    warning = [line for line in capfd.readouterr().err.splitlines() if line.startswith("run_bench.py: warning:")]
    assert len(warning) == 1 and "written by other code, data or hyperparameters; ignored" in warning[0]
    (record,) = read_records(out / "results.jsonl")
    assert record["resumed_from"] == []
    assert main(command(tmp_path / "plain", data_root, cache_dir, "erm")) == 0
    assert_same_run(record, read_records(tmp_path / "plain" / "results.jsonl")[0])


def test_a_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, data_root, cache_dir, capfd):
    out = tmp_path / "out"
    killed_run(command(out, data_root, cache_dir, "erm", "--checkpoint-every", "epoch"), "train:12")
    newest = checkpoint_path(out)
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    capfd.readouterr()
    assert main(command(out, data_root, cache_dir, "erm")) == 0
    assert "is unreadable" in capfd.readouterr().err
    (record,) = read_records(out / "results.jsonl")
    # The newest checkpoint was epoch 2's (step 10); the previous one, epoch 1's.
    assert positions(record) == [{"stage": "train", "epoch": 1, "step": 5, "batch": 0}]
    assert main(command(tmp_path / "plain", data_root, cache_dir, "erm")) == 0
    assert_same_run(record, read_records(tmp_path / "plain" / "results.jsonl")[0])


def test_checkpointer_falls_back_then_starts_afresh(tmp_path, capsys):
    checkpointer = Checkpointer(tmp_path, "key", "fingerprint")
    assert checkpointer.load() is None
    checkpointer.save({"step": torch.tensor(1)})
    checkpointer.save({"step": torch.tensor(2)})
    assert int(checkpointer.load()["step"]) == 2
    checkpointer.path.write_bytes(b"\x00" * 10)
    assert int(checkpointer.load()["step"]) == 1
    checkpointer.previous.write_bytes(b"")
    assert checkpointer.load() is None
    assert capsys.readouterr().err.count("is unreadable") == 3
    Checkpointer(tmp_path, "key", "other").save({"step": torch.tensor(3)})
    assert checkpointer.load() is None
    checkpointer.remove()
    assert not list(tmp_path.iterdir())


def test_checkpoint_every_rejects_bad_values(tmp_path, data_root, cache_dir, capsys):
    assert main(command(tmp_path / "out", data_root, cache_dir, "erm", "--checkpoint-every", "sometimes")) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "must be auto, epoch, off or a positive number of steps" in line
    assert not (tmp_path / "out").exists()


def test_checkpoints_off_writes_none(tmp_path, data_root, cache_dir):
    out = tmp_path / "out"
    killed_run(command(out, data_root, cache_dir, "erm", "--checkpoint-every", "off"), "train:3")
    assert not (out / "checkpoints").exists()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_a_killed_run_resumes_on_cuda(tmp_path, data_root, cache_dir):
    """On CUDA the resumed run continues from its checkpoint too; its numbers are compared loosely, since
    some CUDA kernels (index accumulation, cuDNN's algorithms) are not bit-deterministic run to run."""
    plain_out, killed_out = tmp_path / "plain", tmp_path / "killed"
    assert main(command(plain_out, data_root, cache_dir, "pgd", "--device", "cuda")) == 0
    killed_run(command(killed_out, data_root, cache_dir, "pgd", "--device", "cuda", "--checkpoint-every", "epoch"),
               "debiased:start")
    assert main(command(killed_out, data_root, cache_dir, "pgd", "--device", "cuda")) == 0
    (plain,), (resumed,) = read_records(plain_out / "results.jsonl"), read_records(killed_out / "results.jsonl")
    assert positions(resumed) == [{"stage": "biased", "epoch": 3, "step": 15, "batch": 0}]
    assert resumed["stage_steps"] == plain["stage_steps"]
    assert resumed["test_acc"] == pytest.approx(plain["test_acc"], abs=0.05)


def test_a_native_run_resumed_on_another_machine_goes_on_and_is_flagged(tmp_path, data_root, cache_dir, capfd):
    """A paper-scale native run may be interrupted on one CPU model and resumed on another: it continues
    (hours of work kept), its ``resumed_from`` entry names both machines, and the report flags it. The
    other machine is simulated by rewriting who wrote the checkpoint."""
    out = tmp_path / "out"
    killed_run(command(out, data_root, cache_dir, "erm", "--checkpoint-every", "epoch"), "train:12")
    for path in (out / "checkpoints").glob("*.pt"):
        saved = torch.load(path, weights_only=True)
        saved["machine"] = "AMD EPYC 9B14 (family 25, model 17)"
        saved["numerics"] = {**saved["numerics"], "cpu_capability": "AVX512", "onednn_isa": "AVX-512 with BF16"}
        torch.save(saved, path)
    capfd.readouterr()
    assert main(command(out, data_root, cache_dir, "erm")) == 0
    assert "continuing from it under native numerics" in capfd.readouterr().err
    (record,) = read_records(out / "results.jsonl")
    assert positions(record) == [{"stage": "train", "epoch": 2, "step": 10, "batch": 0}]
    (entry,) = record["resumed_from"]
    assert entry["written_on"] == "AMD EPYC 9B14 (family 25, model 17)" and entry["machine"] == cpu_model()
    report = (out / "report.md").read_text()
    assert "**Resumed on another machine or under other numerics**" in report
    assert "same result as uninterrupted" not in report  # which a mixed run's is not
    assert f"erm cmnist 5% seed 0: train after 2 epoch(s): AMD EPYC 9B14 (family 25, model 17) -> {cpu_model()}" \
        in report
