"""Where two machines part (``bench.trace``): a traced run computes the same bits as an untraced one, the
trace holds what it says, and a comparison names the first differing event and operation."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.cli import build_parser, main
from bench.plan import plan
from bench.runner import RunPaths, execute
from bench.trace import LIBRARY, Tracer, checksum, first_difference, read_trace
from reporting.records import read_records

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--methods", "pgd", "--datasets", "cmnist", "--ratios", "0.05", "--epochs", "2", "--no-progress",
         "--set", "cmnist.train_size=384", "--set", "cmnist.eval_size=128"]


def test_checksum_sees_every_bit():
    x = torch.randn(1000)
    y = x.clone()
    y[500] = torch.nextafter(y[500], torch.tensor(float("inf")))  # one unit in the last place
    assert checksum(x) == checksum(x.clone()) != checksum(y)
    assert checksum(torch.arange(5)) == f"{10:x}/5"


def test_a_traced_run_computes_the_same_bits_and_records_each_step(tmp_path, data_root, cache_dir):
    (spec,) = plan(build_parser().parse_args(SMALL))
    paths = RunPaths(data_root, cache_dir)
    plain = execute(spec, paths, torch.device("cpu"), progress=False)
    tracer = Tracer(tmp_path / "trace.jsonl", every=2, ops=(4, 5), stop=None)
    traced = execute(spec, paths, torch.device("cpu"), progress=False, tracer=tracer)
    tracer.close()
    assert plain["status"] == traced["status"] == "ok"
    assert traced["weights_sha256"] == plain["weights_sha256"] and traced["epochs"] == plain["epochs"]

    events = read_trace(tmp_path / "trace.jsonl")
    steps = [e["step"] for e in events if e["event"] == "step"]
    total = sum(traced["stage_steps"].values())  # PGD: both stages, counted from 1
    assert steps == sorted({1, 4, 5, *range(2, total + 1, 2)})
    stages = [e for e in events if e["event"] == "stage"]
    assert [e["stage"] for e in stages] == ["biased", "debiased"]
    assert stages[1]["state"]  # PGD's sampling weights, checksummed at the second stage's start
    assert len([e for e in events if e["event"] == "epoch"]) == 4
    (step4,) = [e for e in events if e.get("step") == 4 and e["event"] == "step"]
    kinds = {op[2] for op in step4["ops"]}
    assert kinds == {"forward", "grad", "param"}
    assert any(op[1] == "Conv2d" for op in step4["ops"])
    assert "ops" not in next(e for e in events if e.get("step") == 2 and e["event"] == "step")


def test_the_first_difference_names_the_operation_and_its_library():
    step = {"event": "step", "stage": "train", "step": 7, "index": "a/2", "input": "b/2", "loss": "0x1p+0",
            "params": "c/3", "ops": [["model.encoder.0", "Conv2d", "forward", "1/4"],
                                     ["model.encoder.1", "ReLU", "forward", "2/4"]]}
    other = json.loads(json.dumps(step))
    assert first_difference([step], [other]) == "no difference in the 1 events both traces hold"
    other["ops"][1][3] = "3/4"
    other["loss"] = "0x1.1p+0"
    text = first_difference([step], [other])
    assert text.startswith("first difference: step at step 7 (train): loss; first operation: forward of "
                           "model.encoder.1 (ReLU): 2/4 here, 3/4 there")
    assert LIBRARY["ReLU"] in text
    only_loss = json.loads(json.dumps(step))
    only_loss["loss"] = "0x1.1p+0"  # the same logits, another loss: log_softmax's exp or log
    assert first_difference([step], [only_loss]).endswith(
        "first operation: the loss: 0x1p+0 here, 0x1.1p+0 there -- " + LIBRARY["loss"])


def test_trace_command_stops_at_its_steps_and_compares(tmp_path, data_root):
    """Through run_bench.py (portable numerics are pinned before torch loads), on the committed reference."""
    (record,) = [r for r in read_records(ROOT / "results" / "portable-reference" / "results.jsonl")
                 if r["method"] == "erm"]
    out = tmp_path / "a.jsonl"
    command = [sys.executable, "run_bench.py", "trace", "results/portable-reference", "--run", record["key"][:8],
               "--steps", "3", "--ops", "2-2", "--out", str(out), "--data-root", str(data_root),
               "--cache-dir", str(tmp_path / "cache")]
    first = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    events = read_trace(out)
    assert events[0]["event"] == "header" and events[0]["key"] == record["key"]
    assert [e["step"] for e in events if e["event"] == "step"] == [1, 2, 3]
    # The same run with exact square roots swapped in: a rounded crop side differs about 1.8 times in 1,000
    # steps (datasets.augment.ieee_sqrt), so these 3 steps compute the same bits.
    again = subprocess.run([*command[:-4], "--out", str(tmp_path / "b.jsonl"), "--compare", str(out), "--exact-sqrt",
                            *command[-4:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    header = read_trace(tmp_path / "b.jsonl")[0]
    assert header["key"] == record["key"] and header["engine"] == {"exact_sqrt": True}
    assert again.stdout.strip().endswith("no difference in the 4 events both traces hold")


@pytest.mark.parametrize(("extra", "message"), [
    (["--run", "nope", "--steps", "3"], "--run nope: 0 ok records"),
    (["--run", "", "--steps", "3"], "2 ok records"),
    (["--run", "a", "--steps", "0"], None),
])
def test_trace_refuses_bad_input_in_one_line(tmp_path, capsys, extra, message):
    folder = ROOT / "results" / "portable-reference"
    if message is None:  # a valid run but zero steps
        key = read_records(folder / "results.jsonl")[0]["key"]
        extra = ["--run", key, "--steps", "0"]
        message = "--steps and --every must be at least 1"
    assert main(["trace", str(folder), *extra, "--out", str(tmp_path / "t.jsonl")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("run_bench.py trace: error: ") and message in line
    assert not (tmp_path / "t.jsonl").exists()
