"""Batched, on-device image augmentation with independent random parameters per sample.

Each transform draws its parameters from exactly the distribution of the torchvision transform it
replaces, then applies them to a whole (B, C, H, W) float batch with one ``grid_sample`` or a few
tensor ops. Differences from the authors' PIL path, documented here once: no uint8 rounding between
transforms, and resampling follows ``grid_sample`` (bilinear / nearest, ``align_corners=False``) rather
than PIL's kernels.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F


def _uniform(shape: tuple[int, ...], low: float, high: float, gen: torch.Generator,
             device: torch.device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=device) * (high - low) + low


def ieee_sqrt(x: torch.Tensor) -> torch.Tensor:
    """The square root as IEEE 754 rounds it: the same bits on every CPU.

    ``torch.sqrt`` of a CPU tensor calls MKL's vector square root, which refines the CPU's approximate
    reciprocal square root (``rsqrtps``, whose table differs between Intel and AMD): its float32 kernel is
    not correctly rounded (on this project's Intel Xeon, family 6, model 207, under portable numerics it
    gives other bits than IEEE for 2,831,466 of the 16,777,216 float32 inputs in [1, 4)), and its float64
    kernel, though within an ulp, takes the same approximation. On the CPU the root is numpy's (float16,
    float32 or float64), the ``sqrtps`` / ``sqrtpd`` instruction of a stock numpy build, which IEEE fixes to
    the correctly rounded result on every vendor. On another device the root is taken in float64 and
    rounded once to the input's dtype, which is exact for float32: the root of a float32 is never within a
    float64 ulp of a float32 rounding boundary (|x - m^2| is at least a 50-bit unit for any midpoint m)."""
    if x.device.type != "cpu":
        return torch.sqrt(x.double()).to(x.dtype)
    return torch.from_numpy(np.asarray(np.sqrt(x.detach().numpy())))


def resized_crop(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Crop per-sample boxes (top, left, height, width) in pixels and resize each back to the input
    size: bilinear, half-pixel centres, samples clamped to the box edge (torchvision's tensor
    ``resized_crop`` without antialiasing)."""
    _, _, height, width = x.shape
    top, left, h, w = boxes.to(x.dtype).unbind(1)

    def axis(start: torch.Tensor, extent: torch.Tensor, size: int) -> torch.Tensor:
        centres = torch.arange(size, device=x.device, dtype=x.dtype) + 0.5
        source = start[:, None] + centres * extent[:, None] / size - 0.5
        source = torch.minimum(torch.maximum(source, start[:, None]), (start + extent - 1)[:, None])
        return (source + 0.5) * 2 / size - 1

    gx = axis(left, w, width)[:, None, :].expand(-1, height, -1)
    gy = axis(top, h, height)[:, :, None].expand(-1, -1, width)
    grid = torch.stack([gx, gy], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def sample_crop_boxes(
    batch: int, height: int, width: int, gen: torch.Generator, device: torch.device,
    scale: tuple[float, float], ratio: tuple[float, float] = (3 / 4, 4 / 3), tries: int = 10,
    sqrt: Callable[[torch.Tensor], torch.Tensor] = torch.sqrt,
) -> torch.Tensor:
    """``RandomResizedCrop.get_params`` for a batch: up to ``tries`` draws of (area fraction, log-uniform
    aspect) per sample; the first box that fits is used, else the whole image (the fallback for a
    square input). Returns (B, 4) float boxes (top, left, height, width). The box sides are rounded square
    roots, so the last bit of ``sqrt`` decides a side where the root lies at a half pixel (``ieee_sqrt``)."""
    area = height * width * _uniform((batch, tries), *scale, gen, device)
    aspect = torch.exp(_uniform((batch, tries), math.log(ratio[0]), math.log(ratio[1]), gen, device))
    w = torch.round(sqrt(area * aspect))
    h = torch.round(sqrt(area / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    first = torch.argmax(fits.int(), dim=1, keepdim=True)
    any_fit = fits.any(dim=1)
    w = torch.where(any_fit, w.gather(1, first).squeeze(1), torch.full_like(area[:, 0], width))
    h = torch.where(any_fit, h.gather(1, first).squeeze(1), torch.full_like(area[:, 0], height))
    # Top-left corner uniform over the integer positions, as torch.randint(0, H - h + 1).
    top = torch.floor(torch.rand(batch, generator=gen, device=device) * (height - h + 1))
    left = torch.floor(torch.rand(batch, generator=gen, device=device) * (width - w + 1))
    return torch.stack([top, left, h, w], dim=1)


def rotation_grid(degrees: torch.Tensor, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    """The sampling grid of a rotation about the image centre, (B, H, W, 2) in ``grid_sample``'s
    normalised coordinates. For a square image it is what ``F.affine_grid`` gives for the rotation
    matrix, to within a unit in the last place. Built by broadcasting: ``affine_grid``'s batched matrix
    product took over a tenth of the CPU time of the cmnist augmentation."""
    angle = torch.deg2rad(degrees.to(dtype))
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)

    def centres(size: int) -> torch.Tensor:
        return torch.linspace(-1, 1, size, device=degrees.device, dtype=dtype) * ((size - 1) / size)

    xs, ys = centres(width).view(1, 1, width), centres(height).view(1, height, 1)
    # The rotation acts on pixel offsets from the centre; in normalised coordinates a non-square
    # image needs the aspect factors (exactly 1 for a square one).
    return torch.stack([xs * cos - ys * (sin * (height / width)), xs * (sin * (width / height)) + ys * cos], dim=-1)


def rotate(x: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate each image counter-clockwise by its angle about the centre (PIL ``Image.rotate``):
    same size, zero fill, nearest neighbour."""
    grid = rotation_grid(degrees.to(x.device), x.shape[2], x.shape[3], x.dtype)
    return F.grid_sample(x, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def _saturate(rgb: torch.Tensor, factor: torch.Tensor, dim: int) -> torch.Tensor:
    """Blend with the greyscale value by ``factor`` (broadcastable to ``rgb``), channels along ``dim``."""
    r, g, b = rgb.unbind(dim)
    gray = _grayscale(r, g, b).unsqueeze(dim)
    return (gray + factor * (rgb - gray)).clamp(0, 1)


def _grayscale(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma, the weights PIL uses for mode "L"."""
    return 0.299 * r + 0.587 * g + 0.114 * b


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend with the greyscale image by a per-sample factor (PIL ``ImageEnhance.Color``)."""
    return _saturate(x, factor.view(-1, 1, 1, 1), dim=1)


def _rotate_hue(r: torch.Tensor, g: torch.Tensor, b: torch.Tensor, shift: torch.Tensor, dim: int) -> torch.Tensor:
    """Hue rotation of pixels given as channel tensors of one shape, ``shift`` broadcastable to it;
    returns the three new channels stacked along a new dimension ``dim``. A grey pixel (max = min
    channel) keeps its value exactly under any shift.

    Hue is handled in sextants, h6 = 6 * hue in [0, 6); channel-wise max/min and ``floor`` replace
    ``max(dim=1)`` and ``%``, which are several times slower on the CPU."""
    maxc = torch.maximum(torch.maximum(r, g), b)
    delta = maxc - torch.minimum(torch.minimum(r, g), b)
    inverse = 1.0 / torch.where(delta > 0, delta, torch.ones_like(delta))
    # The first maximal channel decides, as in torchvision (red, then green, then blue); grey pixels
    # (delta = 0) get hue 0 from the red branch, whose numerator is then 0.
    red = r == maxc
    green = (g == maxc) & ~red
    h6 = torch.where(red, (g - b) * inverse, torch.where(green, (b - r) * inverse + 2, (r - g) * inverse + 4))
    h6 = h6 + 6 * shift
    h6 = (h6 - 6 * torch.floor(h6 / 6)).unsqueeze(dim)
    # HSV -> RGB: channel = v - c * clamp(min(k, 4 - k), 0, 1), k = (n + h6) mod 6, n = 5, 3, 1 for R, G, B.
    shape = [1] * h6.dim()
    shape[dim] = 3
    n = torch.tensor([5.0, 3.0, 1.0], device=r.device, dtype=r.dtype).view(shape)
    k = n + h6
    k = torch.where(k >= 6, k - 6, k)
    weight = torch.clamp(torch.minimum(k, 4 - k), 0, 1)
    return maxc.unsqueeze(dim) - delta.unsqueeze(dim) * weight


def adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate the hue by a per-sample fraction of the colour circle, keeping saturation and value."""
    r, g, b = x.unbind(dim=1)
    return _rotate_hue(r, g, b, shift.to(x.dtype).view(-1, 1, 1), dim=1)


def _jitter(rgb: torch.Tensor, factor: torch.Tensor, shift: torch.Tensor, saturation_first: torch.Tensor,
            dim: int) -> torch.Tensor:
    """Saturation then hue where ``saturation_first``, hue then saturation elsewhere; channels along
    ``dim``, per-pixel parameters broadcastable to one channel plane (``factor``, ``saturation_first``:
    to ``rgb``)."""
    rgb = torch.where(saturation_first, _saturate(rgb, factor, dim), rgb)
    rgb = _rotate_hue(*rgb.unbind(dim), shift, dim)
    return torch.where(saturation_first, rgb, _saturate(rgb, factor, dim))


def color_jitter(x: torch.Tensor, gen: torch.Generator, saturation: float, hue: float) -> torch.Tensor:
    """torchvision ``ColorJitter(saturation=s, hue=h)``: factor U[1-s, 1+s], shift U[-h, h], the two
    applied in a random order drawn per sample.

    Both leave a black pixel black. On the CPU only the other pixels are gathered and jittered -- about
    a fifth of a Colored MNIST image -- which gives exactly the dense result; other devices take the
    dense path, which has no host synchronisation."""
    batch = len(x)
    factor = _uniform((batch,), 1 - saturation, 1 + saturation, gen, x.device).to(x.dtype)
    shift = _uniform((batch,), -hue, hue, gen, x.device).to(x.dtype)
    saturation_first = torch.rand(batch, generator=gen, device=x.device) < 0.5
    if x.device.type != "cpu":
        return _jitter(x, factor.view(-1, 1, 1, 1), shift.view(-1, 1, 1), saturation_first.view(-1, 1, 1, 1), dim=1)
    pixels_per_image = x.shape[2] * x.shape[3]
    lit = x.amax(dim=1).flatten() > 0
    index = lit.nonzero().squeeze(1)
    sample = index // pixels_per_image
    planes = x.transpose(0, 1).reshape(3, -1)
    jittered = _jitter(planes.index_select(1, index), factor[sample], shift[sample], saturation_first[sample], dim=0)
    return planes.index_copy(1, index, jittered).view(x.shape[1], batch, *x.shape[2:]).transpose(0, 1).contiguous()


class PGDColoredMNISTAugmentation:
    """The PGD authors' cmnist train transform: RandomResizedCrop(28, scale=(0.9, 1.1)),
    ColorJitter(hue=0.05, saturation=0.05), RandomRotation(+-10 degrees, nearest), batched.

    ``exact_sqrt`` (the engine setting of that name, which the runner sets): the crop sides from
    ``ieee_sqrt`` instead of ``torch.sqrt``, so that every CPU draws the same boxes."""

    def __init__(self, exact_sqrt: bool = False):
        self.exact_sqrt = exact_sqrt

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        batch, _, height, width = x.shape
        sqrt = ieee_sqrt if self.exact_sqrt else torch.sqrt
        x = resized_crop(x, sample_crop_boxes(batch, height, width, gen, x.device, scale=(0.9, 1.1), sqrt=sqrt))
        x = color_jitter(x, gen, saturation=0.05, hue=0.05)
        return rotate(x, _uniform((batch,), -10.0, 10.0, gen, x.device))


class CropFlipAugmentation:
    """torchvision ``RandomCrop(size, padding=p)`` (zero padding) then ``RandomHorizontalFlip()``,
    per sample, batched: the LfF/DFA train transform for CIFAR10C and BFFHQ (before normalisation)."""

    def __init__(self, padding: int = 4):
        self.padding = padding

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        batch, channels, height, width = x.shape
        pad = self.padding
        padded = F.pad(x, (pad, pad, pad, pad))
        top = torch.randint(0, 2 * pad + 1, (batch,), generator=gen, device=x.device)
        left = torch.randint(0, 2 * pad + 1, (batch,), generator=gen, device=x.device)
        rows = (top[:, None] + torch.arange(height, device=x.device))[:, None, :, None]
        cols = (left[:, None] + torch.arange(width, device=x.device))[:, None, None, :]
        samples = torch.arange(batch, device=x.device)[:, None, None, None]
        chans = torch.arange(channels, device=x.device)[None, :, None, None]
        cropped = padded[samples, chans, rows, cols]
        flip = (torch.rand(batch, generator=gen, device=x.device) < 0.5).view(-1, 1, 1, 1)
        return torch.where(flip, cropped.flip(3), cropped)
