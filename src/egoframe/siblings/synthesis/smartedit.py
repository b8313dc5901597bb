"""SmartEdit's copy-paste synthesis (papers/002, "synthetic editing dataset", Fig. 1) on one world frame: choose an
object, segment it, remove it, paste it moved or rescaled (:func:`transform_layer`) and harmonize the paste
(:func:`harmonize`, a colour-statistics transfer); :func:`smartedit_triplets` runs it, :class:`SmartEditConfig`
sets the operations."""

from __future__ import annotations

import copy
from collections import Counter
from dataclasses import dataclass

import numpy as np

from egoframe.errors import InputError
from egoframe.siblings.synthesis.types import MASK_THRESHOLD, EditTriplet, Frame, dilate, stable_index
from egoframe.siblings.synthesis.world import (WorldInpainter, WorldSegmenter, require_state, state_without,
                                               world_box)
from egoframe.world.render import render_state
from egoframe.world.state import ARM_ANCHOR, COUNTER_FRONT_Y, SINK_BOX, WALL_Y


@dataclass
class SmartEditConfig:
    """Operations and their sizes. ``move``: shift left/right by ``move_widths`` object widths (the first
    free one); ``scale``: ``scale_up`` / ``scale_down`` about the object's centre; ``remove``: the inpainted
    frame itself (SmartEdit's y1). ``harmonize`` is the strength of :func:`harmonize` (0 turns it off)."""

    ops: tuple[str, ...] = ("move", "scale")
    move_widths: tuple[float, ...] = (1.6, 2.2, 3.0)
    scale_up: float = 1.35
    scale_down: float = 0.7
    harmonize: float = 1.0
    ring: int = 3  # pixels of surroundings the harmonization statistics are taken from
    max_occluded: float = 0.02  # share of the object's mask hidden by hands / later objects that is tolerated

    def validate(self) -> None:
        unknown = [op for op in self.ops if op not in ("move", "scale", "remove")]
        if unknown or not self.ops:
            raise InputError(f"ops must be a non-empty subset of move, scale, remove; got {','.join(self.ops)}")
        if not self.move_widths or min(self.move_widths) <= 0:
            raise InputError(f"move_widths must be positive, got {self.move_widths}")
        if not (self.scale_up > 1 and 0 < self.scale_down < 1):
            raise InputError(f"scale_up must be > 1 and scale_down in (0, 1), got {self.scale_up}, {self.scale_down}")
        if not 0 <= self.harmonize <= 1:
            raise InputError(f"harmonize must be in [0, 1], got {self.harmonize}")
        if self.ring < 1:
            raise InputError(f"ring must be >= 1 pixel, got {self.ring}")


def context_stats(image: np.ndarray, alpha: np.ndarray, ring: int = 3, exclude: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel mean and std of the ``ring`` pixels around a mask (not under it, not in ``exclude``);
    None without any."""
    inside = alpha > MASK_THRESHOLD
    around = dilate(inside, ring) & ~inside
    if exclude is not None:
        around &= ~exclude
    if not around.any():
        return None
    pixels = np.asarray(image, np.float64)[around]
    return pixels.mean(axis=0), pixels.std(axis=0)


STD_FLOOR = 4.0  # grey levels: flat surroundings have std ~0, and a ratio of two ~0 stds is noise


def harmonize(image: np.ndarray, alpha: np.ndarray, reference: tuple[np.ndarray, np.ndarray] | None = None,
              strength: float = 1.0, ring: int = 3, exclude: np.ndarray | None = None) -> np.ndarray:
    """Colour-statistics harmonization of a pasted region (the ``alpha`` mask of ``image``), after Reinhard,
    Ashikhmin, Gooch and Shirley, "Color Transfer between Images" (IEEE CG&A 2001): per channel,
    ``x' = (x - mean_src) * std_dst / std_src + mean_dst``; here in RGB rather than their lαβ space, with the
    std ratio clipped to [0.5, 2] and stds floored at ``STD_FLOOR``. It stands in for a learned harmonizer
    (PIH in papers/002).

    ``mean_dst, std_dst``: the ``ring`` pixels around the region, less ``exclude`` (other objects).
    ``reference=None``: ``mean_src, std_src`` are the region's own, so the region's statistics move to its
    surroundings'. ``reference=(mean, std)`` of the object's *source* surroundings: the transfer that maps the
    old surroundings onto the new ones is applied, which corrects light and colour cast but keeps the object's
    own colours (identity when both surroundings look alike). ``strength`` blends the result in, pixels by
    their coverage. Returns uint8.
    """
    img = np.asarray(image, np.float32)
    if alpha.shape != img.shape[:2]:
        raise InputError(f"alpha {alpha.shape} does not match the image {img.shape[:2]}")
    inside = alpha > MASK_THRESHOLD
    dst = context_stats(img, alpha, ring, exclude)
    if strength <= 0 or dst is None or not inside.any():
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if reference is None:
        region = img[inside]
        reference = (region.mean(axis=0), region.std(axis=0))
    src_mean, src_std = (np.asarray(v, np.float32) for v in reference)
    dst_mean, dst_std = (np.asarray(v, np.float32) for v in dst)
    ratio = np.clip(np.maximum(dst_std, STD_FLOOR) / np.maximum(src_std, STD_FLOOR), 0.5, 2.0)
    moved = (img - src_mean) * ratio + dst_mean
    out = img + (strength * alpha)[..., None] * (moved - img)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def transform_layer(layer: np.ndarray, centre: tuple[float, float], shift: tuple[float, float] = (0.0, 0.0),
                    scale: float = 1.0) -> np.ndarray:
    """A (H, W, C) float layer scaled by ``scale`` about ``centre`` (pixels, x, y) and shifted by ``shift``:
    bilinear inverse mapping, zero outside. Use it on premultiplied colour and alpha together."""
    h, w = layer.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5  # pixel centres
    sx = centre[0] + (xs - centre[0] - shift[0]) / scale - 0.5
    sy = centre[1] + (ys - centre[1] - shift[1]) / scale - 0.5
    x0, y0 = np.floor(sx).astype(int), np.floor(sy).astype(int)
    fx, fy = (sx - x0)[..., None], (sy - y0)[..., None]
    padded = np.pad(layer, ((1, 1), (1, 1), (0, 0)))  # index -1..w maps into the zero border

    def at(yy, xx):
        return padded[np.clip(yy + 1, 0, h + 1), np.clip(xx + 1, 0, w + 1)]

    out = (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy)
           + at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)
    return out.astype(np.float32)


MOVABLE = ("cup", "bowl", "tomato", "knife")


def _movable_objects(state) -> list:
    """Objects a copy-paste edit can move: free cups, bowls, tomatoes and the knife on the counter or board,
    named uniquely in the frame (so the instruction is unambiguous), with nothing resting in them."""
    names = Counter(o.name for o in state.objects)
    holders = {o.place for o in state.objects}
    pouring = set(state.pouring or ())
    return [o for o in state.objects if o.kind in MOVABLE and not o.held_by and o.place in ("counter", "board")
            and names[o.name] == 1 and o.id not in holders and o.id not in pouring]


def _occupied(state, object_id: str, resolution: int) -> np.ndarray:
    """Pixels a pasted object must not cover: every other object, the hands and arms, and the sink."""
    rest = state_without(state, object_id)
    bare = copy.deepcopy(rest)
    bare.objects = [o for o in bare.objects if o.kind in ("drawer", "tap")]  # fixtures off the counter top
    bare.pouring = None
    for side, hand in bare.hands.items():  # palm at the arm's anchor below the frame: nothing drawn
        hand.x, hand.y = ARM_ANCHOR[side]
    occupied = (render_state(rest, resolution) != render_state(bare, resolution)).any(axis=-1)
    x0, y0, x1, y1 = ((v + d) * resolution for v, d in zip(SINK_BOX, (state.camera_dx, state.camera_dy) * 2))
    occupied[max(int(y0), 0):max(int(np.ceil(y1)), 0), max(int(x0), 0):max(int(np.ceil(x1)), 0)] = True
    return occupied


def _counter_rows(state, resolution: int) -> tuple[float, float]:
    return (WALL_Y + state.camera_dy) * resolution, (COUNTER_FRONT_Y + state.camera_dy) * resolution


def _fits(alpha: np.ndarray, expected_mass: float, occupied: np.ndarray, rows: tuple[float, float]) -> bool:
    """The placed mask lies whole in the frame, on the counter top, and on free counter."""
    inside = alpha > MASK_THRESHOLD
    if not inside.any() or abs(alpha.sum() - expected_mass) > 0.08 * expected_mass:  # cut off by the frame
        return False
    ys = np.nonzero(inside.any(axis=1))[0]
    if ys[0] < rows[0] or ys[-1] + 1 > rows[1]:
        return False
    return not (inside & dilate(occupied, 1)).any()


def smartedit_triplets(frame: Frame, config: SmartEditConfig, inpainter=None, segmenter=None
                       ) -> tuple[list[EditTriplet], list[str]]:
    """papers/002 Fig. 1 on one world frame: choose an unoccluded movable object (by a hash of the frame id),
    segment it, remove it (y1), paste it moved and/or rescaled onto y1 and harmonize. Returns the triplets
    and the reasons for the operations that were skipped."""
    state = require_state(frame, "SmartEdit synthesis")
    inpainter = inpainter or WorldInpainter()
    segmenter = segmenter or WorldSegmenter()

    res = frame.resolution
    candidates = sorted(_movable_objects(state), key=lambda o: o.id)
    start = stable_index(frame.id, len(candidates)) if candidates else 0
    chosen = alpha = None
    for obj in candidates[start:] + candidates[:start]:
        alpha = segmenter.segment(frame, obj.id)
        full = alpha > 0.5
        without = render_state(state_without(state, obj.id), res)
        visible = (without != frame.image).any(axis=-1)
        if full.any() and (full & ~visible).sum() <= config.max_occluded * full.sum():
            chosen = obj
            break
    if chosen is None:
        return [], ["no unoccluded movable object"]

    image = frame.image.astype(np.float32)
    background = inpainter.remove(frame, chosen.id, alpha).astype(np.float32)  # y1
    # premultiplied foreground: image = background * (1 - a) + fg, exact for the renderer's blending
    foreground = np.clip(image - background * (1.0 - alpha[..., None]), 0.0, 255.0)
    layer = np.concatenate([foreground, alpha[..., None]], axis=-1)  # (H, W, 4)
    ys, xs = np.nonzero(alpha > MASK_THRESHOLD)
    centre = ((xs.min() + xs.max() + 1) / 2.0, (ys.min() + ys.max() + 1) / 2.0)
    width = float(xs.max() + 1 - xs.min())
    occupied = _occupied(state, chosen.id, res)
    rows = _counter_rows(state, res)
    # surroundings = bare counter top: other objects, the walls and the cabinet front are content, not light
    off_counter = np.ones_like(occupied)
    off_counter[max(int(np.ceil(rows[0])), 0):max(int(rows[1]), 0)] = False
    not_context = occupied | off_counter
    source_context = context_stats(frame.image, alpha, config.ring, not_context)
    mass = float(alpha.sum())

    def paste(shift, scale) -> np.ndarray | None:
        placed = transform_layer(layer, centre, shift, scale)
        placed_alpha = np.clip(placed[..., 3], 0.0, 1.0)
        if not _fits(placed_alpha, mass * scale * scale, occupied, rows):
            return None
        composite = background * (1.0 - placed_alpha[..., None]) + placed[..., :3]
        # no source surroundings to compare with: leave the colours alone rather than match the object itself
        strength = config.harmonize if source_context is not None else 0.0
        return harmonize(composite, placed_alpha, source_context, strength, config.ring, not_context)

    name = chosen.name
    box = world_box(chosen, state, res)
    common = dict(input=frame.image, source="smartedit-synth", label=name, box=box)
    out, skipped = [], []
    for op in config.ops:
        extra = {"op": op, "object_id": chosen.id, "harmonize": config.harmonize}
        if op == "remove":
            out.append(EditTriplet(id=f"{frame.id}-remove", edited=np.clip(background + 0.5, 0, 255).astype(np.uint8),
                                   instruction=f"remove the {name}", extra=extra, **common))
            continue
        edited, instruction = None, ""
        if op == "move":
            directions = ("left", "right") if stable_index(frame.id + "/move", 2) == 0 else ("right", "left")
            for direction in directions:
                for widths in config.move_widths:
                    dx = round(widths * width) * (-1 if direction == "left" else 1)
                    edited = paste((float(dx), 0.0), 1.0)
                    if edited is not None:
                        instruction = f"move the {name} to the {direction}"
                        extra.update(direction=direction, shift_px=dx)
                        break
                if edited is not None:
                    break
        else:  # scale
            factors = ((config.scale_up, "bigger"), (config.scale_down, "smaller"))
            if stable_index(frame.id + "/scale", 2):
                factors = factors[::-1]
            for factor, word in factors:
                edited = paste((0.0, 0.0), factor)
                if edited is not None:
                    instruction = f"make the {name} {word}"
                    extra.update(scale=factor)
                    break
        if edited is None:
            skipped.append(f"no free place to {op} the object")
            continue
        out.append(EditTriplet(id=f"{frame.id}-{op}", edited=edited, instruction=instruction, extra=extra, **common))
    return out, skipped
