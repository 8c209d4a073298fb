"""CIFAR-10-C corruptions with Hendrycks' CIFAR parameters (hendrycks/robustness,
``make_cifar_c.py``, Apache-2.0), reimplemented for current numpy / scipy / scikit-image / OpenCV / PIL.

Each corruption maps a (32, 32, 3) uint8 RGB image and a ``numpy.random.Generator`` to a uint8 image, at a
Hendrycks level 1..5 (LfF's "severity s" is level s + 1). Differences from the original code, on purpose:
- every random draw comes from the given generator, so the same seed gives the same image;
- ImageMagick's motion blur (used by Motion Blur and Snow) is replaced by a numpy port: a one-sided
  Gaussian kernel of width 2 * ceil(radius) + 1 along the angle, edge clamping, floor quantisation
  (matches ImageMagick on > 99.6 % of pixels, at most 1 grey level apart);
- API updates only: ``channel_axis`` for scikit-image's removed ``multichannel``, no ``np.float_``.
Frost overlays the frost photographs of the ``imagecorruptions==1.1.2`` wheel, read as files.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from functools import cache
from io import BytesIO
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from skimage.color import hsv2rgb, rgb2hsv
from skimage.filters import gaussian
from skimage.util import random_noise

SIZE = 32
Corruption = Callable[[np.ndarray, np.random.Generator, int], np.ndarray]


class FrostImagesMissing(RuntimeError):
    pass


def _unit(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float64) / 255.0


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """As the original's ``np.uint8(corruption(img))``: truncation of values already in [0, 255]."""
    return np.uint8(np.clip(x, 0, 255))


def clipped_zoom(img: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre by ``factor`` (bilinear) and crop back to the input size."""
    # scipy.ndimage is imported where used (here and in elastic): 0.4 s of every process's start-up.
    from scipy.ndimage import zoom as scipy_zoom
    h = img.shape[0]
    ch = int(np.ceil(h / factor))
    top = (h - ch) // 2
    zoomed = scipy_zoom(img[top : top + ch, top : top + ch], (factor, factor, 1), order=1)
    trim = (zoomed.shape[0] - h) // 2
    return zoomed[trim : trim + h, trim : trim + h]


def plasma_fractal(rng: np.random.Generator, mapsize: int = 32, wibbledecay: float = 3) -> np.ndarray:
    """Diamond-square height map in [0, 1], (mapsize, mapsize)."""
    grid = np.zeros((mapsize, mapsize))
    step = mapsize
    wibble = 100.0

    def wibbled_mean(array: np.ndarray) -> np.ndarray:
        return array / 4 + wibble * rng.uniform(-wibble, wibble, array.shape)

    while step >= 2:
        half = step // 2
        corners = grid[0:mapsize:step, 0:mapsize:step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        grid[half:mapsize:step, half:mapsize:step] = wibbled_mean(square)
        centres = grid[half:mapsize:step, half:mapsize:step]
        corners = grid[0:mapsize:step, 0:mapsize:step]
        left = centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1)
        grid[0:mapsize:step, half:mapsize:step] = wibbled_mean(left)
        top = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0)
        grid[half:mapsize:step, 0:mapsize:step] = wibbled_mean(top)
        step //= 2
        wibble /= wibbledecay
    grid -= grid.min()
    return grid / grid.max()


def motion_blur_array(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """ImageMagick's MotionBlurImage on a uint8 (H, W) or (H, W, C) array, returning uint8."""
    width = int(2 * math.ceil(radius) + 1)
    taps = np.arange(width, dtype=np.float64)
    kernel = np.exp(-(taps**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    theta = math.radians(angle)
    dx = np.ceil(taps * math.cos(theta) - 0.5).astype(int)
    dy = np.ceil(taps * math.sin(theta) - 0.5).astype(int)
    h, w = image.shape[:2]
    rows = np.clip(np.arange(h)[None, :, None] + dy[:, None, None], 0, h - 1)
    cols = np.clip(np.arange(w)[None, None, :] + dx[:, None, None], 0, w - 1)
    samples = image.astype(np.float64)[rows, cols]  # (width, H, W[, C])
    blurred = np.tensordot(kernel, samples, axes=(0, 0))
    return np.floor(blurred + 1e-9).clip(0, 255).astype(np.uint8)


def _disk(radius: float, alias_blur: float) -> np.ndarray:
    span = np.arange(-8, 9) if radius <= 8 else np.arange(-radius, radius + 1)
    ksize = (3, 3) if radius <= 8 else (5, 5)
    xx, yy = np.meshgrid(span, span)
    disk = ((xx**2 + yy**2) <= radius**2).astype(np.float32)
    disk /= disk.sum()
    return cv2.GaussianBlur(disk, ksize=ksize, sigmaX=alias_blur)


def frost_dir() -> Path:
    spec = importlib.util.find_spec("imagecorruptions")  # locates the package without importing it
    folder = Path(next(iter(spec.submodule_search_locations))) / "frost" if spec else None
    if folder is None or not (folder / "frost1.png").is_file():
        raise FrostImagesMissing(
            "the Frost corruption needs the frost images of imagecorruptions==1.1.2: "
            "run `pip install --no-deps imagecorruptions==1.1.2` (make bench/test does)"
        )
    return folder


@cache
def _frost_images() -> tuple[np.ndarray, ...]:
    folder = frost_dir()
    names = ["frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg"]
    images = []
    for name in names:
        bgr = cv2.imread(str(folder / name))
        images.append(cv2.resize(bgr, (0, 0), fx=0.2, fy=0.2)[..., ::-1])  # to RGB
    return tuple(images)


# ---------------------------------------------------------------- Type0 corruptions (LfF's default)


def snow(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    loc, scale, zoom, threshold, radius, sigma, blend = [
        (0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9), (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
        (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85), (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
    ][level - 1]
    image = np.asarray(x, dtype=np.float32) / 255.0
    layer = rng.normal(loc=loc, scale=scale, size=image.shape[:2])
    layer = clipped_zoom(layer[..., None], zoom)
    layer[layer < threshold] = 0
    layer8 = (np.clip(layer.squeeze(), 0, 1) * 255).astype(np.uint8)
    layer = motion_blur_array(layer8, radius, sigma, rng.uniform(-135, -45))[..., None] / 255.0
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).reshape(SIZE, SIZE, 1)
    image = blend * image + (1 - blend) * np.maximum(image, gray * 1.5 + 0.5)
    return _to_uint8(np.clip(image + layer + np.rot90(layer, k=2), 0, 1) * 255)


def frost(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    weight, frost_weight = [(1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)][level - 1]
    overlay = _frost_images()[rng.integers(5)]  # the original draws randint(5): frost6 is never used
    top = rng.integers(0, overlay.shape[0] - SIZE)
    left = rng.integers(0, overlay.shape[1] - SIZE)
    crop = overlay[top : top + SIZE, left : left + SIZE]
    return _to_uint8(weight * np.asarray(x, dtype=np.float64) + frost_weight * crop)


def fog(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    strength, decay = [(0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)][level - 1]
    image = _unit(x)
    peak = image.max()
    image = image + strength * plasma_fractal(rng, wibbledecay=decay)[:SIZE, :SIZE][..., None]
    return _to_uint8(np.clip(image * peak / (peak + strength), 0, 1) * 255)


def brightness(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    shift = [0.05, 0.1, 0.15, 0.2, 0.3][level - 1]
    hsv = rgb2hsv(_unit(x))
    hsv[:, :, 2] = np.clip(hsv[:, :, 2] + shift, 0, 1)
    return _to_uint8(np.clip(hsv2rgb(hsv), 0, 1) * 255)


def contrast(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    factor = [0.75, 0.5, 0.4, 0.3, 0.15][level - 1]
    image = _unit(x)
    means = image.mean(axis=(0, 1), keepdims=True)
    return _to_uint8(np.clip((image - means) * factor + means, 0, 1) * 255)


def spatter(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    loc, scale, sigma, threshold, intensity, mud = [
        (0.62, 0.1, 0.7, 0.7, 0.5, 0), (0.65, 0.1, 0.8, 0.7, 0.5, 0), (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1), (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ][level - 1]
    image = np.asarray(x, dtype=np.float32) / 255.0
    liquid = gaussian(rng.normal(size=image.shape[:2], loc=loc, scale=scale), sigma=sigma)
    liquid[liquid < threshold] = 0
    if not mud:  # water drops, pale turquoise
        liquid8 = (liquid * 255).astype(np.uint8)
        dist = cv2.distanceTransform(255 - cv2.Canny(liquid8, 50, 150), cv2.DIST_L2, 5)
        _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
        dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
        ridge = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]])
        dist = cv2.blur(cv2.filter2D(dist, cv2.CV_8U, ridge), (3, 3)).astype(np.float32)
        mask = cv2.cvtColor((liquid8 * dist).astype(np.float32), cv2.COLOR_GRAY2BGRA)
        mask /= np.max(mask, axis=(0, 1))
        mask *= intensity
        color = np.concatenate([np.full_like(mask[..., :1], v / 255.0) for v in (175, 238, 238)], axis=2)
        color = cv2.cvtColor(color, cv2.COLOR_BGR2BGRA)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2BGRA)
        return _to_uint8(cv2.cvtColor(np.clip(image + mask * color, 0, 1), cv2.COLOR_BGRA2BGR) * 255)
    mask = gaussian(np.where(liquid > threshold, 1.0, 0.0).astype(np.float32), sigma=intensity)
    mask[mask < 0.8] = 0
    brown = np.array([63, 42, 20], dtype=np.float32) / 255.0
    image = image * (1 - mask[..., None]) + brown * mask[..., None]
    return _to_uint8(np.clip(image, 0, 1) * 255)


def elastic(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    from scipy.ndimage import map_coordinates
    alpha, sigma, affine = [
        (0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03),
    ][level - 1]
    alpha, sigma, affine = alpha * SIZE, sigma * SIZE, affine * SIZE
    image = np.asarray(x, dtype=np.float32) / 255.0
    centre = np.float32((SIZE, SIZE)) // 2
    half = SIZE // 3
    src = np.float32([centre + half, [centre[0] + half, centre[1] - half], centre - half])
    dst = src + rng.uniform(-affine, affine, size=src.shape).astype(np.float32)
    image = cv2.warpAffine(image, cv2.getAffineTransform(src, dst), (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT_101)
    dx = (gaussian(rng.uniform(-1, 1, size=(SIZE, SIZE)), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    dy = (gaussian(rng.uniform(-1, 1, size=(SIZE, SIZE)), sigma, mode="reflect", truncate=3) * alpha).astype(np.float32)
    cols, rows, chans = np.meshgrid(np.arange(SIZE), np.arange(SIZE), np.arange(3))
    coords = (rows + dy[..., None]).reshape(1, -1), (cols + dx[..., None]).reshape(1, -1), chans.reshape(1, -1)
    warped = map_coordinates(image, np.concatenate(coords), order=1, mode="reflect").reshape(image.shape)
    return _to_uint8(np.clip(warped, 0, 1) * 255)


def jpeg(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    quality = [80, 65, 58, 50, 40][level - 1]
    buffer = BytesIO()
    Image.fromarray(x).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


def pixelate(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    factor = [0.95, 0.9, 0.85, 0.75, 0.65][level - 1]
    small = int(SIZE * factor)
    image = Image.fromarray(x).resize((small, small), Image.BOX).resize((SIZE, SIZE), Image.BOX)
    return np.asarray(image)


def saturate(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    scale, shift = [(0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)][level - 1]
    hsv = rgb2hsv(_unit(x))
    hsv[:, :, 1] = np.clip(hsv[:, :, 1] * scale + shift, 0, 1)
    return _to_uint8(np.clip(hsv2rgb(hsv), 0, 1) * 255)


# ---------------------------------------------------------------- Type1 corruptions


def gaussian_noise(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    scale = [0.04, 0.06, 0.08, 0.09, 0.10][level - 1]
    image = _unit(x)
    return _to_uint8(np.clip(image + rng.normal(size=image.shape, scale=scale), 0, 1) * 255)


def shot_noise(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    photons = [500, 250, 100, 75, 50][level - 1]
    return _to_uint8(np.clip(rng.poisson(_unit(x) * photons) / photons, 0, 1) * 255)


def impulse_noise(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    amount = [0.01, 0.02, 0.03, 0.05, 0.07][level - 1]
    return _to_uint8(np.clip(random_noise(_unit(x), mode="s&p", amount=amount, rng=rng), 0, 1) * 255)


def speckle_noise(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    scale = [0.06, 0.1, 0.12, 0.16, 0.2][level - 1]
    image = _unit(x)
    return _to_uint8(np.clip(image + image * rng.normal(size=image.shape, scale=scale), 0, 1) * 255)


def gaussian_blur(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    sigma = [0.4, 0.6, 0.7, 0.8, 1][level - 1]
    return _to_uint8(np.clip(gaussian(_unit(x), sigma=sigma, channel_axis=-1), 0, 1) * 255)


def defocus_blur(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    radius, alias = [(0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)][level - 1]
    image = _unit(x)
    kernel = _disk(radius, alias)
    channels = np.stack([cv2.filter2D(image[:, :, d], -1, kernel) for d in range(3)], axis=-1)
    return _to_uint8(np.clip(channels, 0, 1) * 255)


def glass_blur(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    sigma, delta, iterations = [(0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)][level - 1]
    image = np.uint8(gaussian(_unit(x), sigma=sigma, channel_axis=-1) * 255)
    # "Locally shuffle pixels", bottom-right to top-left. The original's tuple swap of numpy views,
    # x[h, w], x[h', w'] = x[h', w'], x[h, w], only copies x[h', w'] into x[h, w] (the second
    # assignment reads the already overwritten pixel); CIFAR-10-C was made that way, so we copy too.
    for _ in range(iterations):
        for h in range(SIZE - delta, delta, -1):
            for w in range(SIZE - delta, delta, -1):
                dx, dy = rng.integers(-delta, delta, size=2)
                image[h, w] = image[h + dy, w + dx]
    return _to_uint8(np.clip(gaussian(image / 255.0, sigma=sigma, channel_axis=-1), 0, 1) * 255)


def motion_blur(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    radius, sigma = [(6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)][level - 1]
    return motion_blur_array(np.asarray(x), radius, sigma, rng.uniform(-45, 45))


def zoom_blur(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    top = [1.06, 1.11, 1.16, 1.21, 1.26][level - 1]
    image = (np.asarray(x) / 255.0).astype(np.float32)
    zoomed = sum(clipped_zoom(image, factor) for factor in np.arange(1, top, 0.01))
    count = len(np.arange(1, top, 0.01))
    return _to_uint8(np.clip((image + zoomed) / (count + 1), 0, 1) * 255)


def original(x: np.ndarray, rng: np.random.Generator, level: int) -> np.ndarray:
    return np.asarray(x).copy()


# Bias label = position in the list (LfF's order).
TYPE0: dict[str, Corruption] = {
    "snow": snow, "frost": frost, "fog": fog, "brightness": brightness, "contrast": contrast,
    "spatter": spatter, "elastic": elastic, "jpeg": jpeg, "pixelate": pixelate, "saturate": saturate,
}
TYPE1: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise, "shot_noise": shot_noise, "impulse_noise": impulse_noise,
    "speckle_noise": speckle_noise, "gaussian_blur": gaussian_blur, "defocus_blur": defocus_blur,
    "glass_blur": glass_blur, "motion_blur": motion_blur, "zoom_blur": zoom_blur, "original": original,
}
CORRUPTION_TYPES = {"type0": TYPE0, "type1": TYPE1}
