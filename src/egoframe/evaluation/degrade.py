"""Image degradations a person still reads through, and garbage frames nobody can read.

The oracle is trained on them (so that soft, noisy or shifted generator output is read for what it shows)
and tested against them (issue 17, item 3): mild degradations must not change what it reads, garbage must
never pass as an action carried out. Every function takes and returns a uint8 ``(H, W, 3)`` array.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter


def _check(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    return image


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur with standard deviation ``sigma`` pixels (PIL's radius is the standard deviation)."""
    image = _check(image)
    if sigma <= 0:
        return image.copy()
    return np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=float(sigma))))


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """A JPEG round trip at ``quality`` (1-95), 4:2:0 chroma as most encoders write it."""
    buf = io.BytesIO()
    Image.fromarray(_check(image)).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    return np.asarray(Image.open(buf).convert("RGB"))


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian pixel noise; ``sigma`` is in [0, 1] image units (0.02 = 5 grey levels)."""
    image = _check(image).astype(np.float32)
    noisy = image + rng.normal(0.0, sigma * 255.0, size=image.shape).astype(np.float32)
    return np.clip(noisy + 0.5, 0, 255).astype(np.uint8)


def shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """Translate by whole pixels (right/down positive); the uncovered border repeats the edge pixels."""
    image = _check(image)
    h, w = image.shape[:2]
    pad = max(abs(dx), abs(dy))
    if pad == 0:
        return image.copy()
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    return padded[pad - dy:pad - dy + h, pad - dx:pad - dx + w].copy()


def resample(image: np.ndarray, size: int) -> np.ndarray:
    """Down (or up) to ``size`` and back with bicubic resampling: a generator working at another size."""
    image = _check(image)
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC))


def random_degradation(image: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """A random mix of the degradations above, each drawn at most as strong as ``strength`` times the
    issue's "still readable" bounds (blur sigma 1.2 px, JPEG quality >= 50, noise 0.03, shifts of 2 px,
    a round trip through half the size)."""
    image = _check(image)
    if rng.random() < 0.25 * strength:
        image = resample(image, max(16, image.shape[0] // 2))
    if rng.random() < 0.5 * strength:
        image = gaussian_blur(image, float(rng.uniform(0.2, 1.2 * strength)))
    if rng.random() < 0.4 * strength:
        image = shift(image, int(rng.integers(-2, 3)), int(rng.integers(-2, 3)))
    if rng.random() < 0.4 * strength:
        image = jpeg(image, int(rng.integers(50, 96)))
    if rng.random() < 0.5 * strength:
        image = add_noise(image, float(rng.uniform(0.0, 0.03 * strength)), rng)
    return image


def garbage(rng: np.random.Generator, resolution: int, like: np.ndarray | None = None) -> np.ndarray:
    """A frame that shows no kitchen: noise, a flat colour, blobs, or ``like`` cut into shuffled tiles."""
    kind = int(rng.integers(0, 5 if like is not None else 4))
    r = resolution
    if kind == 0:  # pure noise, per pixel or smoothed
        image = rng.integers(0, 256, size=(r, r, 3), dtype=np.uint8)
        return gaussian_blur(image, float(rng.uniform(0.0, 2.0))) if rng.random() < 0.5 else image
    if kind == 1:  # one flat colour (grey most often)
        value = rng.integers(0, 256, size=3) if rng.random() < 0.5 else np.full(3, rng.integers(0, 256))
        return np.broadcast_to(value.astype(np.uint8), (r, r, 3)).copy()
    if kind == 2:  # random coloured discs on a flat background
        image = np.empty((r, r, 3), np.float32)
        image[:] = rng.integers(0, 256, size=3)
        yy, xx = np.mgrid[0:r, 0:r]
        for _ in range(int(rng.integers(3, 15))):
            cx, cy, rad = rng.uniform(0, r), rng.uniform(0, r), rng.uniform(r * 0.03, r * 0.2)
            image[(xx - cx) ** 2 + (yy - cy) ** 2 < rad ** 2] = rng.integers(0, 256, size=3)
        return image.astype(np.uint8)
    if kind == 3:  # horizontal colour bands (a wall-counter-cabinet look without the kitchen)
        rows = np.repeat(rng.integers(0, 256, size=(int(rng.integers(2, 6)), 3)), r, axis=0)
        rows = np.asarray(Image.fromarray(rows[:, None, :].astype(np.uint8)).resize((1, r)))[:, 0]
        return np.broadcast_to(rows[:, None, :], (r, r, 3)).copy()
    # a real frame cut into 4x4 tiles in random order: kitchen colours, no kitchen
    like = _check(like)
    if like.shape[:2] != (r, r):
        like = np.asarray(Image.fromarray(like).resize((r, r), Image.Resampling.BICUBIC))
    t = r // 4
    tiles = [like[i * t:(i + 1) * t, j * t:(j + 1) * t] for i in range(4) for j in range(4)]
    order = rng.permutation(16)
    out = like.copy()
    for k, src in enumerate(order):
        i, j = divmod(k, 4)
        out[i * t:(i + 1) * t, j * t:(j + 1) * t] = tiles[src]
    return out


__all__ = ["add_noise", "garbage", "gaussian_blur", "jpeg", "random_degradation", "resample", "shift"]
