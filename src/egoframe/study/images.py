"""Image validation for study media: every image is decoded, bounded and re-encoded before it is stored.

Re-encoding to PNG drops metadata, so no rater can learn a method from EXIF or PNG text chunks
(diffusers-era tools write generation parameters there), and no stored file is anything but an image.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from egoframe.errors import InputError

MAX_IMAGE_BYTES = 16 * 1024 * 1024
MAX_IMAGE_SIDE = 4096
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP")


@dataclass(frozen=True)
class CleanImage:
    png: bytes
    sha256: str
    width: int
    height: int


def clean_image(data: bytes, name: str = "image") -> CleanImage:
    """Decode ``data`` (PNG/JPEG/WebP, bounded size) and return it re-encoded as metadata-free RGB PNG."""
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise InputError(f"{name} is {len(data)} bytes; at most {MAX_IMAGE_BYTES} are accepted")
    if not data:
        raise InputError(f"{name} is empty")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt, (width, height) = probe.format, probe.size
            # Check the declared size before decoding: a tiny file can declare a huge canvas.
            if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width < 1 or height < 1:
                raise InputError(f"{name} is {width}x{height}; each side must be 1..{MAX_IMAGE_SIDE} px")
            if fmt not in ALLOWED_FORMATS:
                raise InputError(f"{name} is {fmt or 'not an image'}; expected one of {', '.join(ALLOWED_FORMATS)}")
            probe.verify()
        with Image.open(io.BytesIO(data)) as im:
            rgb = im.convert("RGB")
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{name} is not a readable image: {exc}") from None
    out = io.BytesIO()
    rgb.save(out, format="PNG")
    png = out.getvalue()
    return CleanImage(png=png, sha256=hashlib.sha256(png).hexdigest(), width=width, height=height)


def clean_image_file(path: str) -> CleanImage:
    import os

    size = os.path.getsize(path)
    if size > MAX_IMAGE_BYTES:
        raise InputError(f"{path} is {size} bytes; at most {MAX_IMAGE_BYTES} are accepted")
    with open(path, "rb") as f:
        return clean_image(f.read(), path)
