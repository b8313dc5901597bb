"""Arms counted from a frame's pixels with the world's palette: the doubled-arm check of issue 18.

The oracle reads what each hand holds, not how many arms a frame shows, so a generator that draws a second,
ghost forearm can still pass it. Here the world's sleeve colour (``egoframe.world.render.SLEEVE``) is
segmented (pixels within ``tolerance`` of it in RGB), and its connected components (scipy.ndimage.label,
8-connectivity) of at least ``min_fraction`` of the frame are counted:

* ``arms``: components that touch the frame's bottom or side border, where every forearm enters the frame
  (the arms are anchored below it, ``ARM_ANCHOR``), i.e. the arms the frame shows;
* ``sleeve_blobs``: all such components; a blob that does not reach the border is a detached or doubled
  piece of arm.

On rendered world frames both equal the number of hands not painted out (tests/evaluation/test_parts.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egoframe.world.render import SLEEVE


@dataclass(frozen=True)
class ArmCount:
    arms: int
    sleeve_blobs: int


def count_arms(frame, tolerance: float = 30.0, min_fraction: float = 0.004, size: int = 128) -> ArmCount:
    """Count the arms of a world frame (PIL image or uint8 (H, W, 3) array), read at ``size`` x ``size``."""
    from PIL import Image
    from scipy import ndimage

    image = frame if isinstance(frame, Image.Image) else Image.fromarray(np.asarray(frame, dtype=np.uint8))
    rgb = np.asarray(image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR), np.float32)
    mask = np.linalg.norm(rgb - SLEEVE, axis=-1) < tolerance
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n == 0:
        return ArmCount(0, 0)
    areas = ndimage.sum(mask, labels, range(1, n + 1))
    large = {i + 1 for i, area in enumerate(areas) if area >= min_fraction * mask.size}
    edge = np.concatenate([labels[-2:, :].ravel(), labels[:, :2].ravel(), labels[:, -2:].ravel()])
    at_border = set(np.unique(edge).tolist()) - {0}
    return ArmCount(arms=len(large & at_border), sleeve_blobs=len(large))
