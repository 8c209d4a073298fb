"""The device check script in its CPU dry-run mode (every step runs, the CUDA cases skip cleanly, the
summary has its lines, at most 8 files come back), and the table projection on hand-made records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from project_table import projected_run_seconds, projection_lines  # noqa: E402


@pytest.mark.gpu_dry_run  # a minute of its own: `make gpu-dry-run`, which CI runs after `make test`
def test_gpu_check_dry_run(tmp_path, data_root):
    out = tmp_path / "out"
    # The script runs pytest itself: it must not see this pytest's (or an xdist worker's) variables, under which
    # pytest-benchmark switches its timings off.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(OUT=str(out), PYTHON=sys.executable, DATA_ROOT=str(data_root))
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = dict(line.split(": ", 1) for line in (out / "summary.txt").read_text().splitlines())
    assert summary["device"] == "cpu"
    assert summary["cuda_tests_exit_code"] == "0" and summary["cuda_tests_failed"] == "0"
    assert int(summary["cuda_tests_skipped"]) >= 20  # every CUDA case is there, and skips on the CPU
    assert summary["benchmarks_exit_code"] == "0", (out / "benchmarks.log").read_text()[-3000:]
    for name in ("resnet18_pipeline_efficiency", "checkpoint_seconds_resnet18",
                 "cifar10c_dfa_50k_iterations_projected_s", "sweep_seconds_jobs1", "sweep_seconds_jobs2",
                 "jobs2_throughput_gain",
                 "projected_paper_run_seconds_pgd", "projected_cmnist_table_minutes_jobs2", "gpu_check_seconds"):
        assert name in summary, name
    assert "exit code" not in (out / "sweep.log").read_text()
    files = sorted(p.name for p in out.iterdir())
    assert len(files) <= 8 and all(p.is_file() for p in out.iterdir()), files
    assert len((out / "sweep_jobsN.jsonl").read_text().splitlines()) == 5


def record(method: str, stages: dict[str, int], phases: dict[str, float]) -> dict:
    rows = [{"stage": stage} for stage, count in stages.items() for _ in range(count)]
    return {"method": method, "dataset": "cmnist", "ratio": 0.01, "status": "ok", "epochs": rows,
            "timing": {"phases_s": phases}}


def test_projection_scales_training_per_stage_and_keeps_one_off_work():
    pgd = record("pgd", {"biased": 2, "debiased": 2},
                 {"data": 3.0, "biased": 4.0, "debiased": 6.0, "score": 1.0, "eval": 2.0, "diagnostics": 5.0})
    # 100 epochs per stage: 4 s and 6 s of 2 epochs each x 50, evaluation 2 s over 4 epochs x 50
    assert projected_run_seconds(pgd, {"biased": 100, "debiased": 100}) == pytest.approx(3 + 1 + 5 + 200 + 300 + 100)
    jtt = record("jtt", {"identify": 1, "upweighted": 10}, {"identify": 1.0, "upweighted": 10.0, "error_set": 0.5})
    assert projected_run_seconds(jtt, {"identify": 10, "upweighted": 100}) == pytest.approx(0.5 + 10 + 100)


def test_projection_lines_divide_the_table_by_the_measured_gain():
    erm = record("erm", {"train": 10}, {"train": 10.0})
    lines = dict(line.split(": ") for line in projection_lines([erm], serial_s=100.0, concurrent_s=25.0, jobs=5))
    assert lines["measured_epochs_erm"] == "train=10/100"
    assert float(lines["projected_paper_run_seconds_erm"]) == pytest.approx(100.0)
    assert float(lines["projected_cmnist_table_seconds_jobs1"]) == pytest.approx(900)  # x 3 ratios x 3 seeds
    assert float(lines["projected_cmnist_table_seconds_jobs5"]) == pytest.approx(225)
