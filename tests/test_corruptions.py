"""CIFAR-10-C corruptions: golden values on a fixed input, plausible strength, determinism."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import datasets.corruptions as corruptions
from datasets.corruptions import CORRUPTION_TYPES, FrostImagesMissing, motion_blur_array

GOLDEN = Path(__file__).parent / "golden" / "corruptions.npz"
ALL = {name: f for table in CORRUPTION_TYPES.values() for name, f in table.items()}


def fixed_image() -> np.ndarray:
    """A deterministic 32x32 RGB test card: smooth gradients, an edge, a disk and mild texture."""
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float64)
    r = 40 + 5 * xx
    g = 60 + 4 * yy
    b = 200 - 3 * (xx + yy) / 2
    disk = (xx - 20) ** 2 + (yy - 12) ** 2 < 36
    r[disk], g[disk], b[disk] = 230, 40, 60
    g[:, :6] = 20
    texture = np.random.default_rng(0).integers(-6, 7, size=(32, 32, 3))
    return np.clip(np.stack([r, g, b], -1) + texture, 0, 255).astype(np.uint8)


def corrupted(name: str, level: int = 5) -> np.ndarray:
    return ALL[name](fixed_image(), np.random.default_rng(123), level)


def test_golden_values_per_corruption():
    outputs = {name: corrupted(name) for name in ALL}
    if os.environ.get("UPDATE_GOLDEN"):
        np.savez_compressed(GOLDEN, **outputs)
    with np.load(GOLDEN) as golden:
        assert sorted(golden.files) == sorted(ALL)
        for name, out in outputs.items():
            expected = golden[name]
            assert out.shape == expected.shape == (32, 32, 3) and out.dtype == np.uint8, name
            diff = np.abs(out.astype(int) - expected.astype(int))
            # Allow one grey level for float rounding in other library builds, on few pixels.
            assert diff.max() <= 1 and (diff == 0).mean() > 0.99, name


@pytest.mark.parametrize("name", sorted(ALL))
def test_corruption_strength_is_plausible(name):
    image = fixed_image()
    out = corrupted(name)
    change = np.abs(out.astype(float) - image).mean()
    if name == "original":
        assert change == 0
        return
    assert 1.0 < change < 90.0, (name, change)  # neither identity nor destruction
    assert out.std() > 5, name
    # Stronger Hendrycks levels never make the image closer to the original on average.
    weak = np.abs(corrupted(name, level=1).astype(float) - image).mean()
    assert weak <= change * 1.25 + 1, (name, weak, change)


@pytest.mark.parametrize("name", sorted(ALL))
def test_same_seed_same_image(name):
    assert np.array_equal(corrupted(name), corrupted(name))


def test_motion_blur_is_one_sided_along_the_angle():
    image = np.zeros((9, 9), dtype=np.uint8)
    image[4, 6] = 255
    out = motion_blur_array(image, radius=2, sigma=1.5, angle=0)
    assert out[4, 6] > 0 and out[4, 4] > 0 and out[4, 7] == 0  # smeared towards smaller x only
    assert np.all(out[:4] == 0) and np.all(out[5:] == 0)
    vertical = motion_blur_array(image, radius=2, sigma=1.5, angle=90)
    assert vertical[2, 6] > 0 and vertical[4, 5] == 0


def test_frost_without_the_images_says_how_to_install_them(monkeypatch):
    monkeypatch.setattr(corruptions.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FrostImagesMissing, match=r"pip install --no-deps imagecorruptions==1\.1\.2"):
        corruptions.frost_dir()
