"""Portable CPU numerics: the committed reference run reproduces bit for bit here and as a CPU of the other
vendor would compute it, the pins reach a run, a process without them is refused, the setting is part of
a run's identity, a checkpoint of other numerics is refused, and the paper preset defaults to it on the
CPU."""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.checkpoint import Checkpointer
from bench.cli import build_parser, main
from bench.numerics import PORTABLE_ENV, requested
from bench.plan import UsageError, plan
from bench.runner import RunSpec
from bench.verify import differences, ok_records
from reporting.records import read_records

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "portable-reference"


def verify_reference(data_root: Path, cache: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``run_bench.py verify`` of the committed reference in a fresh process (the pins need one)."""
    return subprocess.run([sys.executable, "run_bench.py", "verify", str(REFERENCE), "--data-root", str(data_root),
                           "--cache-dir", str(cache)], cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_the_committed_reference_run_is_bit_identical_on_this_machine(tmp_path, genuine_mnist_root):
    """The check every machine that runs the suite makes (results/portable-reference/README.md)."""
    proc = verify_reference(genuine_mnist_root, tmp_path / "cache")
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "2 of 2 records reproduced" in proc.stdout
    # The pins took effect in that process, whatever this CPU's own best path is.
    assert "CPU capability AVX2, oneDNN Intel AVX2" in proc.stdout


def other_vendor_shim(tmp_path: Path) -> Path:
    """``tests/other_cpu/other_vendor.c`` compiled, or a skip naming what this machine lacks."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    cpuinfo = Path("/proc/cpuinfo")
    if platform.machine() != "x86_64" or compiler is None or not cpuinfo.exists() or \
            "cpuid_fault" not in cpuinfo.read_text().split():
        pytest.skip("needs Linux on x86-64 with a C compiler and CPUID faulting (cpuid_fault in /proc/cpuinfo)")
    shim = tmp_path / "other_vendor.so"
    subprocess.run([compiler, "-O2", "-shared", "-fPIC", "-o", str(shim), str(ROOT / "tests" / "other_cpu" /
                    "other_vendor.c")], check=True, capture_output=True, timeout=120)
    return shim


def test_the_committed_reference_run_is_bit_identical_on_a_cpu_of_the_other_vendor(tmp_path, genuine_mnist_root):
    """MKL, oneDNN and NNPACK choose code paths by CPUID's vendor and cache sizes; the same check with the
    process made to see the other vendor (Intel <-> AMD) and caches a quarter the size. Under MKL_CBWR=
    AVX2,STRICT this failed: MKL's exp and log took another path on 'AuthenticAMD'."""
    env = {**os.environ, "LD_PRELOAD": str(other_vendor_shim(tmp_path))}
    env.pop("PYTHONFAULTHANDLER", None)  # the shim answers CPUID from SIGSEGV: no other handler may take it
    proc = verify_reference(genuine_mnist_root, tmp_path / "cache", env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "2 of 2 records reproduced" in proc.stdout
    answered = [int(n) for n in re.findall(r"other_vendor: answered (\d+) CPUID calls", proc.stderr)]
    assert answered and min(answered) > 0, proc.stderr[-2000:]  # the shim took effect in every process


def test_verify_names_every_field_that_differs():
    (old, *_) = read_records(REFERENCE / "results.jsonl")
    new = {**old, "weights_sha256": "0" * 64, "test_acc": old["test_acc"] + 1e-9,
           "timing": {}, "env": {}, "finished_at": "another day"}
    assert differences(old, old) == []
    assert differences(old, new) == ["weights_sha256", "test_acc"]


def test_verify_takes_one_record_by_its_key_or_refuses_in_one_line(capsys):
    keys = [r["key"] for r in read_records(REFERENCE / "results.jsonl")]
    assert [r["key"] for r in ok_records(str(REFERENCE))] == keys
    assert [r["key"] for r in ok_records(str(REFERENCE), keys[1][:8])] == [keys[1]]
    assert main(["verify", str(REFERENCE), "--run", "nope"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("run_bench.py verify: error: --run nope: 0 ok records")


def test_the_reference_records_say_where_they_ran():
    for record in read_records(REFERENCE / "results.jsonl"):
        env = record["env"]
        assert record["numerics"] == env["numerics"] == "portable"
        assert env["cpu_capability"] == "AVX2" and env["onednn_isa"] == "Intel AVX2" and env["threads"] == 1
        assert env["pinned_env"] == PORTABLE_ENV
        assert {"cpu_model", "cpu_flags", "blas", "numpy_blas", "cpu_count", "interop_threads"} <= set(env)


def test_portable_numerics_without_the_pins_are_refused(tmp_path, data_root, cache_dir, monkeypatch, capsys):
    for name in PORTABLE_ENV:
        monkeypatch.delenv(name, raising=False)
    out = tmp_path / "out"
    code = main(["--methods", "erm", "--ratios", "0.05", "--epochs", "1", "--numerics", "portable", "--out", str(out),
                 "--data-root", str(data_root), "--cache-dir", str(cache_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "portable numerics are not in effect" in err
    assert not out.exists()


def spec(numerics: str) -> RunSpec:
    return RunSpec("erm", "cmnist", 0.01, 0, "paper", {"lr": 0.02}, {"data_seed": 0}, numerics=numerics)


def test_numerics_enter_the_key_only_when_portable():
    native = spec("native")
    assert native.key == RunSpec("erm", "cmnist", 0.01, 0, "paper", {"lr": 0.02}, {"data_seed": 0}).key
    assert spec("portable").key != native.key


def args(*extra: str) -> argparse.Namespace:
    return build_parser().parse_args(["--methods", "erm", "--ratios", "0.01", *extra])


@pytest.mark.parametrize(("extra", "device", "expected"), [
    (("--preset", "paper"), "cpu", "portable"),
    (("--preset", "quick"), "cpu", "native"),
    (("--preset", "paper"), "cuda", "native"),
    (("--preset", "paper", "--numerics", "native"), "cpu", "native"),
    (("--numerics", "portable"), "cpu", "portable"),
    # cifar10c's ResNet-18 is 2.2x slower pinned: its paper preset computes natively, alone or not at all.
    (("--preset", "paper", "--datasets", "cifar10c"), "cpu", "native"),
    (("--preset", "paper", "--datasets", "cmnist,cifar10c"), "cpu", "portable"),
    (("--preset", "paper", "--datasets", "cifar10c", "--numerics", "portable"), "cpu", "portable"),
])
def test_the_paper_preset_defaults_to_portable_numerics_on_the_cpu(extra, device, expected):
    assert {s.numerics for s in plan(args(*extra), device)} == {expected}
    argv = [*extra, *(["--device", device] if device == "cuda" else [])]
    assert requested(argv) == expected  # what run_bench.py pins before torch loads


@pytest.mark.parametrize(("extra", "device", "message"), [
    (("--numerics", "exact"), "cpu", "unknown numerics exact; valid: native, portable"),
    (("--numerics", "portable"), "cuda", "--numerics portable pins CPU code paths"),
])
def test_bad_numerics_are_refused(extra, device, message):
    with pytest.raises(UsageError, match=message):
        plan(args(*extra), device)


def test_a_checkpoint_written_under_other_numerics_is_refused(tmp_path, capsys):
    avx512 = {"cpu_capability": "AVX512", "onednn_isa": "Intel AVX-512", "mkl_cbwr": None, "threads": 2}
    Checkpointer(tmp_path, "run", "same-code", avx512).save({"step": 3})
    assert Checkpointer(tmp_path, "run", "same-code", avx512).load() == {"step": 3}
    avx2 = {**avx512, "cpu_capability": "AVX2"}
    assert Checkpointer(tmp_path, "run", "same-code", avx2).load() is None
    err = capsys.readouterr().err
    assert "written under other numerics (cpu_capability AVX512" in err and "this run: cpu_capability AVX2" in err



def test_native_numerics_go_on_from_a_checkpoint_of_other_numerics(tmp_path, capsys):
    avx512 = {"cpu_capability": "AVX512", "onednn_isa": "Intel AVX-512 with AMX", "mkl_cbwr": None, "threads": 2}
    Checkpointer(tmp_path, "run", "same-code", avx512, "Intel Xeon (family 6, model 207)").save({"step": 3})
    zen4 = {**avx512, "onednn_isa": "Intel AVX-512 with bf16", "threads": 1}
    other = Checkpointer(tmp_path, "run", "same-code", zen4, "AMD EPYC (family 25, model 17)", other_numerics=True)
    assert other.load() == {"step": 3}
    assert other.loaded_from == {"machine": "Intel Xeon (family 6, model 207)", "numerics": avx512}
    assert "continuing from it under native numerics" in capsys.readouterr().err
    # Other code stays refused whatever the numerics.
    assert Checkpointer(tmp_path, "run", "other-code", zen4, "AMD", other_numerics=True).load() is None
