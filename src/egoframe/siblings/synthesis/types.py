"""The shared types of the synthesis stages: a :class:`Frame` in, :class:`Detection` s and a :class:`Pick` between
the ReasonPix2Pix Part III stages (papers/003 Eq. 5-6), an :class:`EditTriplet` out; plus the mask threshold and
the two small helpers (a salt-free hash choice, a numpy dilation) that several stages share."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from egoframe.data.records import ActionRecord

MASK_THRESHOLD = 0.02  # coverage above which a pixel belongs to an object's mask


@dataclass
class Frame:
    """One input image and, for the embedded world, its true scene state (what the stand-ins read)."""

    id: str
    image: np.ndarray  # (H, W, 3) uint8
    state: Any = None  # egoframe.world.FrameState, or None for a real image
    record: ActionRecord | None = None

    @property
    def resolution(self) -> int:
        return int(self.image.shape[1])


@dataclass(frozen=True)
class Detection:
    """A grounded noun: its box in pixels of the frame (x0, y0, x1, y1)."""

    noun: str
    box: tuple[float, float, float, float]
    score: float = 1.0
    object_id: str = ""  # the world object (stand-in grounding only)


@dataclass
class Pick:
    """papers/003 Eq. 6: the category to replace (and its box), the target category, the instruction."""

    category: str
    target: str
    instruction: str
    box: tuple[float, float, float, float]
    object_id: str = ""
    changes: dict[str, Any] = field(default_factory=dict)  # world stand-in: ObjectState fields to set


@dataclass
class EditTriplet:
    """(input, edited, instruction), plus what a data set row keeps about it."""

    id: str
    input: np.ndarray  # (H, W, 3) uint8
    edited: np.ndarray  # (H, W, 3) uint8
    instruction: str
    source: str
    label: str = ""  # the changed object, e.g. "red cup"
    box: tuple[float, float, float, float] | None = None  # the changed object's box on the input
    extra: dict[str, Any] = field(default_factory=dict)


def stable_index(key: str, n: int) -> int:
    """A deterministic, well spread choice among n options for a key (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % n


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation with a (2r+1)^2 square: OR of shifted copies (numpy only; scipy is a test extra)."""
    if radius <= 0:
        return mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out
