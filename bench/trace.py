"""Where two machines part: a trace of a run's arithmetic, step by step and operation by operation
(issue 41: portable records that reproduce within a CPU vendor but not across vendors).

``run_bench.py trace FOLDER --run KEY`` reruns a committed record's run (from its own fields, as
``verify`` does; portable numerics) for its first ``--steps`` optimiser steps and writes a trace, one JSON
line per event:

- every ``--every`` steps (and at every step of ``--ops``): the step's sample indices, its augmented
  input batch, its loss and every parameter and buffer after the optimiser step;
- at every step of ``--ops A-B`` (counted over the whole run, from 1), the operations of that step in the
  order they ran: each leaf module's forward output (``forward``), each parameter's gradient before the
  optimiser (``grad``), each parameter after it (``param``);
- at each stage start, the method's own state (PGD's sampling weights, JTT's error set, EMAs);
- at each epoch end, the logged losses.

Values are exact checksums, not statistics: a float tensor's bits read as 32-bit integers and summed in 64
bits (any single changed bit changes the sum), with the element count. ``--compare OTHER`` reads another
machine's trace of the same run and names the first event that differs and, within an ``--ops`` step, the
first operation, with the library that computes it under portable numerics (``LIBRARY``). Tracing reads
tensors only: a traced run computes the same bits as an untraced one (a test checks it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench.numerics import NumericsError, check, cpu_model
from bench.runner import RunPaths, execute
from bench.verify import add_data_arguments, ok_records, spec_of
from reporting.records import RecordError

# The code path each kind of operation takes on the CPU under portable numerics (bench.numerics).
LIBRARY = {
    "Conv2d": "oneDNN convolution (ONEDNN_MAX_CPU_ISA=AVX2; default memory layout)",
    "Linear": "MKL sgemm through ATen addmm (MKL_CBWR=COMPATIBLE)",
    "BatchNorm2d": "ATen's vectorised batch norm (ATEN_CPU_CAPABILITY=avx2)",
    "BatchNorm1d": "ATen's vectorised batch norm (ATEN_CPU_CAPABILITY=avx2)",
    "ReLU": "ATen's vectorised clamp (ATEN_CPU_CAPABILITY=avx2)",
    "MaxPool2d": "ATen or oneDNN max pooling",
    "AdaptiveAvgPool2d": "ATen's adaptive average pooling",
    "AvgPool2d": "ATen's average pooling",
    "Dropout": "ATen's bernoulli draw and multiply",
    "input": "the batched augmentation (ATen: grid_sample, colour jitter; MKL VML for sin/cos/exp and the crop "
             "sides' sqrt, whose SSE4.2 kernel refines rsqrtps unless exact_sqrt)",
    "loss": "cross-entropy: ATen log_softmax (exp and log through MKL VML or SLEEF)",
    "grad": "the backward kernels of the layer that owns the parameter",
    "param": "the optimiser's update (ATen's per-tensor kernels; Adam's sqrt through MKL VML unless exact_sqrt, "
             "which takes its fused kernel)",
}


STEP_PARTS = {"index": "the batch's sample indices", "input": "the augmented input batch", "loss": "the loss"}


class TraceComplete(BaseException):
    """Raised after the last traced step: the run stops there (a BaseException, so that ``execute``
    does not record it as a failed run)."""


def checksum(tensor: torch.Tensor) -> str:
    """The tensor's exact bits as ``sum/count``: its 32-bit words summed as 64-bit integers, in hex."""
    data = tensor.detach().cpu().contiguous().reshape(-1)
    words = data.view(torch.int16 if data.element_size() == 2 else torch.int32) if data.is_floating_point() else data
    return f"{int(words.to(torch.int64).sum()):x}/{data.numel()}"


def _float_hex(value: Any) -> str | None:
    if value is None:
        return None
    return float(value).hex()


class Tracer:
    """Collects a run's trace; ``bench.trainer.Training`` calls it around every optimiser step."""

    def __init__(self, path: Path, every: int, ops: tuple[int, int] | None, stop: int | None):
        self.path, self.every, self.ops, self.stop = Path(path), every, ops, stop
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = _open(self.path, "wt")
        self.step = 0
        self.events: list[list[str]] = []
        self.handles: list[Any] = []

    def write(self, line: dict[str, Any]) -> None:
        self.handle.write(json.dumps(line, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self.handle.close()

    def _traced_ops(self, step: int) -> bool:
        return self.ops is not None and self.ops[0] <= step <= self.ops[1]

    def stage_start(self, stage: str, method: Any) -> None:
        state = {}
        for name in method.STATE_ATTRS:
            value = getattr(method, name)
            if isinstance(value, torch.Tensor):
                state[name] = checksum(value)
        self.write({"event": "stage", "stage": stage, "step": self.step, "state": state})

    def before_step(self, method: Any) -> None:
        if not self._traced_ops(self.step + 1):
            return
        self.events = []
        for model_name, model in method.models.items():
            for name, module in model.named_modules():
                if next(module.children(), None) is not None:
                    continue  # leaf modules only: a container's output is its last child's

                def hook(module: nn.Module, inputs: Any, output: Any, label: str = f"{model_name}.{name}") -> None:
                    if isinstance(output, torch.Tensor):
                        self.events.append([label, type(module).__name__, "forward", checksum(output)])

                self.handles.append(module.register_forward_hook(hook))
        names = {id(p): f"{m}.{n}" for m, model in method.models.items() for n, p in model.named_parameters()}
        for optimizer in method.optimizers.values():
            def before(opt: torch.optim.Optimizer, *_: Any) -> None:
                # Last layer first, the order backward computes them in: the first differing gradient is
                # then the layer where backward parted.
                for group in reversed(opt.param_groups):
                    for p in reversed(group["params"]):
                        if p.grad is not None:
                            self.events.append([names.get(id(p), "?"), "grad", "grad", checksum(p.grad)])

            def after(opt: torch.optim.Optimizer, *_: Any) -> None:
                for group in opt.param_groups:
                    for p in group["params"]:
                        self.events.append([names.get(id(p), "?"), "param", "param", checksum(p)])

            self.handles.append(optimizer.register_step_pre_hook(before))
            self.handles.append(optimizer.register_step_post_hook(after))

    def after_step(self, stage: str, batch: Any, stats: dict[str, torch.Tensor], method: Any) -> None:
        self.step += 1
        traced_ops = self._traced_ops(self.step)
        for handle in self.handles:
            handle.remove()
        self.handles = []
        if traced_ops or self.step % self.every == 0 or self.step == 1:
            line = {"event": "step", "stage": stage, "step": self.step, "index": checksum(batch.index),
                    "input": checksum(batch.x), "loss": _float_hex(stats.get("loss")),
                    "params": checksum(torch.cat([t.detach().reshape(-1).float()
                                                  for t in method.models.state_dict().values()]))}
            if traced_ops:
                line["ops"] = self.events
            self.write(line)
        self.events = []
        if self.stop is not None and self.step >= self.stop:
            self.handle.flush()
            raise TraceComplete

    def epoch_end(self, row: dict[str, Any]) -> None:
        self.write({"event": "epoch", "stage": row["stage"], "epoch": row["epoch"], "step": self.step,
                     **{key: _float_hex(row.get(key)) for key in ("train_loss", "valid_loss")}})


def _key(event: dict[str, Any]) -> tuple:
    return event["event"], event.get("stage"), event.get("step"), event.get("epoch")


def _sequence(event: dict[str, Any]) -> list[list[str]]:
    """A traced step in the order its arithmetic ran: the batch drawn, the augmented input, each forward
    operation, the loss, each gradient (last layer first), each parameter after the optimiser."""
    ops = event["ops"]
    forward = [op for op in ops if op[2] == "forward"]
    return ([["batch", "index", "index", event["index"]], ["batch", "input", "input", event["input"]]] + forward
            + [["loss", "loss", "loss", event["loss"]]] + [op for op in ops if op[2] != "forward"])


def first_difference(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> str:
    """Where two traces of the same run part, in words: the first event, and within a step traced
    operation by operation, the first operation, with the library that computes it."""
    other = {_key(e): e for e in theirs}
    for event in mine:
        twin = other.get(_key(event))
        if twin is None:
            continue
        fields = [k for k in event if k != "ops" and event.get(k) != twin.get(k)]
        both = "ops" in event and "ops" in twin
        if not fields and (not both or event["ops"] == twin["ops"]):
            continue
        where = f"{event['event']} at step {event['step']} ({event['stage']}" + (
            f", epoch {event['epoch']})" if "epoch" in event else ")")
        text = f"first difference: {where}: {', '.join(fields) or 'ops'}"
        if both:
            for a, b in zip(_sequence(event), _sequence(twin), strict=False):
                if a != b:
                    library = LIBRARY.get(a[1]) or LIBRARY.get(a[2]) or (
                        f"the forward kernels of {a[1]}" if a[2] == "forward" else "the sampler's draw")
                    what = STEP_PARTS.get(a[1]) if a[0] in ("batch", "loss") else f"{a[2]} of {a[0]} ({a[1]})"
                    text += f"; first operation: {what}: {a[3]} here, {b[3]} there -- {library}"
                    break
        elif "index" in fields:
            text += " -- the batch's samples (the sampler's draw)"
        elif "input" in fields:
            text += f" -- {LIBRARY['input']}"
        return text
    shared = sum(_key(e) in other for e in mine)
    return f"no difference in the {shared} events both traces hold"


def _open(path: Path, mode: str) -> Any:
    """A trace file, gzip-compressed when its name ends in ``.gz`` (what is committed)."""
    return gzip.open(path, mode) if str(path).endswith(".gz") else Path(path).open(mode)


def read_trace(path: Path) -> list[dict[str, Any]]:
    with _open(path, "rt") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _range(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    low, _, high = text.partition("-")
    if not (low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high)):
        raise ValueError(f"--ops {text}: expected FIRST-LAST optimiser steps, e.g. 1200-1700")
    return int(low), int(high)


def trace(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run_bench.py trace",
                                     description="trace a committed run's arithmetic step by step, and compare")
    parser.add_argument("folder", help="a results folder with results.jsonl")
    parser.add_argument("--run", required=True, help="the record's key (or a unique prefix of it)")
    parser.add_argument("--steps", type=int, required=True, help="optimiser steps to run and trace")
    parser.add_argument("--every", type=int, default=1, help="a step line every N steps (default 1)")
    parser.add_argument("--ops", default=None, metavar="A-B", help="operation-level trace of steps A..B")
    parser.add_argument("--out", required=True, help="the trace file to write (JSON lines; gzip if it ends in .gz)")
    parser.add_argument("--compare", default=None, metavar="TRACE", help="another machine's trace of this run")
    parser.add_argument("--exact-sqrt", action="store_true",
                        help="swap MKL's square roots for exact ones (the engine setting exact_sqrt) in this trace: "
                             "where it parts from the run's own trace, the run took a rounded root that differs "
                             "(with Adam, also where its fused kernel orders the update's arithmetic otherwise)")
    add_data_arguments(parser)
    args = parser.parse_args(argv)
    try:
        spec = spec_of(ok_records(args.folder, args.run)[0])
        traced = spec.key  # the record's run, also when a swap changes how it computes
        if args.exact_sqrt:
            spec = replace(spec, engine={**spec.engine, "exact_sqrt": True})
        if spec.numerics != "portable":
            raise ValueError(f"run {traced} was made under native numerics: no other machine computes its bits")
        if args.steps < 1 or args.every < 1:
            raise ValueError("--steps and --every must be at least 1")
        ops = _range(args.ops)
        if args.compare and not Path(args.compare).is_file():
            raise ValueError(f"--compare {args.compare}: no such file")
        check("portable")
    except (ValueError, RecordError, NumericsError, TypeError) as error:
        print(f"run_bench.py trace: error: {error}", file=sys.stderr)
        return 2
    tracer = Tracer(Path(args.out), args.every, ops, args.steps)
    header = {"event": "header", "key": traced, "method": spec.method, "dataset": spec.dataset,
              "ratio": spec.ratio, "seed": spec.seed, "cpu_model": cpu_model(), "steps": args.steps,
              "every": args.every, "ops": list(ops) if ops else None, "engine": spec.engine}
    tracer.write(header)
    try:
        record = execute(spec, RunPaths(Path(args.data_root), Path(args.cache_dir)), torch.device("cpu"),
                         progress=False, tracer=tracer)
        if record["status"] != "ok":
            print(f"run_bench.py trace: the run failed: {record['error']}", file=sys.stderr)
            return 1
    except TraceComplete:
        pass
    finally:
        tracer.close()
    print(f"wrote {args.out}: {tracer.step} steps of {spec.method} {spec.dataset} r={spec.ratio} seed={spec.seed} "
          f"on {cpu_model()}")
    if args.compare:
        mine, theirs = read_trace(Path(args.out)), read_trace(Path(args.compare))
        other = theirs[0] if theirs and theirs[0].get("event") == "header" else {}
        if other.get("key") != header["key"]:
            print(f"run_bench.py trace: error: {args.compare} traces run {other.get('key')}, not {header['key']}",
                  file=sys.stderr)
            return 2
        if (other.get("every"), other.get("ops")) != (header["every"], header["ops"]):
            print(f"note: the traces differ in --every / --ops ({other.get('every')}, {other.get('ops')} there); "
                  "only the events both hold are compared")
        print(first_difference(mine[1:], theirs[1:]))
    return 0
