"""The dataset cache: reuse, and detection + rebuild of stale or corrupt entries."""

from __future__ import annotations

import json
import time
from typing import ClassVar

import numpy as np
import pytest

from datasets.base import BiasedDataset, Split
from datasets.bias_labels import exact_bias_labels
from datasets.cache import load_or_build


class Toy(BiasedDataset):
    name: ClassVar[str] = "toy"
    num_classes: ClassVar[int] = 2
    input_shape: ClassVar[tuple[int, int, int]] = (1, 2, 2)
    TRAIN_DEFAULTS: ClassVar[dict] = {}
    builds = 0

    def check_source(self, root):
        pass

    def generate(self, root, ratio):
        Toy.builds += 1
        rng = np.random.default_rng(int(self.options["data_seed"]))
        split = Split(rng.integers(0, 255, (8, 1, 2, 2), dtype=np.uint8), np.zeros(8, np.int64), np.zeros(8, np.int64))
        return {"train": split, "valid": split, "test": split}


def make(tmp_path, seed=0):
    return load_or_build(Toy({**Toy.OPTIONS, "data_seed": seed}), tmp_path, 0.1, tmp_path)


def test_second_load_uses_cache(tmp_path):
    Toy.builds = 0
    first = make(tmp_path)
    second = make(tmp_path)
    assert Toy.builds == 1
    assert first.fingerprint == second.fingerprint


def test_other_parameters_use_another_entry(tmp_path):
    Toy.builds = 0
    a = make(tmp_path, seed=0)
    b = make(tmp_path, seed=1)
    assert Toy.builds == 2
    assert a.fingerprint != b.fingerprint
    assert len(list(tmp_path.glob("toy-*.npz"))) == 2


def test_corrupt_file_is_rebuilt(tmp_path):
    Toy.builds = 0
    good = make(tmp_path)
    (npz,) = tmp_path.glob("toy-*.npz")
    npz.write_bytes(npz.read_bytes()[:100])
    with pytest.warns(UserWarning, match="rebuilding cache"):
        again = make(tmp_path)
    assert Toy.builds == 2
    assert again.fingerprint == good.fingerprint


def test_tampered_arrays_are_detected(tmp_path):
    Toy.builds = 0
    make(tmp_path)
    (npz,) = tmp_path.glob("toy-*.npz")
    with np.load(npz) as archive:
        arrays = dict(archive)
    arrays["train.images"] = arrays["train.images"] ^ 1
    np.savez(npz, **arrays)
    with pytest.warns(UserWarning, match="do not match"):
        make(tmp_path)
    assert Toy.builds == 2


def test_a_file_changed_after_a_checked_load_is_checked_again(tmp_path, monkeypatch):
    import datasets.cache as cache

    Toy.builds = 0
    make(tmp_path)
    hashed, real_hash = [], cache.arrays_hash
    monkeypatch.setattr(cache, "arrays_hash", lambda splits: hashed.append(1) or real_hash(splits))
    make(tmp_path)
    assert len(hashed) == 1, "a file changed less than SETTLED_NS ago is not remembered"
    time.sleep(cache.SETTLED_NS / 1e9)
    make(tmp_path)
    make(tmp_path)
    assert len(hashed) == 2, "a settled, unchanged file is hashed once per process"
    (npz,) = tmp_path.glob("toy-*.npz")
    with np.load(npz) as archive:
        arrays = dict(archive)
    arrays["valid.images"] = arrays["valid.images"] ^ 1
    np.savez(npz, **arrays)  # rewritten in place: the same inode and size
    with pytest.warns(UserWarning, match="do not match"):
        make(tmp_path)
    assert Toy.builds == 2


def test_stale_parameters_are_detected(tmp_path):
    Toy.builds = 0
    make(tmp_path)
    (meta,) = tmp_path.glob("toy-*.json")
    content = json.loads(meta.read_text())
    content["params"]["protocol_version"] = 0
    meta.write_text(json.dumps(content))
    with pytest.warns(UserWarning, match="parameters differ"):
        make(tmp_path)
    assert Toy.builds == 2


def test_a_stand_in_mnist_never_shares_the_genuine_cache_key(monkeypatch, tmp_path):
    from datasets import DATASETS
    from datasets.mnist import TEST_MD5_ENV

    monkeypatch.delenv(TEST_MD5_ENV, raising=False)
    for name in ("cmnist", "cmnist-lff"):
        spec = DATASETS[name](dict(DATASETS[name].OPTIONS))
        genuine = spec.generation_params(tmp_path, 0.01)
        assert "source_md5" not in genuine  # the genuine source keeps the keys it always had
        monkeypatch.setenv(TEST_MD5_ENV, json.dumps({"train-images-idx3-ubyte": "0" * 32}))
        assert spec.generation_params(tmp_path, 0.01)["source_md5"] == {"train-images-idx3-ubyte": "0" * 32}
        monkeypatch.delenv(TEST_MD5_ENV)


def class_sorted_split(per_class: int = 100, conflict: float = 0.1) -> Split:
    """A folder-built split: sorted by class, each class's biases in runs (exact per-class labels)."""
    targets = np.repeat(np.arange(10), per_class)
    biases = exact_bias_labels(targets, conflict, 10)
    return Split(np.arange(len(targets)).reshape(-1, 1, 1, 1), targets, biases)  # each image its position


def test_spread_keeps_every_class_and_the_bias_ratio_where_a_prefix_does_not():
    split = class_sorted_split()
    prefix, spread = split.head(200), split.spread(200)
    assert set(prefix.targets.tolist()) == {0, 1}  # a prefix of a class-sorted split: two classes
    counts = np.bincount(spread.targets, minlength=10)
    assert counts.min() >= 18 and counts.max() <= 22  # each class's 90 aligned samples give exactly 18
    assert np.mean(spread.biases != spread.targets) == pytest.approx(0.1, abs=0.02)
    assert len(set(spread.biases[spread.biases != spread.targets].tolist())) >= 8  # conflicts of many colours
    assert np.all(np.diff(spread.images.ravel()) > 0)  # in split order, no repeats
    assert split.spread(None) is split and split.spread(10_000) is split
    pairs = Split(np.arange(6).reshape(-1, 1, 1, 1), np.array([0, 0, 0, 1, 1, 1]), np.array([1, 1, 1, -1, -1, -1]))
    assert sorted(pairs.spread(2).targets.tolist()) == [0, 1]  # groups are pairs, whatever the labels' values


class SortedToy(Toy):
    name: ClassVar[str] = "sorted-toy"
    num_classes: ClassVar[int] = 10

    def generate(self, root, ratio):
        split = class_sorted_split(conflict=ratio)
        return {"train": split, "valid": split, "test": split}


def test_subset_options_spread_over_groups_unless_the_dataset_is_iid_in_order(tmp_path):
    spec = SortedToy({**SortedToy.OPTIONS, "train_size": 100, "eval_size": 50})
    data = load_or_build(spec, tmp_path, 0.1, tmp_path)
    assert np.bincount(data.train.targets, minlength=10).min() >= 9
    assert len(data.test) == 50 and len(set(data.test.targets.tolist())) == 10
    assert data.params["subset_rule"] == "spread"
    full = load_or_build(SortedToy(dict(SortedToy.OPTIONS)), tmp_path, 0.1, tmp_path)
    assert "subset_rule" not in full.params  # full splits keep their fingerprint
