"""Reading user images with clear errors, and converting between PIL and model tensors."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from egoframe.errors import InputError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def load_image(path: str | os.PathLike, notes: list[str] | None = None) -> Image.Image:
    """Open an image file as 8-bit RGB.

    Grayscale, palette, RGBA (composited on white) and 16-bit images are converted; each conversion
    is appended to ``notes`` (and logged) so the CLI can state it. Missing, empty or corrupt files raise
    :class:`InputError` with a one-line reason.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise InputError(f"image not found: {path}")
    if os.path.isdir(path):
        raise InputError(f"expected an image file, got a directory: {path}")
    if os.path.getsize(path) == 0:
        raise InputError(f"image file is empty: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            image = img.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: not a valid image file ({exc.__class__.__name__})") from None
    return to_rgb(image, name=os.path.basename(path), notes=notes)


def to_rgb(image: Image.Image, name: str = "image", notes: list[str] | None = None) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB, recording what was done."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit single channel: rescale the actual range to 0-255 instead of clipping.
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        out = Image.fromarray(arr, mode="L").convert("RGB")
        what = f"{mode} (high bit depth) converted to 8-bit RGB"
    elif mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        out = Image.alpha_composite(background, rgba).convert("RGB")
        what = f"{mode} with transparency composited on white and converted to RGB"
    else:
        out = image.convert("RGB")
        what = f"{mode} converted to RGB"
    _note(notes, f"{name}: {what}")
    return out


def fit_to_resolution(image: Image.Image, resolution: int, name: str = "image", notes: list[str] | None = None):
    """Resize to the model's square resolution (LEGO trains on square-resized frames, Sec. 4)."""
    if image.size != (resolution, resolution):
        _note(notes, f"{name}: resized from {image.size[0]}x{image.size[1]} to {resolution}x{resolution}")
        image = image.resize((resolution, resolution), Image.Resampling.BICUBIC)
    return image


def pil_to_tensor(images: Sequence[Image.Image]):
    """PIL RGB images -> float tensor (B, 3, H, W) in [-1, 1]."""
    import torch

    arr = np.stack([np.asarray(img, dtype=np.float32) for img in images])  # (B, H, W, 3)
    return torch.from_numpy(arr).permute(0, 3, 1, 2) / 127.5 - 1.0


def tensor_to_pil(images) -> list[Image.Image]:
    """Float tensor (B, 3, H, W) in [-1, 1] -> PIL RGB images (rounded, clipped)."""
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().to(dtype=__import__("torch").uint8)
    return [Image.fromarray(a.permute(1, 2, 0).numpy()) for a in arr]


def _note(notes: list[str] | None, message: str) -> None:
    logger.info(message)
    if notes is not None:
        notes.append(message)
