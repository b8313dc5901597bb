"""The one value-range convention of every egoframe metric.

An image given to a metric is an ``(H, W, 3)`` RGB array (or a PIL image, or a path) that is either

- ``uint8`` in 0..255, converted with ``x / 255``; or
- floating point already in [0, 1] (float16/32/64), used as is.

Anything else is refused: a float array outside [0, 1] (a [-1, 1] model output, a 0..255 float array)
raises :class:`InputError` instead of being min-max normalised, since silent rescaling hides errors
(REFERENCE.md, "Metric pitfalls"). Internally every metric works on float64 in [0, 1], so a uint8 image and
its ``/255`` float copy score identically.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
from PIL import Image

from egoframe.errors import InputError
from egoframe.utils.images import load_image, to_rgb

ImageLike = Union[np.ndarray, Image.Image, str, os.PathLike]

# Float inputs may carry rounding noise from a previous conversion; anything beyond this is a range error.
_RANGE_TOLERANCE = 1e-6


def to_float01(image: ImageLike, name: str = "image") -> np.ndarray:
    """Any accepted image -> float64 ``(H, W, 3)`` in [0, 1] (see the module docstring for the rules)."""
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        if image.mode != "RGB":
            image = to_rgb(image, name=name)
        return np.asarray(image, dtype=np.float64) / 255.0
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise InputError(f"{name}: expected an (H, W, 3) RGB array, got shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"{name}: expected uint8 (0..255) or float in [0, 1], got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name}: contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < -_RANGE_TOLERANCE or high > 1.0 + _RANGE_TOLERANCE:
        raise InputError(f"{name}: float image values span [{low:.3g}, {high:.3g}]; metrics take floats in [0, 1] "
                         "or uint8 0..255 (convert [-1, 1] outputs with (x + 1) / 2)")
    return np.clip(array, 0.0, 1.0)


def to_pil(image: ImageLike, name: str = "image") -> Image.Image:
    """Any accepted image -> 8-bit RGB PIL image (floats are rounded, not truncated)."""
    if isinstance(image, Image.Image) and image.mode == "RGB":
        return image
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3:
        return Image.fromarray(image)
    return Image.fromarray(np.round(to_float01(image, name) * 255.0).astype(np.uint8))


def match_size(image: np.ndarray, size: tuple[int, int], notes: list[str] | None = None,
               name: str = "image") -> np.ndarray:
    """Resize a float [0, 1] image to ``size`` = (H, W) with PIL bicubic on float32 data (no 8-bit rounding)."""
    if image.shape[:2] == tuple(size):
        return image
    if notes is not None:
        notes.append(f"{name}: resized from {image.shape[1]}x{image.shape[0]} to {size[1]}x{size[0]} (bicubic)")
    channels = [Image.fromarray(image[..., c].astype(np.float32), mode="F").resize((size[1], size[0]),
                                                                                    Image.Resampling.BICUBIC)
                for c in range(image.shape[-1])]
    return np.clip(np.stack([np.asarray(c, dtype=np.float64) for c in channels], axis=-1), 0.0, 1.0)


def center_square(image: Image.Image) -> Image.Image:
    """The largest centred square crop of a PIL image."""
    width, height = image.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return image.crop((left, top, left + side, top + side))
