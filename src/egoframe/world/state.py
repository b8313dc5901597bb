"""The world's scene state: what is where in one frame, as plain data.

One :class:`FrameState` fully determines the rendered frame (``render_state(state)`` reproduces the video
frame before compression), so it is also the ground truth an oracle state reader learns to recover.

Coordinates are *scene* coordinates as fractions of the frame: x to the right, y down, (0, 0) the top-left
corner of the view when the camera sits at its neutral pose. The camera offset (``camera.dx``, ``camera.dy``)
is added to every scene position at render time, so a position in view coordinates is ``scene + offset``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Colour names -> RGB (0-255). Saturated, well separated hues so that a 64x64 model can tell them apart.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (214, 40, 40),
    "green": (46, 160, 67),
    "blue": (40, 90, 210),
    "yellow": (235, 200, 40),
    "white": (240, 240, 235),
    "purple": (140, 70, 170),
    "orange": (240, 130, 30),
}
CUP_COLOURS = ("red", "green", "blue", "yellow")
BOWL_COLOURS = ("white", "purple", "orange")

# Object sizes in scene units (fraction of the frame side). Cups/bowls/tomatoes are discs seen from above.
CUP_RADIUS = 0.058
BOWL_RADIUS = 0.085
TOMATO_RADIUS = 0.048
KNIFE_LENGTH = 0.17
KNIFE_WIDTH = 0.026
BOARD_HALF = (0.095, 0.07)  # half width, half height
DRAWER_HALF = (0.13, 0.045)
HELD_SCALE = 1.15  # a held object is nearer the head-mounted camera, so it looks bigger

# Fixed furniture (scene units). The wall is above WALL_Y, the counter top between WALL_Y and COUNTER_FRONT_Y,
# the cabinet front (with the drawers) below it.
WALL_Y = 0.30
COUNTER_FRONT_Y = 0.80
SINK_BOX = (0.38, 0.31, 0.62, 0.42)  # x0, y0, x1, y1
TAP_POS = (0.50, 0.27)  # where the hand grips the tap
DRAWER_CENTRES = {"left": (0.33, 0.865), "right": (0.67, 0.865)}

# Hand poses (palm centre, scene units): at rest and while carrying an object.
HAND_REST = {"left": (0.19, 0.97), "right": (0.81, 0.97)}
HAND_HOLD = {"left": (0.30, 0.87), "right": (0.70, 0.87)}
ARM_ANCHOR = {"left": (0.04, 1.30), "right": (0.96, 1.30)}  # below the frame: where the forearm comes from
PALM_RADIUS = 0.05

KINDS = ("cup", "bowl", "knife", "tomato", "board", "drawer", "tap")

# The counter is three places to the oracle ("counter-left/middle/right": thirds of the frame in scene x).
# Objects are never put down within PLACE_MARGIN of a border between two thirds, so that which third an
# object is in can be read from the frame (a centre 4 px from the border at 128 px, not 0.1 px).
PLACE_BORDERS = (1 / 3, 2 / 3)
PLACE_MARGIN = 0.03


def counter_third(x: float) -> int:
    """0, 1, 2: the third of the counter (scene x) that a point lies in."""
    return min(max(int(x * 3), 0), 2)


@dataclass
class ObjectState:
    """One object. Fields that do not apply to a kind keep their defaults.

    ``x, y``: centre in scene units (for a held object: where it is drawn, next to the palm).
    ``held_by``: ``"left"``/``"right"``/``None``. ``filled``: a cup holds water. ``fill``: water level of a
    bowl in [0, 1]. ``cut``: a tomato is cut in halves. ``open``: how far a drawer is pulled out, [0, 1].
    ``on``: a tap runs. ``angle``: knife direction in radians (0 = blade pointing right).
    """

    id: str
    kind: str
    name: str  # the attribute-qualified noun used in boxes and descriptions, e.g. "red cup"
    colour: str = ""
    x: float = 0.0
    y: float = 0.0
    held_by: str | None = None
    filled: bool = False
    fill: float = 0.0
    cut: bool = False
    open: float = 0.0
    on: bool = False
    angle: float = 0.0
    place: str = ""  # what it rests on: "counter", "board", a bowl id, "hand", or "" for fixtures


@dataclass
class HandState:
    side: str  # "left" | "right"
    x: float
    y: float
    holding: str | None = None  # object id


@dataclass
class FrameState:
    """Everything needed to draw one frame; serialised one per line in ``states/<video_id>.jsonl``."""

    frame: int  # 0-based frame index in the video
    time: float  # seconds, frame / fps
    camera_dx: float  # view offset added to every scene position (scene units)
    camera_dy: float
    wall_rgb: tuple[int, int, int]
    counter_rgb: tuple[int, int, int]
    hands: dict[str, HandState]
    objects: list[ObjectState]
    pouring: tuple[str, str] | None = None  # (cup id, bowl id) while water runs from a cup into a bowl
    action_index: int | None = None  # index of the action in progress (its narration is <video_id>_<index>)
    phase: str = "idle"  # "idle" | "reach" | "contact" | "hold" | "return": where in the action this frame is
    blur: float = 0.0  # motion-blur shutter fraction applied to this frame (0: sharp)
    extra: dict[str, Any] = field(default_factory=dict)

    def object(self, object_id: str) -> ObjectState:
        for obj in self.objects:
            if obj.id == object_id:
                return obj
        raise KeyError(object_id)

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["hands"] = {side: asdict(h) for side, h in self.hands.items()}
        return row

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "FrameState":
        row = dict(row)
        row["hands"] = {side: h if isinstance(h, HandState) else HandState(**h) for side, h in row["hands"].items()}
        row["objects"] = [o if isinstance(o, ObjectState) else ObjectState(**o) for o in row["objects"]]
        row["wall_rgb"] = tuple(row["wall_rgb"])
        row["counter_rgb"] = tuple(row["counter_rgb"])
        if row.get("pouring") is not None:
            row["pouring"] = tuple(row["pouring"])
        return cls(**row)


DRAWER_PULL = 0.07  # how far (scene units) a fully open drawer's face moves towards the viewer


def object_extent(obj: ObjectState) -> tuple[float, float, float, float]:
    """Scene-unit box (x0, y0, x1, y1) of an object's drawn shape, held objects enlarged."""
    import math

    scale = HELD_SCALE if obj.held_by else 1.0
    if obj.kind in ("cup", "bowl", "tomato"):
        base = {"cup": CUP_RADIUS, "bowl": BOWL_RADIUS, "tomato": TOMATO_RADIUS}[obj.kind]
        r = base * scale
        # cut tomato halves are drawn pulled apart sideways
        rx = r * 1.5 if obj.kind == "tomato" and obj.cut else r
        return obj.x - rx, obj.y - r, obj.x + rx, obj.y + r
    if obj.kind == "knife":
        half = KNIFE_LENGTH * scale / 2
        hx = abs(math.cos(obj.angle)) * half + KNIFE_WIDTH / 2
        hy = abs(math.sin(obj.angle)) * half + KNIFE_WIDTH / 2
        return obj.x - hx, obj.y - hy, obj.x + hx, obj.y + hy
    if obj.kind == "board":
        return obj.x - BOARD_HALF[0], obj.y - BOARD_HALF[1], obj.x + BOARD_HALF[0], obj.y + BOARD_HALF[1]
    if obj.kind == "drawer":
        return (obj.x - DRAWER_HALF[0], obj.y - DRAWER_HALF[1],
                obj.x + DRAWER_HALF[0], obj.y + DRAWER_HALF[1] + DRAWER_PULL * obj.open)
    if obj.kind == "tap":
        return obj.x - 0.035, obj.y - 0.05, obj.x + 0.035, obj.y + 0.05
    raise ValueError(f"unknown object kind {obj.kind!r}")


def grip_point(obj: ObjectState) -> tuple[float, float]:
    """Where a hand's palm goes to act on an object (scene units)."""
    if obj.kind == "drawer":
        return obj.x, obj.y + DRAWER_PULL * obj.open + 0.01
    if obj.kind == "tap":
        return obj.x, obj.y + 0.03
    return obj.x, obj.y
