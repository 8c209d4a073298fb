"""The PGD Colored MNIST protocol: sizes, conflict fraction, colours, noise, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from datasets import DATASETS
from datasets.cache import load_or_build
from datasets.cmnist import COLORS, NOISE_STD, colorize, draw_bias_labels

CMNIST = DATASETS["cmnist"]


def build(data_root, cache_dir, ratio, **options):
    spec = CMNIST({**CMNIST.OPTIONS, **options})
    return load_or_build(spec, data_root, ratio, cache_dir)


@pytest.fixture(scope="module")
def cmnist_5pct(data_root, cache_dir):
    return build(data_root, cache_dir, 0.05)


def test_split_sizes_and_shapes(cmnist_5pct):
    assert cmnist_5pct.train.images.shape == (54_000, 3, 28, 28)
    assert cmnist_5pct.valid.images.shape == (6_000, 3, 28, 28)
    assert cmnist_5pct.test.images.shape == (10_000, 3, 28, 28)
    assert cmnist_5pct.train.images.dtype == np.uint8


def test_conflict_fraction_close_to_ratio(cmnist_5pct):
    for split, p in ((cmnist_5pct.train, 0.05), (cmnist_5pct.valid, 0.05), (cmnist_5pct.test, 0.9)):
        observed = np.mean(split.biases != split.targets)
        sigma = np.sqrt(p * (1 - p) / len(split))
        assert abs(observed - p) < 4 * sigma, (observed, p)


def test_conflicting_bias_labels_are_uniform_over_other_colours():
    rng = np.random.default_rng(0)
    targets = np.zeros(90_000, dtype=np.int64)
    biases = draw_bias_labels(targets, 1.0, rng)
    assert not np.any(biases == 0)
    counts = np.bincount(biases, minlength=10)[1:]
    assert np.all(np.abs(counts - 10_000) < 500)


def test_pixels_are_digit_times_colour_of_bias(cmnist_5pct, data_root):
    from datasets.mnist import load_mnist

    gray, _ = load_mnist(data_root, train=True)
    split = cmnist_5pct.train
    for i in range(0, 500, 7):
        # pixel = floor(gray * (colour + noise)), noise ~ N(0, 1e-4): within 1 grey level + 5 sigma.
        grey = gray[i][None].astype(np.float64)  # uint8 arithmetic would wrap around (215 * 5 = 51)
        expected = grey * COLORS[split.biases[i]][:, None, None]
        tolerance = 1.05 + grey * 5 * NOISE_STD
        assert np.all(np.abs(split.images[i] - expected) <= tolerance)


def test_colorize_truncates_like_to_pil_image():
    gray = np.full((1, 28, 28), 200, dtype=np.uint8)
    out = colorize(gray, np.array([3]), np.random.default_rng(0))
    expected = np.floor(np.clip(200 * (COLORS[3] + 0) / 255, 0, 1) * 255)
    np.testing.assert_allclose(out[0, :, 0, 0], expected, atol=1)


def test_same_seed_same_dataset_other_seed_other_dataset(data_root, tmp_path):
    a = build(data_root, tmp_path / "a", 0.01)
    b = build(data_root, tmp_path / "b", 0.01)
    c = build(data_root, tmp_path / "c", 0.01, data_seed=1)
    assert a.fingerprint == b.fingerprint
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.train.biases, b.train.biases)
    assert c.fingerprint != a.fingerprint
    assert not np.array_equal(c.train.biases, a.train.biases)


def test_test_split_is_shared_across_ratios(cmnist_5pct, data_root, cache_dir):
    other = build(data_root, cache_dir, 0.01)
    np.testing.assert_array_equal(other.test.images, cmnist_5pct.test.images)
    assert other.fingerprint != cmnist_5pct.fingerprint


def test_subset_options_take_prefixes_and_change_fingerprint(cmnist_5pct, data_root, cache_dir):
    small = build(data_root, cache_dir, 0.05, train_size=1000, eval_size=300)
    assert (len(small.train), len(small.valid), len(small.test)) == (1000, 300, 300)
    np.testing.assert_array_equal(small.train.images, cmnist_5pct.train.images[:1000])
    assert small.fingerprint != cmnist_5pct.fingerprint
