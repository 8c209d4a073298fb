"""run_bench.py end to end on a small cmnist subset: records, tables, resume, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import bench.launcher
from bench.cli import main
from bench.runner import RunSpec
from reporting.records import read_records
from reporting.tables import render_markdown

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "cmnist.train_size=600", "--set", "cmnist.eval_size=300", "--epochs", "2", "--no-progress"]


def run(out, data_root, cache_dir, *extra):
    return main(["--methods", "erm", "--ratios", "0.05", "--out", str(out), "--data-root", str(data_root),
                 "--cache-dir", str(cache_dir), *SMALL, *extra])


def test_run_writes_a_self_describing_record_and_tables(tmp_path, data_root, cache_dir):
    out = tmp_path / "out"
    assert run(out, data_root, cache_dir) == 0
    (record,) = read_records(out / "results.jsonl")
    assert record["status"] == "ok"
    assert (record["method"], record["dataset"], record["ratio"], record["seed"]) == ("erm", "cmnist", 0.05, 0)
    assert record["hparams"]["epochs"] == 2 and record["hparams"]["model"] == "conv"
    assert len(record["dataset_fingerprint"]) == 16
    assert record["dataset_sizes"] == {"train": 600, "valid": 300, "test": 300}
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    assert {"train_loss", "train_acc", "valid_loss", "valid_acc", "lr"} <= set(record["epochs"][0])
    for metric in ("test_acc", "test_aligned_acc", "test_conflicting_acc", "worst_group_acc"):
        assert 0.0 <= record[metric] <= 1.0
    assert record["selection"] == "best_valid_loss"
    assert record["selected"]["epoch"] in (1, 2)
    assert {"acc", "loss"} <= set(record["last_epoch_test"])
    assert {"data", "train", "eval"} <= set(record["timing"]["phases_s"])
    assert record["timing"]["train_samples_per_s"] > 0 and record["timing"]["peak_memory_mb"] > 0
    assert record["env"]["torch"] == torch.__version__
    for name in ("table.md", "table.csv", "table.tex", "timing.md"):
        assert (out / name).stat().st_size > 0
    assert "cmnist 5%" in (out / "table.md").read_text()


def test_same_seed_gives_the_same_numbers_on_cpu(tmp_path, data_root, cache_dir):
    run(tmp_path / "a", data_root, cache_dir, "--device", "cpu")
    run(tmp_path / "b", data_root, cache_dir, "--device", "cpu")
    (a,), (b,) = read_records(tmp_path / "a" / "results.jsonl"), read_records(tmp_path / "b" / "results.jsonl")
    assert a["epochs"] == b["epochs"]
    assert a["test_acc"] == b["test_acc"] and a["key"] == b["key"]


def test_rerun_resumes_without_duplicates(tmp_path, data_root, cache_dir, monkeypatch):
    out = tmp_path / "out"
    real_execute = bench.launcher.execute
    calls = []

    def interrupted(spec, *args, **kwargs):
        calls.append(spec.seed)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies in the middle of the second run
        return real_execute(spec, *args, **kwargs)

    monkeypatch.setattr(bench.launcher, "execute", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(out, data_root, cache_dir, "--seeds", "0,1")
    assert [r["seed"] for r in read_records(out / "results.jsonl")] == [0]

    monkeypatch.setattr(bench.launcher, "execute", real_execute)
    assert run(out, data_root, cache_dir, "--seeds", "0,1") == 0
    assert run(out, data_root, cache_dir, "--seeds", "0,1") == 0  # everything done: nothing is rerun
    records = read_records(out / "results.jsonl")
    assert sorted(r["seed"] for r in records) == [0, 1]
    assert len({r["key"] for r in records}) == 2
    # A narrower command into the same folder still leaves the folder's table of every record in it.
    assert run(out, data_root, cache_dir, "--seeds", "1") == 0
    assert (out / "table.md").read_text() == render_markdown(records)


def test_a_torn_last_line_is_repaired_on_rerun(tmp_path, data_root, cache_dir):
    out = tmp_path / "out"
    run(out, data_root, cache_dir)
    with (out / "results.jsonl").open("a") as handle:
        handle.write('{"key": "half-writ')
    with pytest.warns(UserWarning, match="torn"):
        assert run(out, data_root, cache_dir, "--seeds", "0,1") == 0
    lines = (out / "results.jsonl").read_text().splitlines()
    assert [json.loads(line)["seed"] for line in lines] == [0, 1]


@pytest.mark.parametrize("args, message", [
    (["--methods", "erm,bogus"], "unknown method bogus; valid: erm, lff, jtt, dfa, lc, dpr, pgd, groupdro"),
    (["--datasets", "imagenet"], "unknown dataset imagenet; valid: bffhq, cifar10c, cmnist, cmnist-lff"),
    (["--ratios", "0"], "expected comma-separated numbers in (0, 1)"),
    (["--ratios", "1.5"], "expected comma-separated numbers in (0, 1)"),
    (["--ratios", "abc"], "expected comma-separated numbers"),
    (["--seeds", "x"], "expected comma-separated non-negative integers"),
    (["--seeds", "-1"], "expected comma-separated non-negative integers"),
    (["--jobs", "0"], "--jobs 0: must be a positive number of runs or auto"),
    (["--jobs", "two"], "--jobs two: must be a positive number of runs or auto"),
    (["--preset", "huge"], "unknown preset huge; valid: quick, paper"),
    (["--device", "tpu"], "unknown device tpu; valid: auto, cpu, cuda"),
    (["--set", "erm.nope=1"], "unknown key; valid:"),
    (["--set", "nobody.lr=1"], "unknown scope; valid:"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code = main([*args, "--out", str(out), "--data-root", str(tmp_path / "nodata"), "--cache-dir",
                 str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert message in err and "\n" not in err
    assert not out.exists()


def test_missing_data_says_where_to_put_it(tmp_path, capsys, monkeypatch):
    import datasets.mnist

    def offline(root):
        raise OSError("no network")

    monkeypatch.setattr(datasets.mnist, "_download", offline)
    code = main(["--methods", "erm", "--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "nodata"),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "MNIST not found in" in err and "put the four MNIST idx files there" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "nodata").exists()


def test_wrong_mnist_file_is_rejected(tmp_path, data_root, capsys):
    fake = tmp_path / "data" / "MNIST" / "raw"
    fake.mkdir(parents=True)
    for source in (data_root / "MNIST" / "raw").iterdir():
        (fake / source.name).write_bytes(source.read_bytes())
    (fake / "t10k-labels-idx1-ubyte").write_bytes(b"\x00" * 100)
    code = main(["--methods", "erm", "--out", str(tmp_path / "out"), "--data-root", str(tmp_path / "data"),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 2
    assert "is not the genuine MNIST file" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_without_cuda_is_refused(tmp_path, capsys):
    code = main(["--device", "cuda", "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 2
    assert "no CUDA device is available" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_script_entry_point_exit_code(tmp_path):
    command = [sys.executable, "run_bench.py", "--methods", "nope", "--out", str(tmp_path / "o")]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2
    expected = "run_bench.py: error: unknown method nope; valid: erm, lff, jtt, dfa, lc, dpr, pgd, groupdro"
    assert proc.stderr.strip().splitlines() == [expected]


def test_concurrent_jobs_give_every_run_once(tmp_path, data_root, cache_dir, device):
    out = tmp_path / "out"
    assert run(out, data_root, cache_dir, "--seeds", "0,1,2", "--jobs", "2", "--device", device.type) == 0
    records = read_records(out / "results.jsonl")
    assert sorted(r["seed"] for r in records) == [0, 1, 2]
    assert all(r["status"] == "ok" for r in records)
    serial = tmp_path / "serial"
    assert run(serial, data_root, cache_dir, "--seeds", "0,1,2", "--device", device.type) == 0
    assert {r["key"] for r in read_records(serial / "results.jsonl")} == {r["key"] for r in records}


def test_engine_settings_run_and_are_part_of_the_identity(tmp_path, data_root, cache_dir, device):
    plain, fast = tmp_path / "plain", tmp_path / "fast"
    assert run(plain, data_root, cache_dir, "--device", device.type) == 0
    assert run(fast, data_root, cache_dir, "--amp", "--channels-last", "--device", device.type) == 0
    (a,), (b,) = read_records(plain / "results.jsonl"), read_records(fast / "results.jsonl")
    assert a["engine"] == {} and b["engine"] == {"amp": True, "channels_last": True}
    assert a["key"] != b["key"] and b["status"] == "ok" and 0 <= b["test_acc"] <= 1


def test_compiled_models_train_and_keep_their_state_dict_keys(tmp_path, data_root, cache_dir):
    out = tmp_path / "out"
    code = main(["--methods", "pgd", "--datasets", "cmnist-lff", "--ratios", "0.05", "--epochs", "1", "--compile",
                 "--out", str(out), "--data-root", str(data_root), "--cache-dir", str(cache_dir), "--no-progress",
                 "--set", "cmnist-lff.train_size=300", "--set", "cmnist-lff.eval_size=100"])
    (record,) = read_records(out / "results.jsonl")
    assert code == 0, record.get("error")
    assert record["engine"] == {"compile": True} and record["selected"]["stage"] == "debiased"


def test_report_rerenders_tables_from_records_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text((Path(__file__).parent / "fixtures" / "records.jsonl").read_text())
    assert main(["report", str(out)]) == 0
    assert (out / "table.md").read_text() == (Path(__file__).parent / "golden" / "table.md").read_text()
    assert (out / "timing.md").read_text() == (Path(__file__).parent / "golden" / "timing.md").read_text()
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "results.jsonl not found" in capsys.readouterr().err


def test_report_names_failed_and_missing_runs(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text((Path(__file__).parent / "fixtures" / "records.jsonl").read_text())
    assert main(["report", str(out)]) == 0
    report = (out / "report.md").read_text()
    assert "pgd cmnist 5% seed 1: RuntimeError: boom" in report
    assert "Missing (no ok record):\n- `pgd cmnist 0.5% seed 1`\n- `pgd cmnist 5% seed 1`" in report
    assert "![Unbiased test accuracy against bias ratio" in report
    for name in ("accuracy_vs_ratio.png", "training_curves.png", "time_per_phase.png"):
        assert (out / name).is_file()


@pytest.mark.parametrize(("vendor", "numerics", "cores", "runs", "expected"), [
    ("GenuineIntel", "native", 2, 4, 1),  # two threads a run: 1.12x on an Intel Xeon (family 6, model 207)
    ("GenuineIntel", "native", 16, 20, 8),  # the measured unit, not one run on 16 threads
    ("GenuineIntel", "native", 1, 4, 1),
    ("AuthenticAMD", "native", 2, 4, 2),  # one run per core: 1.2x on an AMD EPYC (family 25, model 17)
    ("GenuineIntel", "portable", 2, 4, 2),  # portable runs are pinned to one thread each
    ("AuthenticAMD", "native", 2, 1, 1),  # never more workers than runs
])
def test_jobs_auto_picks_the_layout_per_cpu(monkeypatch, vendor, numerics, cores, runs, expected):
    from bench import launcher

    monkeypatch.setattr(launcher, "cpu_vendor", lambda: vendor)
    monkeypatch.setattr(launcher.os, "cpu_count", lambda: cores)
    monkeypatch.setattr(launcher.os, "sched_getaffinity", lambda _: set(range(cores)), raising=False)
    specs = [RunSpec("erm", "cifar10c", 0.05, seed, "paper", {}, {}, numerics=numerics) for seed in range(runs)]
    assert launcher.auto_jobs(torch.device("cpu"), specs) == expected
    assert launcher.auto_jobs(torch.device("cuda"), specs) == 1
