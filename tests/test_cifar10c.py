"""cifar10c: the LfF protocol on a small ImageFolder source, end to end, and every method's protocol on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bench.cli import build_parser, main
from bench.plan import plan
from datasets import DATASETS, DataError
from datasets.cache import load_or_build
from datasets.cifar_source import CLASSES
from datasets.corruptions import TYPE0, TYPE1
from methods import METHODS
from reporting.records import read_records

CIFAR10C = DATASETS["cifar10c"]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """An ImageFolder tree of synthetic 32x32 PNGs: 20 train and 10 test images per class."""
    root = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    for split, count in (("train", 20), ("test", 10)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                base = np.full((32, 32, 3), 25 * label, dtype=np.int64)
                image = np.clip(base + rng.integers(0, 60, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root


def build(source, cache, ratio=0.05, **options):
    spec = CIFAR10C({**CIFAR10C.OPTIONS, "source": str(source), "workers": 1, **options})
    return load_or_build(spec, Path("unused"), ratio, cache)


def test_splits_and_exact_bias_counts(source, tmp_path):
    data = build(source, tmp_path)
    assert (len(data.train), len(data.valid), len(data.test)) == (180, 20, 100)
    assert data.train.images.shape[1:] == (3, 32, 32)
    for c in range(10):  # exact counts: LfF's rounded cumulative milestones within each class
        n = np.sum(data.train.targets == c)
        shares = np.full(10, 0.05 / 9)
        shares[c] = 0.95
        milestones = np.round(n * np.cumsum(shares))
        aligned = milestones[c] - (milestones[c - 1] if c else 0)
        assert np.sum((data.train.targets == c) & (data.train.biases == c)) == aligned
    assert np.mean(data.test.biases == data.test.targets) == pytest.approx(0.1)
    assert np.array_equal(np.bincount(data.test.biases, minlength=10), np.full(10, 10))


def test_each_image_carries_the_corruption_of_its_bias_label(source, tmp_path):
    from datasets.cifar_source import load_cifar10

    data = build(source, tmp_path)
    test_images, _ = load_cifar10(Path("unused"), str(source), train=False)
    functions = list(TYPE0.values())
    for i in (0, 17, 55, 99):
        rng = np.random.default_rng((0, 0, 2, i))  # (data_seed, ratio key of test, split code, position)
        expected = functions[data.test.biases[i]](test_images[i], rng, 5).transpose(2, 0, 1)
        assert np.array_equal(data.test.images[i], expected)


def test_generation_is_seeded_and_independent_of_workers(source, tmp_path):
    a = build(source, tmp_path / "a", workers=1)
    b = build(source, tmp_path / "b", workers=2)
    c = build(source, tmp_path / "c", data_seed=1)
    assert a.fingerprint == b.fingerprint
    assert np.array_equal(a.train.images, b.train.images)
    assert c.fingerprint != a.fingerprint


def test_type1_and_options_are_validated(source, tmp_path):
    data = build(source, tmp_path, corruption_type="type1")
    originals = data.test.biases == list(TYPE1).index("original")
    assert originals.any()
    with pytest.raises(DataError, match="corruption_type must be one of type0, type1"):
        build(source, tmp_path, corruption_type="type2")
    with pytest.raises(DataError, match=r"severity must be 1\.\.4"):
        build(source, tmp_path, severity=5)


def test_wrong_source_tree_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "src" / "train" / "cats").mkdir(parents=True)
    code = main(["--datasets", "cifar10c", "--methods", "erm", "--out", str(tmp_path / "out"),
                 "--cache-dir", str(tmp_path / "cache"), "--set", f"cifar10c.source={tmp_path / 'src'}",
                 "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "must hold one folder per CIFAR-10 class" in err
    assert not (tmp_path / "out").exists()


def test_cifar10c_runs_end_to_end_with_each_methods_protocol(source, tmp_path, capsys):
    """ERM and PGD train end to end on the corrupted images (the two selection rules); every method's resolved
    protocol is checked from the plan. That every method trains a ResNet-18 on 32 px inputs, the
    bffhq end-to-end test shows (``test_bffhq.py``, all methods at image_size 32)."""
    out = tmp_path / "out"
    common = ["--datasets", "cifar10c", "--ratios", "0.05", "--epochs", "1", "--cache-dir", str(tmp_path / "cache"),
              "--no-progress", "--set", f"cifar10c.source={source}", "--set", "cifar10c.workers=1"]
    code = main(["--methods", "erm,pgd", "--out", str(out), *common])
    records = read_records(out / "results.jsonl")
    assert code == 0, [r.get("error") for r in records]
    assert "chunk" not in capsys.readouterr().err  # --no-progress hides the corruption pass's bar too
    assert [r["method"] for r in records] == ["erm", "pgd"]
    assert all(0 <= r["test_acc"] <= 1 and r["hparams"]["model"] == "resnet18" for r in records)
    for spec in plan(build_parser().parse_args(["--preset", "paper", *common])):
        assert spec.hparams["model"] == "resnet18"
        assert spec.hparams["optimizer"] == "adam"
        # LfF's protocol takes the last epoch; PGD, and DPR built on its code, keep their official learner's rule.
        assert spec.hparams["selection"] == ("best_valid_loss" if spec.method in ("pgd", "dpr") else "last_epoch")
    assert {spec.method for spec in plan(build_parser().parse_args(common))} == set(METHODS)
