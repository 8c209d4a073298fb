"""Methods and datasets from outside the repository: the example plugin end to end through run_bench.py
from another folder, its provenance in records and report, entry points, and every bad plugin refused."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bench.plugins
from bench.cli import main
from bench.plugins import LOADED, PluginError, load_plugin, load_plugins
from datasets import DATASETS
from methods import METHODS
from reporting.records import read_records

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--datasets", "cmnist", "--ratios", "0.05", "--epochs", "1", "--no-progress",
         "--set", "cmnist.train_size=256", "--set", "cmnist.eval_size=128"]


def run_outside(cwd: Path, out: Path, data_root: Path, cache_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "run_bench.py"), *SMALL, "--out", str(out), "--data-root", str(data_root),
               "--cache-dir", str(cache_dir), *extra]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_the_example_plugin_runs_end_to_end_from_outside_the_repository(tmp_path, data_root, cache_dir):
    elsewhere = tmp_path / "my_project"
    elsewhere.mkdir()
    plugin = elsewhere / "poe.py"
    shutil.copy(ROOT / "examples" / "poe.py", plugin)
    out = tmp_path / "out"
    done = run_outside(elsewhere, out, data_root, cache_dir, "--plugins", "poe.py", "--methods", "poe,erm",
                       "--jobs", "2")
    assert done.returncode == 0, done.stderr
    records = {r["method"]: r for r in read_records(out / "results.jsonl")}
    assert records["poe"]["status"] == "ok" and 0 <= records["poe"]["test_acc"] <= 1
    (origin,) = records["poe"]["plugins"]
    assert origin["path"] == str(plugin) and len(origin["sha256"]) == 64 and "plugins" not in records["erm"]
    assert "| poe " in (out / "table.md").read_text() and "| erm " in (out / "table.md").read_text()

    plugin.write_text(plugin.read_text() + "\n# changed\n")
    again = run_outside(elsewhere, out, data_root, cache_dir, "--plugins", "poe.py", "--methods", "poe",
                        "--seeds", "1")
    assert again.returncode == 0, again.stderr
    assert main(["report", str(out)]) == 0  # the whole folder's records
    report = (out / "report.md").read_text()
    lines = [line for line in report.splitlines() if "poe.py (sha256" in line]
    assert len(lines) == 2, "a rerun with changed plugin code shows both versions"


@pytest.mark.parametrize("source, message", [
    ("import nonexistent_module_xyz\n", "import failed: ModuleNotFoundError"),
    ("def broken(:\n", "import failed: SyntaxError"),
    ("x = 1\n", "registers no method and no dataset"),
    ("from methods.registry import register_method\nfrom methods.erm import ERM\n\n"
     "@register_method\nclass Again(ERM):\n    name = 'erm'\n", "method 'erm' registered twice; choose another name"),
])
def test_a_bad_plugin_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, source, message):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(source)
    out = tmp_path / "out"
    code = main(["--plugins", str(plugin), "--out", str(out), *SMALL])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and message in err and str(plugin) in err
    assert not out.exists()


def test_a_missing_plugin_file_is_refused(tmp_path, capsys):
    assert main(["--plugins", str(tmp_path / "none.py"), "--out", str(tmp_path / "o"), *SMALL]) == 2
    assert "no such file" in capsys.readouterr().err


def test_installed_packages_register_through_entry_points(tmp_path, monkeypatch):
    package = tmp_path / "site"
    package.mkdir()
    (package / "entry_point_method.py").write_text(
        "from methods.erm import ERM\nfrom methods.registry import register_method\n\n"
        "@register_method\nclass Installed(ERM):\n    name = 'installed-erm'\n")
    monkeypatch.syspath_prepend(str(package))

    class Point:
        module = "entry_point_method"

    monkeypatch.setattr(bench.plugins, "entry_points",
                        lambda group: [Point()] if group == "debias_bench.methods" else [])
    try:
        plugins = load_plugins([])
        assert [p.methods for p in plugins] == [("installed-erm",)] and "installed-erm" in METHODS
        assert load_plugins([]) == [], "an entry point is imported once"
    finally:
        METHODS.pop("installed-erm", None)
        LOADED.pop("entry_point_method", None)


def test_a_plugin_registering_a_dataset_is_recorded(tmp_path):
    plugin = tmp_path / "tiny_dataset.py"
    plugin.write_text(
        "from datasets.cmnist import ColoredMNIST\nfrom datasets.registry import register_dataset\n\n"
        "@register_dataset\nclass Renamed(ColoredMNIST):\n    name = 'cmnist-renamed'\n")
    try:
        loaded = load_plugin(str(plugin))
        assert loaded.datasets == ("cmnist-renamed",) and loaded.methods == ()
        assert bench.plugins.provenance("erm", "cmnist-renamed")[0]["path"] == str(plugin)
        assert bench.plugins.provenance("erm", "cmnist") == []
    finally:
        DATASETS.pop("cmnist-renamed", None)
        LOADED.pop(str(plugin), None)
    with pytest.raises(PluginError):
        load_plugin(str(tmp_path / "missing.py"))
