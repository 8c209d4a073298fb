"""Device-side augmentation: each primitive against torchvision, and the batch sampler's laws."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision.transforms import InterpolationMode

from datasets.augment import (
    PGDColoredMNISTAugmentation,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    resized_crop,
    rotate,
    rotation_grid,
    sample_crop_boxes,
)


@pytest.fixture
def images():
    return torch.rand(6, 3, 28, 28, generator=torch.Generator().manual_seed(0))


def test_rotate_matches_torchvision_nearest(images):
    angles = torch.tensor([7.0, -9.5, 3.0, 0.0, 10.0, -1.0])
    ref = torch.stack([TF.rotate(img, float(a), interpolation=InterpolationMode.NEAREST)
                       for img, a in zip(images, angles, strict=True)])
    torch.testing.assert_close(rotate(images, angles), ref)


def test_rotate_matches_torchvision_on_a_non_square_image():
    image = torch.rand(3, 21, 30, generator=torch.Generator().manual_seed(1))
    for angle in (12.5, -33.0, 77.0):
        ref = TF.rotate(image, angle, interpolation=InterpolationMode.NEAREST)
        torch.testing.assert_close(rotate(image[None], torch.tensor([angle]))[0], ref)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("height", "width"), [(28, 28), (27, 31), (1, 5)])
def test_rotation_grid_is_affine_grid_of_the_rotation(height, width, dtype):
    """The rotation matrix in pixel space, conjugated by the aspect ratio into normalised coordinates."""
    degrees = torch.rand(64, generator=torch.Generator().manual_seed(0)) * 360 - 180
    angle = torch.deg2rad(degrees.to(dtype))
    theta = torch.zeros(64, 2, 3, dtype=dtype)
    theta[:, 0, 0], theta[:, 0, 1] = angle.cos(), -angle.sin() * (height / width)
    theta[:, 1, 0], theta[:, 1, 1] = angle.sin() * (width / height), angle.cos()
    ref = F.affine_grid(theta, [64, 3, height, width], align_corners=False)
    ulp = torch.finfo(dtype).eps
    torch.testing.assert_close(rotation_grid(degrees, height, width, dtype), ref, rtol=0, atol=2 * ulp)


def test_resized_crop_matches_torchvision(images):
    boxes = torch.tensor([[1, 2, 24, 26], [0, 0, 28, 28], [3, 1, 25, 22], [2, 2, 20, 20],
                          [0, 4, 28, 24], [5, 0, 23, 28]], dtype=torch.float32)
    ref = torch.stack([TF.resized_crop(img, *(int(v) for v in box), [28, 28], antialias=False)
                       for img, box in zip(images, boxes, strict=True)])
    torch.testing.assert_close(resized_crop(images, boxes), ref, atol=1e-5, rtol=0)


def test_saturation_and_hue_match_torchvision(images):
    factors = torch.tensor([0.95, 1.05, 1.0, 0.0, 0.97, 1.02])
    shifts = torch.tensor([0.05, -0.05, 0.3, 0.0, -0.5, 0.01])
    sat_ref = torch.stack([TF.adjust_saturation(img, float(f)) for img, f in zip(images, factors, strict=True)])
    hue_ref = torch.stack([TF.adjust_hue(img, float(s)) for img, s in zip(images, shifts, strict=True)])
    torch.testing.assert_close(adjust_saturation(images, factors), sat_ref, atol=1e-4, rtol=0)
    torch.testing.assert_close(adjust_hue(images, shifts), hue_ref, atol=1e-5, rtol=0)


def test_hue_keeps_grey_and_black_pixels_exactly(images):
    grey = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(1)) < 0.7
    mixed = torch.where(grey, images[:, :1], images)
    mixed[:, :, :4] = 0
    shifts = torch.tensor([0.05, -0.05, 0.3, 0.0, -0.5, 0.01])
    ref = torch.stack([TF.adjust_hue(img, float(s)) for img, s in zip(mixed, shifts, strict=True)])
    out = adjust_hue(mixed, shifts)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    assert torch.equal(out[grey.expand_as(mixed)], mixed[grey.expand_as(mixed)])


def test_color_jitter_cpu_path_equals_the_dense_path(images):
    """On the CPU only non-black pixels are jittered, most of a Colored MNIST image being black; the
    output must be exactly the dense computation's, with the same random parameters."""
    mostly_black = images * (torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2)) < 0.25)
    grey = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(3)) < 0.2
    mostly_black = torch.where(grey, mostly_black[:, :1], mostly_black)
    out = color_jitter(mostly_black, torch.Generator().manual_seed(4), saturation=0.5, hue=0.5)
    gen = torch.Generator().manual_seed(4)
    factor = torch.rand(6, generator=gen) * 1.0 + 0.5
    shift = torch.rand(6, generator=gen) * 1.0 - 0.5
    saturation_first = (torch.rand(6, generator=gen) < 0.5).view(-1, 1, 1, 1)
    dense = torch.where(saturation_first, adjust_saturation(mostly_black, factor), mostly_black)
    dense = adjust_hue(dense, shift)
    dense = torch.where(saturation_first, dense, adjust_saturation(dense, factor))
    assert saturation_first.any() and not saturation_first.all()
    assert torch.equal(out, dense)
    assert not torch.equal(out, mostly_black)


def test_crop_boxes_follow_random_resized_crop_law():
    gen = torch.Generator().manual_seed(1)
    boxes = sample_crop_boxes(20_000, 28, 28, gen, torch.device("cpu"), scale=(0.9, 1.1))
    top, left, h, w = boxes.unbind(1)
    assert torch.all((h <= 28) & (w <= 28) & (top >= 0) & (left >= 0))
    assert torch.all(top + h <= 28) and torch.all(left + w <= 28)
    area = h * w / 784
    assert area.min() >= 0.85 and area.max() <= 1.0
    ratio = w / h
    assert ratio.min() >= 0.70 and ratio.max() <= 1.45
    # Draws that never fit fall back to the whole image; most samples must not be identical.
    full = ((h == 28) & (w == 28)).float().mean()
    assert 0.0 < full < 0.5


def test_crop_sampler_reproduces_torchvision_get_params_statistics():
    """Same law as torchvision's RandomResizedCrop.get_params: compare the mean box size."""
    from torchvision.transforms import RandomResizedCrop

    torch.manual_seed(0)
    image = torch.zeros(3, 28, 28)
    ref = torch.tensor([RandomResizedCrop.get_params(image, [0.9, 1.1], [3 / 4, 4 / 3])[2:] for _ in range(4000)],
                       dtype=torch.float32)
    ours = sample_crop_boxes(4000, 28, 28, torch.Generator().manual_seed(0), torch.device("cpu"),
                             scale=(0.9, 1.1))[:, 2:]
    assert torch.allclose(ours.mean(0), ref.mean(0), atol=0.15)
    assert torch.allclose(ours.std(0), ref.std(0), atol=0.15)


def test_batch_augmentation_is_per_sample_and_seeded(images):
    same = images[:1].expand(16, -1, -1, -1).contiguous()
    aug = PGDColoredMNISTAugmentation()
    out1 = aug(same, torch.Generator().manual_seed(3))
    out2 = aug(same, torch.Generator().manual_seed(3))
    torch.testing.assert_close(out1, out2)
    distinct = {tuple(o.flatten()[:200].tolist()) for o in out1}
    assert len(distinct) == 16, "every sample must get its own random parameters"
    assert out1.shape == same.shape and out1.min() >= 0 and out1.max() <= 1


def test_identity_parameters_leave_images_unchanged(images):
    torch.testing.assert_close(rotate(images, torch.zeros(6)), images)
    full = torch.tensor([[0, 0, 28, 28]] * 6, dtype=torch.float32)
    torch.testing.assert_close(resized_crop(images, full), images)
    torch.testing.assert_close(adjust_hue(images, torch.ones(6)), images, atol=1e-5, rtol=0)
    assert math.isclose(float(adjust_saturation(images, torch.ones(6)).sub(images).abs().max()), 0, abs_tol=1e-6)
