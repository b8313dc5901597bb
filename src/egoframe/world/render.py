"""State -> image: draws one :class:`FrameState` as an RGB frame with flat colours and anti-aliased edges.

Pure numpy; every shape is a signed distance field evaluated only inside its own bounding box, so a
128x128 frame with a dozen objects costs about a millisecond. The same function draws the video frames
and serves oracle metrics later (render a predicted state, compare with a generated frame).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from egoframe.world.state import (
    ARM_ANCHOR,
    BOARD_HALF,
    BOWL_RADIUS,
    COLOURS,
    COUNTER_FRONT_Y,
    CUP_RADIUS,
    DRAWER_HALF,
    DRAWER_PULL,
    HELD_SCALE,
    KNIFE_LENGTH,
    KNIFE_WIDTH,
    PALM_RADIUS,
    SINK_BOX,
    TOMATO_RADIUS,
    WALL_Y,
    FrameState,
    ObjectState,
    object_extent,
)

SKIN = np.array((226, 172, 140), np.float32)
SLEEVE = np.array((52, 60, 90), np.float32)
WATER = np.array((90, 170, 240), np.float32)
STEEL = np.array((170, 175, 182), np.float32)
DARK = np.array((45, 40, 38), np.float32)
BOARD = np.array((205, 160, 100), np.float32)
TOMATO = np.array((225, 60, 35), np.float32)
TOMATO_INSIDE = np.array((245, 140, 120), np.float32)
STEM = np.array((40, 130, 40), np.float32)
CABINET = np.array((120, 95, 75), np.float32)
DRAWER_FACE = np.array((160, 128, 98), np.float32)


class _Canvas:
    """A float32 (H, W, 3) image in 0-255 plus the camera offset; shapes are given in scene units."""

    def __init__(self, resolution: int, dx: float, dy: float, track: bool = False):
        self.res = resolution
        self.img = np.zeros((resolution, resolution, 3), np.float32)
        self.dx, self.dy = dx, dy
        # track=True: an id buffer of what is drawn on top at each pixel (index into self.tags, -1: scenery) and
        # each tagged shape's own area (its coverage > 0.5), for object_visibility
        self.ids = np.full((resolution, resolution), -1, np.int16) if track else None
        self.tag = -1
        self.areas: dict[int, np.ndarray] = {}
        # pixel centres in view units, (W,) and (H,)
        self.centres = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution

    def fill_bands(self, edges: list[float], colours: list) -> None:
        """Fill the frame with horizontal bands: colours[i] between scene lines edges[i-1] and edges[i].

        Builds one (H, 3) column of row colours with anti-aliased band edges, then writes it across the
        width: one full-frame write instead of one blend per band.
        """
        y = self.centres - self.dy  # (H,) scene y of each pixel row
        rows = np.broadcast_to(np.asarray(colours[0], np.float32), (self.res, 3)).copy()
        for edge, colour in zip(edges, colours[1:]):
            below = np.clip(0.5 + (y - edge) * self.res, 0.0, 1.0)[:, None]  # (H, 1) coverage of the lower band
            rows += (np.asarray(colour, np.float32) - rows) * below
        self.img[:] = rows[:, None, :]

    def paint(self, box: tuple[float, float, float, float], sdf, colour, alpha: float = 1.0) -> None:
        """Blend ``colour`` where ``sdf(X, Y) < 0``; X, Y are scene-unit grids of the pixels in ``box``."""
        res = self.res
        x0, y0, x1, y1 = box
        # scene box -> pixel slice in the view, padded by a pixel for the anti-aliased rim
        c0 = max(int(math.floor((x0 + self.dx) * res)) - 1, 0)
        c1 = min(int(math.ceil((x1 + self.dx) * res)) + 1, res)
        r0 = max(int(math.floor((y0 + self.dy) * res)) - 1, 0)
        r1 = min(int(math.ceil((y1 + self.dy) * res)) + 1, res)
        if c0 >= c1 or r0 >= r1:
            return
        X = self.centres[None, c0:c1] - self.dx  # (1, w) scene units
        Y = self.centres[r0:r1, None] - self.dy  # (h, 1)
        # sdf is in scene units; * res turns it into pixels, so the edge ramp is one pixel wide
        cover = np.clip(0.5 - sdf(X, Y) * res, 0.0, 1.0) * alpha  # (h, w)
        if self.ids is not None:
            on = cover > 0.5
            self.ids[r0:r1, c0:c1][on] = self.tag
            if self.tag >= 0:
                area = self.areas.setdefault(self.tag, np.zeros((res, res), bool))
                area[r0:r1, c0:c1] |= on
        patch = self.img[r0:r1, c0:c1]
        patch += (np.asarray(colour, np.float32) - patch) * cover[..., None]


def _circle(cx, cy, r):
    return lambda X, Y: np.sqrt((X - cx) ** 2 + (Y - cy) ** 2) - r


def _rect(cx, cy, hx, hy, rounding=0.0):
    def sdf(X, Y):
        qx = np.abs(X - cx) - (hx - rounding)
        qy = np.abs(Y - cy) - (hy - rounding)
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
        return outside + np.minimum(np.maximum(qx, qy), 0) - rounding

    return sdf


def _capsule(ax, ay, bx, by, r):
    vx, vy = bx - ax, by - ay
    vv = max(vx * vx + vy * vy, 1e-12)

    def sdf(X, Y):
        t = np.clip(((X - ax) * vx + (Y - ay) * vy) / vv, 0.0, 1.0)
        return np.sqrt((X - ax - t * vx) ** 2 + (Y - ay - t * vy) ** 2) - r

    return sdf


def _capsule_box(ax, ay, bx, by, r):
    return min(ax, bx) - r, min(ay, by) - r, max(ax, bx) + r, max(ay, by) + r


def _rgb(name: str) -> np.ndarray:
    return np.array(COLOURS[name], np.float32)


def _draw_object(cv: _Canvas, obj: ObjectState, state: FrameState) -> None:
    scale = HELD_SCALE if obj.held_by else 1.0
    x, y = obj.x, obj.y
    box = object_extent(obj)
    if obj.kind == "cup":
        r = CUP_RADIUS * scale
        cv.paint(box, _circle(x, y, r), _rgb(obj.colour))
        # the inside of the cup: dark when empty, water when filled; the coloured rim stays visible
        inner = WATER if obj.filled else _rgb(obj.colour) * 0.45
        cv.paint(box, _circle(x, y, r * 0.62), inner)
    elif obj.kind == "bowl":
        cv.paint(box, _circle(x, y, BOWL_RADIUS), _rgb(obj.colour))
        cv.paint(box, _circle(x, y, BOWL_RADIUS * 0.72), _rgb(obj.colour) * 0.8)
        if obj.fill > 0:
            cv.paint(box, _circle(x, y, BOWL_RADIUS * 0.72 * math.sqrt(min(obj.fill, 1.0))), WATER)
    elif obj.kind == "tomato":
        r = TOMATO_RADIUS * scale
        if obj.cut:
            # two halves, cut faces up, pulled apart sideways
            for side in (-1, 1):
                hx = x + side * r * 0.5
                half = _circle(hx, y, r)
                plane = (lambda s, hx: (lambda X, Y: -s * (X - hx)))(side, hx)
                cv.paint(box, lambda X, Y, h=half, p=plane: np.maximum(h(X, Y), p(X, Y)), TOMATO)
                inner = _circle(hx, y, r * 0.75)
                cv.paint(box, lambda X, Y, h=inner, p=plane: np.maximum(h(X, Y), p(X, Y) + r * 0.1), TOMATO_INSIDE)
        else:
            cv.paint(box, _circle(x, y, r), TOMATO)
            cv.paint(box, _circle(x, y - r * 0.55, r * 0.28), STEM)
    elif obj.kind == "knife":
        half = KNIFE_LENGTH * scale / 2
        ux, uy = math.cos(obj.angle), math.sin(obj.angle)
        mx, my = x + ux * half * 0.2, y + uy * half * 0.2  # blade/handle joint, 60 % blade
        w = KNIFE_WIDTH * scale / 2
        cv.paint(box, _capsule(mx, my, x + ux * half, y + uy * half, w), STEEL)
        cv.paint(box, _capsule(x - ux * half, y - uy * half, mx, my, w * 1.1), DARK)
    elif obj.kind == "board":
        cv.paint(box, _rect(x, y, BOARD_HALF[0], BOARD_HALF[1], 0.012), BOARD)
    elif obj.kind == "drawer":
        pull = DRAWER_PULL * obj.open
        hx, hy = DRAWER_HALF
        if pull > 0:
            # the drawer's inside, seen from above between the cabinet and the pulled face
            inside = (x - hx * 0.94, y - hy, x + hx * 0.94, y - hy + pull + 0.02)
            cv.paint(inside, _rect(x, y - hy + (pull + 0.02) / 2, hx * 0.94, (pull + 0.02) / 2), DARK)
        fy = y + pull
        cv.paint(box, _rect(x, fy, hx, hy, 0.008), DRAWER_FACE)
        cv.paint(box, _rect(x, fy + 0.01, 0.045, 0.009, 0.009), DARK)  # handle
    elif obj.kind == "tap":
        cv.paint(box, _capsule(x, y - 0.04, x, y + 0.02, 0.014), STEEL)
        cv.paint(box, _circle(x, y - 0.04, 0.022), DARK if not obj.on else np.array((60, 120, 200), np.float32))
        if obj.on:
            # running water from the spout into the sink
            stream = (x - 0.015, y + 0.02, x + 0.015, SINK_BOX[3] - 0.01)
            cv.paint(stream, _rect(x, (y + 0.02 + SINK_BOX[3] - 0.01) / 2, 0.011, (SINK_BOX[3] - 0.03 - y) / 2), WATER)
    else:
        raise ValueError(f"unknown object kind {obj.kind!r}")


def _draw_hand(cv: _Canvas, side: str, px: float, py: float) -> None:
    ax, ay = ARM_ANCHOR[side]
    # the sleeve covers the forearm up to a wrist point short of the palm, skin beyond it
    dx, dy = px - ax, py - ay
    length = max(math.hypot(dx, dy), 1e-6)
    wx, wy = px - dx / length * 0.07, py - dy / length * 0.07
    cv.paint(_capsule_box(ax, ay, wx, wy, 0.06), _capsule(ax, ay, wx, wy, 0.06), SLEEVE)
    cv.paint(_capsule_box(wx, wy, px, py, 0.04), _capsule(wx, wy, px, py, 0.04), SKIN)
    cv.paint(_capsule_box(px, py, px, py, PALM_RADIUS), _circle(px, py, PALM_RADIUS), SKIN)


def render_state(state: FrameState | dict[str, Any], resolution: int = 128,
                 hidden_hands: tuple[str, ...] = ()) -> np.ndarray:
    """Draw a scene state as a uint8 RGB image of shape (resolution, resolution, 3).

    Accepts a :class:`FrameState` or its ``to_dict()`` form (one line of a ``states/*.jsonl`` file). The
    result equals the video frame before MP4 compression (when the world was made without motion blur).
    ``hidden_hands`` ("left", "right") are painted out (arm and palm not drawn; what they hold still is): the
    oracle learns from such frames that a frame without the acting hand does not show the action.
    """
    return np.clip(_draw_scene(state, resolution, hidden_hands).img + 0.5, 0, 255).astype(np.uint8)


def _draw_scene(state: FrameState, resolution: int, hidden_hands: tuple[str, ...] = (), track: bool = False) -> _Canvas:
    """The canvas of :func:`render_state` (with its id buffer when ``track``; object tags index ``state.objects``)."""
    unknown = set(hidden_hands) - {"left", "right"}
    if unknown:
        raise ValueError(f"hidden_hands must name 'left'/'right', got {sorted(unknown)}")
    if isinstance(state, dict):
        state = FrameState.from_dict(state)
    if not isinstance(resolution, int) or resolution < 16:
        raise ValueError(f"resolution must be an int >= 16, got {resolution!r}")
    cv = _Canvas(resolution, state.camera_dx, state.camera_dy, track=track)
    cv.fill_bands([WALL_Y, COUNTER_FRONT_Y], [state.wall_rgb, state.counter_rgb, CABINET])
    sx0, sy0, sx1, sy1 = SINK_BOX
    cv.paint(SINK_BOX, _rect((sx0 + sx1) / 2, (sy0 + sy1) / 2, (sx1 - sx0) / 2, (sy1 - sy0) / 2, 0.02), STEEL)
    cv.paint(SINK_BOX, _rect((sx0 + sx1) / 2, (sy0 + sy1) / 2, (sx1 - sx0) / 2 - 0.015, (sy1 - sy0) / 2 - 0.015,
                             0.015), STEEL * 0.75)

    # draw order: furniture-like objects, then objects on the counter, then hands, then what the hands hold
    order = {"drawer": 0, "tap": 0, "board": 1, "bowl": 2, "knife": 3, "tomato": 3, "cup": 4}
    free = sorted((o for o in state.objects if not o.held_by), key=lambda o: order[o.kind])
    tags = {obj.id: k for k, obj in enumerate(state.objects)}
    for obj in free:
        cv.tag = tags[obj.id]
        _draw_object(cv, obj, state)
    for side in ("left", "right"):
        if side in hidden_hands:
            continue
        hand = state.hands[side]
        cv.tag = -2  # a hand: covers, is no object
        _draw_hand(cv, side, hand.x, hand.y)
    for obj in state.objects:
        if obj.held_by:
            cv.tag = tags[obj.id]
            _draw_object(cv, obj, state)
    if state.pouring is not None:
        cv.tag = -3  # the poured water covers what is below it
        cup, bowl = state.object(state.pouring[0]), state.object(state.pouring[1])
        cv.paint(_capsule_box(cup.x, cup.y, bowl.x, bowl.y, 0.012), _capsule(cup.x, cup.y, bowl.x, bowl.y, 0.012),
                 WATER)
    return cv


def render_object_alpha(state: FrameState | dict[str, Any], object_id: str, resolution: int = 128) -> np.ndarray:
    """Coverage in [0, 1], float32 (resolution, resolution), of one object drawn alone as ``render_state`` draws it.

    The object's soft mask (what a segmenter returns on a real frame) for copy-paste data synthesis. Drawn on
    a black and on a white canvas: every paint blends linearly over what is below, so the two differ by
    ``255 * (1 - coverage)``. Occlusion by hands or objects drawn later is not applied.
    """
    if isinstance(state, dict):
        state = FrameState.from_dict(state)
    if not isinstance(resolution, int) or resolution < 16:
        raise ValueError(f"resolution must be an int >= 16, got {resolution!r}")
    obj = state.object(object_id)
    layers = []
    for background in (0.0, 255.0):
        cv = _Canvas(resolution, state.camera_dx, state.camera_dy)
        cv.img[:] = background
        _draw_object(cv, obj, state)
        layers.append(cv.img)
    return np.clip(1.0 - (layers[1] - layers[0]).mean(axis=-1) / 255.0, 0.0, 1.0).astype(np.float32)


def object_visibility(state: FrameState | dict[str, Any], resolution: int = 64,
                      hidden_hands: tuple[str, ...] = ()) -> dict[str, float]:
    """Share of each object's own drawn area (coverage > 0.5) that the finished frame still shows, by object id.

    1.0 when nothing covers the object; 0.0 when arms, hands, held objects, poured water or objects drawn over
    it hide all of it, or when it lies outside the view. Measured with one drawing of the frame that keeps an id
    buffer (which shape is on top at each pixel, the painter's algorithm's z-buffer): about the cost of one
    render, so the oracle's training can mask hidden facts per sample. It agrees with drawing the frame with
    and without each object (tests/world/test_world.py) except where an object has the colour of what is under
    it, which the id buffer still counts as shown. A fact about an object that the frame does not show cannot be
    read off the frame by anyone (:func:`~egoframe.world.facts.readable_facts`).
    """
    if isinstance(state, dict):
        state = FrameState.from_dict(state)
    cv = _draw_scene(state, resolution, hidden_hands, track=True)
    out: dict[str, float] = {}
    for k, obj in enumerate(state.objects):
        area = cv.areas.get(k)
        total = int(area.sum()) if area is not None else 0
        out[obj.id] = float((area & (cv.ids == k)).sum() / total) if total else 0.0
    return out
