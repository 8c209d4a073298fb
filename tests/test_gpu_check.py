"""The device check script, in its CPU dry-run mode: every step runs and the summary lines appear."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run(tmp_path, data_root):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable, "DATA_ROOT": str(data_root)}
    proc = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = (tmp_path / "out" / "summary.txt").read_text()
    for line in ("resnet18_pipeline_efficiency:", "sweep_seconds_jobs1:", "sweep_seconds_jobs5:",
                 "jobs_throughput_gain:"):
        assert line in summary
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(files) <= 8 and "jobs5_table.md" in files
