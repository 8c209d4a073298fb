"""The ``exact_sqrt`` engine setting (issue 41): portable runs take the square roots of the cmnist crop sides
and of Adam's update as IEEE 754 rounds them, because MKL's vector sqrt, which ``torch.sqrt`` calls on the
CPU, refines the CPU's approximate ``rsqrtps`` and Intel's and AMD's approximations differ. (GroupDRO's
generalisation adjustment, off by default, still takes ``torch.sqrt`` of its group sizes.)"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from bench.cli import build_parser, main
from bench.hparams import resolve_hparams
from bench.plan import plan
from datasets import DATASETS, augment
from datasets.augment import PGDColoredMNISTAugmentation, ieee_sqrt
from methods import METHODS, RunContext
from reporting.records import read_records

ROOT = Path(__file__).resolve().parents[1]


def test_ieee_sqrt_is_exact_for_every_float32_of_two_binades():
    # [1, 4) holds every significand at both exponent parities: the root of any other normal float32 is
    # one of these scaled by a power of two.
    x = np.arange(0x3F800000, 0x40800000, dtype=np.uint32).view(np.float32)
    root = ieee_sqrt(torch.from_numpy(x)).numpy()
    # Correctly rounded: x lies strictly between the squares of the root's neighbouring midpoints (25-bit
    # numbers, so float64 squares them exactly; the root is in [1, 2), so its ulp is 2^-23 on both sides
    # but at 1, where the one below is 2^-24).
    r = root.astype(np.float64)
    below = np.where(root == 1, 2.0**-25, 2.0**-24)
    assert np.all((r - below) ** 2 < x) and np.all(x < (r + 2.0**-24) ** 2)
    # The float64 route that the records made before numpy's root used gives the same bits.
    assert np.array_equal(root, torch.sqrt(torch.from_numpy(x).double()).float().numpy())


def args(*extra: str):
    return build_parser().parse_args(["--methods", "erm", "--ratios", "0.01", *extra])


def test_portable_runs_take_exact_square_roots_unless_told_not_to():
    (portable,) = plan(args("--numerics", "portable"))
    (old,) = plan(args("--numerics", "portable", "--no-exact-sqrt"))
    (native,) = plan(args())
    (asked,) = plan(args("--exact-sqrt"))
    assert portable.engine == asked.engine == {"exact_sqrt": True}
    assert old.engine == native.engine == {}
    assert old.key != portable.key


def test_the_committed_portable_records_keep_their_keys_as_the_off_state():
    reference = build_parser().parse_args([
        "--methods", "erm,pgd", "--datasets", "cmnist", "--ratios", "0.05", "--seeds", "0", "--preset", "paper",
        "--epochs", "2", "--set", "cmnist.train_size=3000", "--set", "cmnist.eval_size=1000", "--numerics",
        "portable", "--no-exact-sqrt"])  # results/portable-reference's command, made before the setting
    committed = [r["key"] for r in read_records(ROOT / "results" / "portable-reference" / "results.jsonl")]
    assert sorted(spec.key for spec in plan(reference)) == sorted(committed)
    reference.exact_sqrt = None
    assert not {spec.key for spec in plan(reference)} & set(committed)


def test_adam_takes_its_fused_kernel_with_exact_square_roots():
    dataset = DATASETS["cmnist-lff"]
    hparams = resolve_hparams(METHODS["erm"], dataset, 0.01, "paper", None, {}, 0)
    assert hparams["optimizer"] == "adam"
    targets = torch.arange(100) % 10
    for exact in (False, True):
        ctx = RunContext(10, (1, 28, 28), targets, torch.device("cpu"), torch.Generator(), exact_sqrt=exact)
        (optimizer,) = METHODS["erm"](dict(hparams), ctx).optimizers.values()
        assert bool(optimizer.defaults["fused"]) is exact


def test_the_cmnist_crop_takes_its_sides_from_ieee_sqrt_when_asked(monkeypatch):
    calls = []
    monkeypatch.setattr(augment, "ieee_sqrt", lambda x: calls.append(len(x)) or ieee_sqrt(x))
    images = torch.rand(4, 3, 28, 28)
    plain = PGDColoredMNISTAugmentation()(images, torch.Generator().manual_seed(0))
    assert calls == []
    exact = PGDColoredMNISTAugmentation(exact_sqrt=True)(images, torch.Generator().manual_seed(0))
    assert calls == [4, 4]  # width and height of every try of every image
    assert exact.shape == plain.shape


def test_a_run_with_exact_sqrt_records_it_and_its_augmentation_uses_it(tmp_path, data_root, cache_dir,
                                                                       monkeypatch):
    calls = []
    monkeypatch.setattr(augment, "ieee_sqrt", lambda x: calls.append(len(x)) or ieee_sqrt(x))
    out = tmp_path / "out"
    assert main(["--methods", "erm", "--datasets", "cmnist", "--ratios", "0.05", "--epochs", "1", "--exact-sqrt",
                 "--set", "cmnist.train_size=256", "--set", "cmnist.eval_size=128", "--out", str(out),
                 "--data-root", str(data_root), "--cache-dir", str(cache_dir), "--no-progress"]) == 0
    (record,) = read_records(out / "results.jsonl")
    assert record["engine"] == {"exact_sqrt": True} and calls
