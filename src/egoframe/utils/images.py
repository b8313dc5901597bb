"""Reading user images with clear errors, and converting between PIL and model tensors."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from egoframe.errors import ImageTooLargeError, InputError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# Lossy formats are written near-losslessly: a generated frame is usually measured afterwards.
SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


def load_image(path: str | os.PathLike, notes: list[str] | None = None) -> Image.Image:
    """Open an image file as 8-bit RGB.

    Grayscale, palette, RGBA (composited on white) and 16-bit images are converted; each conversion
    is appended to ``notes`` (and logged) so the CLI can state it. Missing, empty or corrupt files raise
    :class:`InputError` with a one-line reason; one over Pillow's decompression-bomb limit raises
    :class:`ImageTooLargeError` (its size and the limit) before any pixel is decoded.
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
    except Image.DecompressionBombError as exc:
        raise ImageTooLargeError(_too_large_message(path, exc)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: not a valid image file ({exc.__class__.__name__})") from None
    return to_rgb(image, name=os.path.basename(path), notes=notes)


def _too_large_message(path: str, exc: Exception) -> str:
    # Pillow refuses above 2 x MAX_IMAGE_PIXELS (it only warns above MAX_IMAGE_PIXELS); its message holds both
    # numbers, and the width and height are not kept anywhere once it has refused.
    found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+) pixels", str(exc))
    pixels, limit = (int(found[1]), int(found[2])) if found else (None, 2 * (Image.MAX_IMAGE_PIXELS or 0))
    size = f"{pixels:,} pixels" if pixels is not None else "larger"
    return (f"image {path} is too large to read safely: {size}, over Pillow's decompression-bomb limit of "
            f"{limit:,} pixels (downscale it, or raise PIL.Image.MAX_IMAGE_PIXELS for a file you trust)")


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


def output_format(path: str | os.PathLike) -> str:
    """The Pillow format that an output file's extension names (``.jpg`` -> JPEG); InputError for none."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    fmt = Image.registered_extensions().get(suffix) if suffix in IMAGE_EXTENSIONS else None
    if fmt is None or fmt not in Image.SAVE:
        why = f"{suffix!r} is not an image extension egoframe writes" if suffix else "the name has no extension"
        raise InputError(f"cannot write {os.fspath(path)}: {why}; end it in one of {', '.join(IMAGE_EXTENSIONS)}")
    return fmt


def check_output_paths(paths: Iterable[str | os.PathLike]) -> None:
    """Refuse, before any work is done, an output that :func:`save_image` could not write.

    Checks the extension, that no parent is a file, and that the nearest existing folder takes new files
    (read-only mounts, ``/sys``, missing permission or an immutable folder fail here, by creating and
    removing a probe file: ``os.access`` says yes to root for all of them). Leaves nothing behind.
    """
    probed: set[Path] = set()
    for path in map(Path, paths):
        output_format(path)
        try:
            folder = _nearest_folder(path)
        except OSError as exc:  # stat() below a folder we may not enter
            raise InputError(f"cannot write {path}: {exc.strerror or exc} ({exc.filename})") from None
        if folder in probed:
            continue
        try:
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".egoframe-write-check-")
        except OSError as exc:
            raise InputError(f"cannot write {path}: folder {folder} is not writable ({exc.strerror or exc})") from None
        os.close(fd)
        os.unlink(probe)
        probed.add(folder)


def _nearest_folder(path: Path) -> Path:
    """The existing folder that ``path`` would be written under; the folders between are made by save_image."""
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder")
    folder = path.absolute().parent
    while not folder.is_dir():
        if folder.exists() or folder.is_symlink():
            raise InputError(f"cannot write {path}: {folder} exists and is not a folder")
        folder = folder.parent
    return folder


def save_image(image: Image.Image, path: str | os.PathLike) -> None:
    """Write ``image`` in the format its extension names, atomically: a failed or killed write leaves no file."""
    path = os.fspath(path)
    fmt = output_format(path)
    tmp = f"{path}.tmp"
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        image.save(tmp, format=fmt, **SAVE_OPTIONS.get(fmt, {}))
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise InputError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


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


def image_grid(rows: list[tuple[str, list]], columns: list[str], path: str, cell: int = 128) -> str:
    """A picture of ``rows`` (each: a label written above the row, and one image path or PIL image per column),
    with the column names on top; every image is shown at ``cell`` px (nearest-neighbour, so pixels stay
    visible). Returns ``path``."""
    from PIL import Image, ImageDraw

    label_h = 14
    grid = Image.new("RGB", (cell * len(columns), label_h + len(rows) * (cell + label_h)), "white")
    draw = ImageDraw.Draw(grid)
    for c, name in enumerate(columns):
        draw.text((c * cell + 4, 1), name, fill="black")
    for r, (label, images) in enumerate(rows):
        top = label_h + r * (cell + label_h)
        draw.text((4, top + 1), label, fill="black")
        for c, image in enumerate(images):
            if image is None:
                continue
            picture = image if isinstance(image, Image.Image) else Image.open(image)
            grid.paste(picture.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST), (c * cell, top + label_h))
    grid.save(path)
    return path
