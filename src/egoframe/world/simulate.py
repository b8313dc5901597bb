"""One video of the world: sample a kitchen scene, plan a sequence of actions, and play it out frame by frame.

Two passes. :func:`plan_actions` walks the *logical* state (who holds what, drawers, tap) and picks a valid
action sequence with its timing (reach start, contact, PNR, end frame) and cue kind. :func:`play` then builds
the :class:`FrameState` of every frame: hand trajectories (smooth start -> stop), objects that follow the
hand holding them, drawers sliding, bowls filling, and the camera (gaze towards the acted-on place + jitter).

Everything is drawn from one ``numpy.random.Generator`` seeded by (world seed, video index), so a video does
not depend on any other video: a resumed or parallel run gives the same bytes.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from egoframe.world.config import WorldConfig
from egoframe.world.state import (
    BOARD_HALF,
    BOWL_COLOURS,
    BOWL_RADIUS,
    COUNTER_FRONT_Y,
    CUP_COLOURS,
    CUP_RADIUS,
    DRAWER_CENTRES,
    HAND_HOLD,
    HAND_REST,
    KNIFE_LENGTH,
    PLACE_BORDERS,
    PLACE_MARGIN,
    SINK_BOX,
    TAP_POS,
    TOMATO_RADIUS,
    WALL_Y,
    FrameState,
    HandState,
    ObjectState,
    grip_point,
)

HANDS = ("left", "right")
# Verbs the world acts out, with the EPIC-style keys used in annotations.
VERBS = ("take", "put", "open", "close", "cut", "pour", "turn-on", "turn-off")
# Where the neutral gaze falls (scene units); the camera turns from here towards the acted-on place.
NEUTRAL_FOCUS = (0.5, 0.6)
WALLS = ((222, 216, 200), (200, 212, 222), (226, 206, 196))
COUNTERS = ((150, 150, 146), (176, 160, 136), (128, 140, 150))


@dataclass
class Action:
    """One planned action: the label, its hidden details, and its timing (0-based frame indices)."""

    index: int
    verb: str
    noun: str  # the label's noun: "cup", "knife", "tomato", "drawer", "tap"
    hand: str
    object_id: str
    start: int  # the acting hand starts to move
    contact: int  # the hand touches the object (or the pour/cut/pull/put-down begins)
    change: int  # the visible state change is complete from this frame on (``change_lead`` frames before the PNR)
    pnr: int  # point of no return (the annotated frame): the change is complete and the hand still at the object
    end: int  # the hand is back at its rest/hold pose
    cue: str  # "strong" | "weak" | "misleading"
    gaze_gain: float
    destination: dict[str, Any] | None = None  # put/pour: {"place": ..., "x": ..., "y": ..., "name": ...}
    tool_id: str | None = None  # cut: the knife
    distractor_id: str | None = None  # misleading cue: what the other hand and the gaze go to first
    candidates: list[dict[str, Any]] = field(default_factory=list)  # all completions the label allows

    @property
    def label(self) -> str:
        return f"{self.verb} {self.noun}"


@dataclass
class VideoPlan:
    video_index: int
    wall_rgb: tuple[int, int, int]
    counter_rgb: tuple[int, int, int]
    objects: list[ObjectState]  # initial state
    actions: list[Action]
    n_frames: int


# ----------------------------------------------------------------------------------------------- scene


def _clearance_radius(o: ObjectState) -> float:
    # a knife is thin: a disc of 70 % of its half length keeps things off its blade and handle
    return {"cup": CUP_RADIUS, "bowl": BOWL_RADIUS, "tomato": TOMATO_RADIUS, "knife": KNIFE_LENGTH * 0.35,
            "board": max(BOARD_HALF)}[o.kind]


def _free_spot(rng: np.random.Generator, objects: list[ObjectState], radius: float, tries: int = 200,
               x_range: tuple[float, float] = (0.07, 0.93)):
    """A counter position whose disc of ``radius`` keeps clear of the sink and every object lying on the counter."""
    sx0, sy0, sx1, sy1 = SINK_BOX
    lo, hi = max(x_range[0], 0.07 + radius), min(x_range[1], 0.93 - radius)
    if lo >= hi:
        return None
    for _ in range(tries):
        x = rng.uniform(lo, hi)
        y = rng.uniform(WALL_Y + 0.02 + radius, COUNTER_FRONT_Y - 0.015 - radius)
        if sx0 - radius < x < sx1 + radius and y < sy1 + radius:
            continue
        if any(abs(x - border) < PLACE_MARGIN for border in PLACE_BORDERS):
            continue
        ok = True
        for o in objects:
            if o.held_by or o.kind in ("drawer", "tap") or o.place not in ("counter", "board", ""):
                continue
            if math.hypot(x - o.x, y - o.y) < radius + _clearance_radius(o) + 0.01:
                ok = False
                break
        if ok:
            return float(x), float(y)
    return None


def sample_scene(rng: np.random.Generator, config: WorldConfig) -> list[ObjectState]:
    """Furniture, a board, bowls, cups, a knife and tomatoes at random non-overlapping counter positions."""
    for _ in range(100):
        objects = _try_scene(rng, config)
        if objects is not None:
            return objects
    raise RuntimeError("could not place the world's objects; lower n_cups/n_bowls/max_tomatoes")


class _NoRoom(Exception):
    pass


def _spot(rng, objects, radius):
    spot = _free_spot(rng, objects, radius)
    if spot is None:
        raise _NoRoom
    return spot


def _try_scene(rng: np.random.Generator, config: WorldConfig) -> list[ObjectState] | None:
    try:
        return _place_all(rng, config)
    except _NoRoom:
        return None


def _place_all(rng: np.random.Generator, config: WorldConfig) -> list[ObjectState]:
    objects: list[ObjectState] = []
    for side in ("left", "right"):
        cx, cy = DRAWER_CENTRES[side]
        objects.append(ObjectState(id=f"drawer_{side}", kind="drawer", name=f"{side} drawer", x=cx, y=cy,
                                   open=float(rng.random() < 0.3)))
    objects.append(ObjectState(id="tap_0", kind="tap", name="tap", x=TAP_POS[0], y=TAP_POS[1],
                               on=bool(rng.random() < 0.3)))
    # big things first so that rejection sampling finds room for them
    spot = _spot(rng, objects, max(BOARD_HALF))
    board = ObjectState(id="board_0", kind="board", name="cutting board", x=spot[0], y=spot[1], place="counter")
    objects.append(board)
    for i, colour in enumerate(rng.permutation(BOWL_COLOURS)[: config.n_bowls]):
        x, y = _spot(rng, objects, BOWL_RADIUS)
        objects.append(ObjectState(id=f"bowl_{i}", kind="bowl", name=f"{colour} bowl", colour=str(colour), x=x, y=y,
                                   fill=float(rng.random() < 0.2), place="counter"))
    for i, colour in enumerate(rng.permutation(CUP_COLOURS)[: config.n_cups]):
        x, y = _spot(rng, objects, CUP_RADIUS)
        objects.append(ObjectState(id=f"cup_{i}", kind="cup", name=f"{colour} cup", colour=str(colour), x=x, y=y,
                                   filled=bool(rng.random() < 0.7), place="counter"))
    spot = _spot(rng, objects, KNIFE_LENGTH * 0.35)
    objects.append(ObjectState(id="knife_0", kind="knife", name="knife", x=spot[0], y=spot[1],
                               angle=float(rng.uniform(-0.6, 0.6)), place="counter"))
    # two tomatoes more often than one, so that "cut tomato" usually leaves a choice
    n_tomatoes = min(config.max_tomatoes, 1 + int(rng.random() < 0.7))
    for i in range(n_tomatoes):
        if i == 0 and rng.random() < 0.5:
            x, y, place = board.x + rng.uniform(-0.03, 0.03), board.y + rng.uniform(-0.02, 0.02), "board"
        else:
            x, y = _spot(rng, objects, TOMATO_RADIUS)
            place = "counter"
        objects.append(ObjectState(id=f"tomato_{i}", kind="tomato", name="tomato", x=float(x), y=float(y),
                                   place=place))
    return objects


# -------------------------------------------------------------------------------------------- planning


def _holding(objects: dict[str, ObjectState], hand: str) -> ObjectState | None:
    for o in objects.values():
        if o.held_by == hand:
            return o
    return None


def _destinations(rng, objects: dict[str, ObjectState], obj: ObjectState) -> list[dict[str, Any]]:
    """Places a held object could be put down: a free counter spot, the board if free, a bowl for tomatoes."""
    lying = [o for o in objects.values() if o.id != obj.id]
    r = _clearance_radius(obj)
    out = []
    # the counter is one place to the label but many to the scene: offer a free spot in each third of it
    for x_range in ((0.0, PLACE_BORDERS[0]), PLACE_BORDERS, (PLACE_BORDERS[1], 1.0)):
        spot = _free_spot(rng, lying, r, tries=60, x_range=x_range)
        if spot is not None:
            out.append({"place": "counter", "object_id": None, "name": "counter", "x": spot[0], "y": spot[1]})
    board = objects["board_0"]
    if not any(o.place == "board" and not o.held_by for o in lying):
        out.append({"place": "board", "object_id": board.id, "name": board.name, "x": board.x + float(rng.uniform(-0.02, 0.02)),
                    "y": board.y + float(rng.uniform(-0.015, 0.015))})
    if obj.kind == "tomato":
        for b in lying:
            if b.kind == "bowl" and not any(o.place == b.id for o in lying):
                out.append({"place": b.id, "object_id": b.id, "name": b.name, "x": b.x, "y": b.y})
    return out


def _options(rng, objects: dict[str, ObjectState]) -> list[tuple[float, str, str, list[dict[str, Any]]]]:
    """Every label valid in this state: (weight, verb, noun, completions).

    A completion is one concrete reading of the label: {"object": id, "hand": side, "destination": ...}.
    More than one completion means the label alone does not say what happens.
    """
    free_hands = [h for h in HANDS if _holding(objects, h) is None]
    by_kind: dict[str, list[ObjectState]] = {}
    for o in objects.values():
        by_kind.setdefault(o.kind, []).append(o)
    opts = []
    both_full = not free_hands
    for noun in ("cup", "knife", "tomato"):
        lying = [o for o in by_kind.get(noun, []) if not o.held_by and not (noun == "tomato" and o.cut)]
        if free_hands and lying:
            comps = [{"object": o.id, "hand": h, "destination": None} for o in lying for h in free_hands]
            opts.append(({"cup": 3.0, "knife": 1.0, "tomato": 1.0}[noun], "take", noun, comps))
        held = [o for o in by_kind.get(noun, []) if o.held_by]
        comps = [{"object": o.id, "hand": o.held_by, "destination": d}
                 for o in held for d in _destinations(rng, objects, o)]
        if comps:
            opts.append((4.0 if both_full else 2.0, "put", noun, comps))
    full_cups = [o for o in by_kind.get("cup", []) if o.held_by and o.filled]
    bowls = [b for b in by_kind.get("bowl", []) if b.fill < 1.0]
    if full_cups and bowls:
        comps = [{"object": c.id, "hand": c.held_by, "destination": {"place": b.id, "object_id": b.id,
                                                                      "name": b.name, "x": b.x, "y": b.y}} for c in full_cups for b in bowls]
        opts.append((2.5, "pour", "cup", comps))
    knife = objects.get("knife_0")
    uncut = [t for t in by_kind.get("tomato", []) if not t.cut and not t.held_by and t.place in ("board", "counter")]
    if knife is not None and knife.held_by and uncut:
        comps = [{"object": t.id, "hand": knife.held_by, "destination": None, "tool": knife.id} for t in uncut]
        opts.append((3.0, "cut", "tomato", comps))
    if free_hands:
        for verb, want in (("open", False), ("close", True)):
            drawers = [d for d in by_kind["drawer"] if (d.open >= 0.5) == want]
            if drawers:
                comps = [{"object": d.id, "hand": h, "destination": None} for d in drawers for h in free_hands]
                opts.append((0.8, verb, "drawer", comps))
        tap = objects["tap_0"]
        verb = "turn-off" if tap.on else "turn-on"
        opts.append((0.6, verb, "tap", [{"object": tap.id, "hand": h, "destination": None} for h in free_hands]))
    return opts


def _apply(objects: dict[str, ObjectState], verb: str, comp: dict[str, Any]) -> None:
    """Apply an action's logical effect (the state after its PNR)."""
    obj = objects[comp["object"]]
    hand = comp["hand"]
    if verb == "take":
        obj.held_by, obj.place = hand, "hand"
    elif verb == "put":
        d = comp["destination"]
        obj.held_by, obj.place, obj.x, obj.y = None, d["place"], d["x"], d["y"]
        if obj.kind == "knife":
            obj.angle = 0.0
    elif verb == "pour":
        obj.filled = False
        objects[comp["destination"]["place"]].fill = 1.0
    elif verb == "cut":
        obj.cut = True
    elif verb in ("open", "close"):
        obj.open = 1.0 if verb == "open" else 0.0
    elif verb in ("turn-on", "turn-off"):
        obj.on = verb == "turn-on"


def _seconds(rng, lo: float, hi: float, fps: int) -> int:
    return int(round(rng.uniform(lo, hi) * fps))


def plan_video(config: WorldConfig, video_index: int) -> VideoPlan:
    """Sample the scene and the action sequence with timing for one video (deterministic in seed, index)."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, video_index, 0x776F726C64]))
    fps = config.fps
    wall = WALLS[int(rng.integers(len(WALLS)))]
    counter = COUNTERS[int(rng.integers(len(COUNTERS)))]
    initial = sample_scene(rng, config)
    objects = {o.id: copy.copy(o) for o in initial}
    n_actions = int(rng.integers(config.min_actions, config.max_actions + 1))
    contact_lead = max(1, round(0.2 * fps))  # contact -> change
    # The change is complete `lead` frames before the annotated PNR, so that every frame curation's aesthetic
    # choice may take as the target (PNR +- `neighbours`, papers/001 Sec. 4.1) already shows the outcome.
    lead = config.change_lead_frames
    ret = round(0.4 * fps)  # PNR -> hand back at its pose
    pre = config.pre_frames
    actions: list[Action] = []
    prev_end = 0
    for k in range(n_actions):
        opts = _options(rng, objects)
        if not opts:
            # both hands full and no free spot to put anything down (a crowded scene): the video ends here
            break
        weights = np.array([w for w, *_ in opts])
        w, verb, noun, comps = opts[int(rng.choice(len(opts), p=weights / weights.sum()))]
        comp = comps[int(rng.integers(len(comps)))]
        u = rng.random()
        cue = "weak" if u < config.cue_weak_prob else (
            "misleading" if u < config.cue_weak_prob + config.cue_misleading_prob else "strong")
        if cue == "strong":
            # the reach starts well before PRE-15: the hand is visibly on its way in the input frame
            reach = _seconds(rng, 0.8, 1.05, fps)
            gaze = float(rng.uniform(0.3, 0.45))
        else:
            # the reach starts at about PRE-15: the input frame shows no hand motion yet
            reach = pre + int(rng.integers(0, max(2, round(0.1 * fps))))
            gaze = float(rng.uniform(0.0, 0.08)) if cue == "weak" else float(rng.uniform(0.3, 0.45))
        gap = _seconds(rng, 0.1, 0.3, fps)
        first_pnr = round(1.5 * fps)  # so that PRE-45 of the first action is inside the video
        pnr = max(prev_end + gap + reach, first_pnr if k == 0 else 0)
        distractor = None
        if cue == "misleading":
            target = objects[comp["object"]]
            same = [o.id for o in objects.values() if o.kind == target.kind and o.id != target.id and not o.held_by]
            others = [o.id for o in objects.values() if o.id != target.id and not o.held_by and o.kind != "board"]
            pool = same or others
            distractor = pool[int(rng.integers(len(pool)))] if pool else None
            if distractor is None:
                cue = "weak"
        action = Action(index=k, verb=verb, noun=noun, hand=comp["hand"], object_id=comp["object"],
                        start=pnr - reach, contact=pnr - lead - contact_lead, change=pnr - lead, pnr=pnr,
                        end=pnr + ret, cue=cue, gaze_gain=gaze, destination=comp.get("destination"),
                        tool_id=comp.get("tool"), distractor_id=distractor, candidates=comps)
        actions.append(action)
        _apply(objects, verb, comp)
        prev_end = action.end
    n_frames = prev_end + round(0.4 * fps)
    return VideoPlan(video_index=video_index, wall_rgb=wall, counter_rgb=counter, objects=initial, actions=actions,
                     n_frames=n_frames)


# ------------------------------------------------------------------------------------------------ play


def _smooth(t: float) -> float:
    """Smoothstep on [0, 1]: zero velocity at both ends, so motion starts and stops gently."""
    t = min(max(t, 0.0), 1.0)
    return t * t * (3 - 2 * t)


def _lerp(a, b, t):
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def _home(objects: dict[str, ObjectState], hand: str) -> tuple[float, float]:
    return HAND_HOLD[hand] if _holding(objects, hand) is not None else HAND_REST[hand]


HELD_OFFSET = 0.035  # a held object is drawn this far (scene units) above the palm centre, at the fingertips


def _held_pose(obj: ObjectState, hand: str, palm: tuple[float, float]) -> tuple[float, float, float]:
    """Where a held object is drawn: at the fingertips, just above the palm; knives point up and inwards."""
    angle = obj.angle
    if obj.kind == "knife":
        angle = -math.pi / 2 + (0.55 if hand == "left" else -0.55)
    return palm[0], palm[1] - HELD_OFFSET, angle


def _focus_point(objects, action: Action) -> tuple[float, float]:
    if action.destination is not None and action.verb in ("put", "pour"):
        return action.destination["x"], action.destination["y"]
    return grip_point(objects[action.object_id])


def _hand_target(objects, action: Action, focus: tuple[float, float]) -> tuple[float, float]:
    """Where the palm goes for the action, so that what it holds (or grips) lands on the focus point."""
    if action.verb in ("take", "put"):
        return focus[0], focus[1] + HELD_OFFSET
    if action.verb == "cut":
        return focus[0], focus[1] + HELD_OFFSET + 0.02  # the knife's blade over the tomato
    if action.verb == "pour":
        # the cup beside the bowl, towards the wall, on the acting hand's side
        side = -1.0 if action.hand == "left" else 1.0
        return focus[0] + side * 0.1, focus[1] - 0.04 + HELD_OFFSET
    return focus


def play(config: WorldConfig, plan: VideoPlan) -> list[FrameState]:
    """Every frame's state for a planned video."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, plan.video_index, 0x63616D]))
    fps = config.fps
    # head jitter: a sum of slow sines per axis (smooth, deterministic), amplitude config.camera_jitter
    freqs = rng.uniform(0.4, 2.5, size=(2, 3))  # Hz
    phases = rng.uniform(0, 2 * math.pi, size=(2, 3))
    amps = config.camera_jitter * rng.uniform(0.3, 1.0, size=(2, 3)) / 1.8
    objects = {o.id: copy.copy(o) for o in plan.objects}
    by_frame: dict[int, Action] = {}
    for a in plan.actions:
        for f in range(a.start, a.end + 1):
            by_frame[f] = a
    states: list[FrameState] = []
    hands_at_start: dict[int, tuple[float, float]] = {}
    applied: set[int] = set()
    for f in range(plan.n_frames):
        t = f / fps
        action = by_frame.get(f)
        palms = {h: _home(objects, h) for h in HANDS}
        overrides: dict[str, dict[str, Any]] = {}
        pouring = None
        phase = "idle"
        focus, gain = NEUTRAL_FOCUS, 0.0
        if action is not None:
            a = action
            if a.index not in hands_at_start:
                hands_at_start[a.index] = palms[a.hand]
            start_pose = hands_at_start[a.index]
            obj = objects[a.object_id]
            if a.change <= f and a.index not in applied:
                # the change is complete: apply the logical effect once; the hand holds still until the PNR,
                # then returns to its new home
                comp = {"object": a.object_id, "hand": a.hand, "destination": a.destination}
                _apply(objects, a.verb, comp)
                applied.add(a.index)
                obj = objects[a.object_id]
            home_after = _home(objects, a.hand) if a.index in applied else None
            focus_pt = _focus_point(objects, a)
            target = _hand_target(objects, a, focus_pt)
            reach_t = (f - a.start) / max(a.contact - a.start, 1)
            phase = "reach" if f < a.contact else ("contact" if f < a.change else ("hold" if f < a.pnr else "return"))
            if f < a.contact:
                palm = _lerp(start_pose, target, _smooth(reach_t))
            elif f < a.change:
                # contact -> change: the verb-specific change happens under the hand
                u = (f - a.contact) / max(a.change - a.contact, 1)
                palm = target
                if a.verb == "take":
                    palm = _lerp(target, HAND_HOLD[a.hand], 0.5 * _smooth(u))
                    overrides[obj.id] = {"held_by": a.hand, "place": "hand"}
                elif a.verb in ("open", "close"):
                    frac = _smooth(u) if a.verb == "open" else 1 - _smooth(u)
                    overrides[obj.id] = {"open": frac}
                    palm = grip_point(replace(obj, open=frac))
                elif a.verb == "pour":
                    bowl = objects[a.destination["place"]]
                    overrides[bowl.id] = {"fill": max(bowl.fill, _smooth(u))}
                    pouring = (obj.id, bowl.id)
                elif a.verb == "cut":
                    palm = (target[0], target[1] - 0.02 * abs(math.sin(u * 2 * math.pi)))  # chopping strokes
            else:
                # change -> PNR the hand holds still where the change left it; after the PNR it goes home
                u = (f - a.pnr) / max(a.end - a.pnr, 1) if f >= a.pnr else 0.0
                mid = _lerp(target, HAND_HOLD[a.hand], 0.5) if a.verb == "take" else target
                if a.verb in ("open", "close"):
                    mid = grip_point(obj)
                palm = _lerp(mid, home_after, _smooth(u))
            palms[a.hand] = palm
            # the gaze: towards the acted-on place from just before the reach until the PNR, then back
            rise = _smooth((f - (a.start - 0.3 * fps)) / (0.3 * fps))
            fall = 1.0 - _smooth((f - a.pnr) / max(a.end - a.pnr, 1))
            gain = a.gaze_gain * min(rise, fall)
            focus = focus_pt
            if a.cue == "misleading" and a.distractor_id is not None:
                d = _focus_point(objects, replace(a, object_id=a.distractor_id, verb="take"))
                # until shortly before the PNR the gaze and the idle hand go to the distractor
                switch = _smooth((f - (a.pnr - 0.3 * fps)) / (0.15 * fps))
                focus = _lerp(d, target, switch)
                gain = a.gaze_gain * min(_smooth((f - (a.start - 0.4 * fps)) / (0.3 * fps)), fall)
                other = "left" if a.hand == "right" else "right"
                # a feint of the idle hand: out towards the distractor and back, peaking at PRE-15
                peak = a.pnr - config.pre_frames
                width = 0.35 * fps
                bump = max(0.0, 1.0 - abs(f - peak) / width)
                palms[other] = _lerp(palms[other], d, 0.45 * _smooth(bump))
        # per-frame object view: held objects follow their hand's palm
        frame_objects = []
        for o in objects.values():
            fo = replace(o, **overrides.get(o.id, {}))
            if fo.held_by:
                fo.x, fo.y, fo.angle = _held_pose(fo, fo.held_by, palms[fo.held_by])
            frame_objects.append(fo)
        hands = {h: HandState(side=h, x=round(float(palms[h][0]), 6), y=round(float(palms[h][1]), 6),
                              holding=next((o.id for o in frame_objects if o.held_by == h), None)) for h in HANDS}
        jx = float(np.sum(amps[0] * np.sin(2 * math.pi * freqs[0] * t + phases[0])))
        jy = float(np.sum(amps[1] * np.sin(2 * math.pi * freqs[1] * t + phases[1])))
        # turning the head towards a point moves it towards the view centre: offset = -gain * (point - neutral)
        dx = -gain * (focus[0] - NEUTRAL_FOCUS[0]) + jx
        dy = -gain * (focus[1] - NEUTRAL_FOCUS[1]) * 0.6 + jy
        states.append(FrameState(frame=f, time=round(t, 6), camera_dx=round(dx, 6), camera_dy=round(dy, 6),
                                 wall_rgb=plan.wall_rgb, counter_rgb=plan.counter_rgb, hands=hands,
                                 objects=[_rounded(o) for o in frame_objects], pouring=pouring,
                                 action_index=None if action is None else action.index, phase=phase,
                                 blur=config.blur_shutter if config.motion_blur else 0.0))
    return states


def _rounded(o: ObjectState) -> ObjectState:
    """Round floats to 1e-6 so that the JSON states are short and render_state(json) == render_state(state)."""
    return replace(o, x=round(float(o.x), 6), y=round(float(o.y), 6), fill=round(float(o.fill), 6),
                   open=round(float(o.open), 6), angle=round(float(o.angle), 6))
