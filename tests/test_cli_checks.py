"""Input checked before any work (an unwritable --out, values outside their domain), one sweep per
output folder (two real processes), default ratios, and output a reader can trust at a glance."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from bench.cli import build_parser, main, warn_other_settings
from bench.hparams import HparamError, resolve_hparams, resolve_options
from bench.plan import plan
from bench.sweep_lock import LOCK_NAME
from datasets import DATASETS
from methods import METHODS
from reporting.plots import accuracy_vs_ratio
from reporting.records import read_records
from reporting.report import portable_command
from reporting.tables import render_markdown

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--datasets", "cmnist", "--ratios", "0.05", "--no-progress", "--set", "cmnist.train_size=256",
        "--set", "cmnist.eval_size=128"]


def refused(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err, err
    return err


def test_an_out_that_cannot_be_a_writable_folder_is_refused_and_nothing_written(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert "is not a folder" in refused(capsys, ["--out", str(blocker), *TINY])
    assert "is not a folder" in refused(capsys, ["--out", str(blocker / "sub" / "out"), *TINY])
    assert blocker.read_text() == "not a folder" and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


@pytest.mark.parametrize("setting, message", [
    ("erm.lr=-0.1", "--set erm.lr=-0.1 on cmnist: must be a number in (0, inf)"),
    ("lff.q=1.5", "--set lff.q=1.5 on cmnist: must be a number in (0, 1]"),
    ("pgd.score_norm_p=0", "--set pgd.score_norm_p=0 on cmnist: must be a number in (0, inf)"),
    ("jtt.T=0", "--set jtt.T=0 on cmnist: must be an integer in [1, inf)"),
    ("dfa.lr_schedule=cosine", "--set dfa.lr_schedule=cosine on cmnist: must be one of shared, dfa"),
    ("cmnist.batch_size=0", "--set cmnist.batch_size=0 on cmnist: must be an integer in [1, inf)"),
    ("cmnist.train_size=-5", "--set cmnist.train_size=-5: must be an integer in [0, inf)"),
])
def test_values_outside_their_domain_are_refused_before_any_run(tmp_path, capsys, setting, message):
    out = tmp_path / "out"
    err = refused(capsys, ["--out", str(out), *TINY, "--set", setting])
    assert message in err
    assert not out.exists()


def test_every_default_lies_in_its_domain():
    for method in METHODS.values():
        for dataset in DATASETS.values():
            for ratio in dataset.RATIOS:
                for preset in ("quick", "paper"):
                    resolve_hparams(method, dataset, ratio, preset, None, {})
        for dataset in DATASETS.values():
            resolve_options(dataset, {})
    with pytest.raises(HparamError, match="must be a number in"):
        resolve_hparams(METHODS["erm"], DATASETS["cmnist"], 0.01, "paper", None, {"momentum": "1.0"})


def test_default_ratios_are_the_literatures_columns_per_dataset():
    args = build_parser().parse_args(["--methods", "erm", "--datasets", "cmnist,cmnist-lff,cifar10c,bffhq"])
    ratios = {}
    for spec in plan(args):
        ratios.setdefault(spec.dataset, []).append(spec.ratio)
    assert ratios == {"cmnist": [0.005, 0.01, 0.05], "cmnist-lff": [0.005, 0.01, 0.02, 0.05],
                      "cifar10c": [0.005, 0.01, 0.02, 0.05], "bffhq": [0.005]}
    args = build_parser().parse_args(["--methods", "erm", "--datasets", "cmnist-lff", "--ratios", "0.01"])
    assert [spec.ratio for spec in plan(args)] == [0.01]


HELD_PLUGIN = ROOT / "tests" / "plugins" / "held_erm.py"


def sweep_command(out: Path, data_root: Path, cache_dir: Path, epochs: str, method: str = "erm") -> list[str]:
    return [sys.executable, "run_bench.py", "--methods", method, "--datasets", "cmnist", "--ratios", "0.05",
            "--epochs", epochs, "--out", str(out), "--data-root", str(data_root), "--cache-dir", str(cache_dir),
            "--no-progress", "--set", "cmnist.train_size=2000", "--set", "cmnist.eval_size=256",
            "--plugins", str(HELD_PLUGIN)]


def wait_for_lock(out: Path, pid: int, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if json.loads((out / LOCK_NAME).read_text())["pid"] == pid:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError("the first sweep never took the lock")


def test_a_second_sweep_on_the_same_out_is_refused_while_the_first_runs(tmp_path, data_root, cache_dir,
                                                                         monkeypatch):
    out = tmp_path / "out"
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv("DEBIAS_BENCH_TEST_HOLD_FILE", str(hold))
    # The first sweep waits at its first training step until the test lets it go, so the second one
    # certainly starts while the first holds the folder.
    first = subprocess.Popen(sweep_command(out, data_root, cache_dir, "2", "held-erm"), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_lock(out, first.pid)
        second = subprocess.run(sweep_command(out, data_root, cache_dir, "2", "held-erm"), cwd=ROOT,
                                capture_output=True, text=True, timeout=300)
        assert second.returncode == 2
        (line,) = second.stderr.strip().splitlines()
        assert "is in use by another sweep" in line and f"pid {first.pid}" in line and "run_bench.py" in line
        assert first.poll() is None
        assert not (out / "results.jsonl").exists()
        hold.unlink()
        assert first.wait(timeout=600) == 0, first.stderr.read()
    finally:
        first.kill()
    (record,) = read_records(out / "results.jsonl")
    assert record["status"] == "ok" and record["method"] == "held-erm"


def test_a_killed_sweep_leaves_no_stuck_lock(tmp_path, data_root, cache_dir, monkeypatch):
    out = tmp_path / "out"
    hold = tmp_path / "hold"
    hold.touch()
    monkeypatch.setenv("DEBIAS_BENCH_TEST_HOLD_FILE", str(hold))
    first = subprocess.Popen(sweep_command(out, data_root, cache_dir, "2", "held-erm"), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_lock(out, first.pid)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    again = subprocess.run(sweep_command(out, data_root, cache_dir, "1"), cwd=ROOT, capture_output=True,
                           text=True, timeout=300)
    assert again.returncode == 0, again.stderr


def test_runs_recorded_or_checkpointed_under_the_other_numerics_are_named_before_they_rerun(tmp_path, capsys):
    # An old cifar10c paper folder: made portable, now planned native by default.
    a, b, c = plan(build_parser().parse_args(["--datasets", "cifar10c", "--preset", "paper", "--methods",
                                              "erm,lff,pgd", "--ratios", "0.05"]), "cpu")
    assert a.numerics == "native" and a.engine == {}
    portable = [replace(spec, numerics="portable") for spec in (a, b, c)]
    (tmp_path / f"{portable[1].key}.pt").touch()  # b was interrupted under portable numerics
    warn_other_settings([a, b, c], {portable[0].key}, tmp_path)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("run_bench.py: warning: 2 of the 3 runs to do have a record or checkpoint here made "
                           "under other numerics settings") and "(--numerics portable --no-exact-sqrt takes" in line
    warn_other_settings([a, b, c], {a.key}, None)
    assert capsys.readouterr().err == ""


def test_the_quick_preset_says_so_in_the_table_and_the_report(tmp_path, data_root, cache_dir, capsys):
    out = tmp_path / "out"
    assert main(["--methods", "erm", "--out", str(out), "--data-root", str(data_root), "--cache-dir",
                 str(cache_dir), *TINY]) == 0
    printed = capsys.readouterr().out
    note = "Preset quick on cmnist: 2 epoch(s) per stage, a look in minutes, not the published schedule"
    assert note in printed and note in (out / "table.md").read_text() and note in (out / "report.md").read_text()
    paper = [{**r, "preset": "paper"} for r in read_records(out / "results.jsonl")]
    assert "Preset quick" not in render_markdown(paper)


def test_accuracy_plot_ticks_are_the_swept_ratios(tmp_path, monkeypatch):
    records = [{"key": f"{r}", "method": "erm", "dataset": "cmnist", "ratio": r, "seed": 0, "status": "ok",
                "test_acc": 0.5, "test_conflicting_acc": 0.4} for r in (0.005, 0.01, 0.02, 0.05)]
    ticks = {}
    real = plt.Figure.savefig

    def keep_ticks(figure, *args, **kwargs):
        axis = figure.axes[0].xaxis
        ticks["major"] = [label.get_text() for label in axis.get_ticklabels()]
        ticks["minor"] = list(axis.get_minorticklocs())
        return real(figure, *args, **kwargs)

    monkeypatch.setattr(plt.Figure, "savefig", keep_ticks)
    accuracy_vs_ratio(records, tmp_path / "a.png")
    assert ticks["major"] == ["0.5", "1", "2", "5"] and ticks["minor"] == []


def test_report_commands_use_paths_relative_to_the_checkout():
    command = (f"python run_bench.py --out /somewhere/else --cache-dir {ROOT / 'cache'} "
               f"--set cifar10c.source={ROOT.parent / 'shared' / 'data'} --data-root ../shared/data")
    portable = portable_command(command, ROOT / "results" / "my-run")
    assert portable == ("python run_bench.py --out results/my-run --cache-dir cache "
                        "--set cifar10c.source=../shared/data --data-root ../shared/data")


def test_committed_reports_carry_no_absolute_paths():
    reports = sorted((ROOT / "results").rglob("*.md"))
    assert reports
    for report in reports:
        for line in report.read_text().splitlines():
            assert not re.search(r"(?<![\w.:/])/(?:work|tmp|root|home|Users|mnt|scratch)/", line), (report, line)


FIXTURE = Path(__file__).parent / "fixtures" / "records.jsonl"


@pytest.mark.parametrize(("bad", "problem"), [
    ('{"key": "x", "method": "erm", "trunc', "not a JSON record"),
    ('{"key": "x", "method": "erm", "dataset": "cmnist", "ratio": 0.01, "status": "ok"}', "missing seed"),
    ('{"model": "resnet50", "top1": 76.1, "epoch": 90}', "not a debias-bench record"),
])
def test_report_names_a_bad_record_and_renders_the_rest_when_asked(tmp_path, capsys, bad, problem):
    out = tmp_path / "out"
    out.mkdir()
    good = FIXTURE.read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join([good[0], bad, *good[1:]]) + "\n")
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"results.jsonl:2: {problem}" in err and "--skip-bad" in err
    assert not (out / "table.md").exists()

    assert main(["report", str(out), "--skip-bad"]) == 0
    captured = capsys.readouterr()
    assert f"warning: skipped {out / 'results.jsonl'}:2: {problem}" in captured.err
    assert (out / "table.md").read_text() == render_markdown(read_records(FIXTURE))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize("field", ["test_acc", "test_conflicting_acc", "oracle_test_acc"])
def test_report_refuses_a_non_finite_metric_naming_the_field(tmp_path, capsys, field, value):
    """A NaN metric once vanished from the unbiased-accuracy table while the other tables kept the record."""
    out = tmp_path / "out"
    out.mkdir()
    good = FIXTURE.read_text().splitlines()
    bad = json.dumps({**json.loads(good[0]), field: float(value)})  # json writes NaN / Infinity as such
    assert f'"{field}": {value}' in bad
    (out / "results.jsonl").write_text("\n".join([bad, *good[1:]]) + "\n")
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"results.jsonl:1: {field} is " in err and "expected a finite number" in err
    assert not (out / "table.md").exists()

    assert main(["report", str(out), "--skip-bad"]) == 0
    assert f"run_bench.py: warning: skipped {out / 'results.jsonl'}:1: {field} is" in capsys.readouterr().err
    assert (out / "table.md").read_text() == render_markdown(read_records(FIXTURE)[1:])


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\x8b\x00garbage without a newline", b'{"key": "x", "meth'])
def test_report_of_a_file_without_records_is_one_line_of_error(tmp_path, content):
    """Through the real entry point, as a user sees it: a lone torn line is one warning line, then the error."""
    out = tmp_path / "out"
    out.mkdir()
    results = out / "results.jsonl"
    results.write_bytes(content)
    proc = subprocess.run([sys.executable, "run_bench.py", "report", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    if content.strip():
        assert lines[0] == f"run_bench.py: warning: {results}:1: ignoring a torn last line (an interrupted write)"
    assert lines[-1] == f"run_bench.py: error: {results} has no records"
    assert len(lines) == (2 if content.strip() else 1)
    assert sorted(p.name for p in out.iterdir()) == ["results.jsonl"]  # nothing rewritten
    assert results.read_bytes() == content


def test_a_torn_last_line_is_one_warning_line_and_the_rest_renders(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    good = FIXTURE.read_text().splitlines()
    (out / "results.jsonl").write_text("\n".join(good) + '\n{"key": "cut sh')
    proc = subprocess.run([sys.executable, "run_bench.py", "report", str(out)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0
    assert proc.stderr.strip().splitlines() == [
        f"run_bench.py: warning: {out / 'results.jsonl'}:{len(good) + 1}: ignoring a torn last line "
        "(an interrupted write)"]
    assert (out / "table.md").read_text() == render_markdown(read_records(FIXTURE))


def test_every_warnings_warn_reaches_the_user_as_one_line():
    import warnings

    from bench.messages import one_line_warnings

    saved = warnings.formatwarning
    try:
        one_line_warnings()
        text = warnings.formatwarning("a library's own warning\nover two lines", UserWarning, "lib.py", 3)
    finally:
        warnings.formatwarning = saved
    assert text == "run_bench.py: warning: a library's own warning over two lines\n"
