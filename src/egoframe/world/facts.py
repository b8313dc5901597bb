"""The world's facts: what an action can change, read off a true scene state; the truth every judge checks.

:data:`HEADS` names each fact and its classes (what each hand holds, drawers, tap, cut / placed tomatoes,
cup and bowl fill, coarse object places, and whether the frame shows the kitchen at all). The oracle state
reader (:mod:`egoframe.evaluation.oracle`) learns to read them from pixels; curation uses them to drop pairs
in which nothing happened; evaluation judges generated frames with :func:`action_success`.

*Action success* of a frame for an action with true input state S_in and true target state S_tg: the frame's
facts equal facts(S_tg) on every fact the action is about, i.e. :data:`COMMON_FACTS` (the frame shows the
kitchen, both hands are there holding what they should), the facts of its verb (open/close: both drawers;
turn-on/off: the tap; cut: the cut count; pour: every cup and bowl fill) and every fact whose true value
differs between S_in and S_tg (e.g. "take cup": the taken cup's place becomes ``hand`` and the acting hand's
fact becomes that cup's colour, so the *right* cup must be in the *right* hand). *State accuracy* is the share
of all facts equal to facts(S_tg): it also punishes damage to the rest of the scene.
"""

from __future__ import annotations

import os
from typing import Sequence

from egoframe.errors import InputError
from egoframe.world.make import WorldManifest, load_states
from egoframe.world.state import FrameState, counter_third

CUP_COLOURS = ("red", "green", "blue", "yellow")
BOWL_COLOURS = ("white", "purple", "orange")
# "no hand": the hand is not in the frame (painted out, or a generator lost it): it never reads as holding.
HELD = ("nothing", "red cup", "green cup", "blue cup", "yellow cup", "knife", "tomato", "no hand")
PLACES = ("absent", "hand", "board", "counter-left", "counter-middle", "counter-right")
COUNTS = ("0", "1", "2", "3")

# fact name -> its classes. Object identity = kind + colour (the two tomatoes look alike, so they are counted).
HEADS: dict[str, tuple[str, ...]] = {
    # "unreadable": noise, a flat frame, anything that is not a view of the kitchen
    "frame": ("kitchen", "unreadable"),
    "left_hand": HELD,
    "right_hand": HELD,
    "drawer_left": ("closed", "open"),
    "drawer_right": ("closed", "open"),
    "tap": ("off", "on"),
    "tomatoes_cut": COUNTS,
    "tomatoes_on_board": COUNTS,
    "tomatoes_in_bowls": COUNTS,
    **{f"cup_{c}": ("absent", "empty", "filled") for c in CUP_COLOURS},
    **{f"bowl_{c}": ("absent", "empty", "full") for c in BOWL_COLOURS},
    **{f"place_{c}_cup": PLACES for c in CUP_COLOURS},
    "place_knife": PLACES,
}

# Facts every action is judged on: the frame shows the kitchen, and both hands are there holding what they
# should (an action is done by a hand: a frame without the acting hand does not show it done).
COMMON_FACTS = ("frame", "left_hand", "right_hand")
# Facts each verb is about, whatever changed (world verbs, docs/world.md).
VERB_FACTS: dict[str, tuple[str, ...]] = {
    "take": COMMON_FACTS,
    "put": COMMON_FACTS,
    "open": COMMON_FACTS + ("drawer_left", "drawer_right"),
    "close": COMMON_FACTS + ("drawer_left", "drawer_right"),
    "turn-on": COMMON_FACTS + ("tap",),
    "turn-off": COMMON_FACTS + ("tap",),
    "cut": COMMON_FACTS + ("tomatoes_cut",),
    "pour": COMMON_FACTS + tuple(f"cup_{c}" for c in CUP_COLOURS) + tuple(f"bowl_{c}" for c in BOWL_COLOURS),
}


def _place(obj) -> str:
    if obj.held_by:
        return "hand"
    if obj.place == "board":
        return "board"
    # thirds of the counter in scene x (camera motion does not move it)
    return ("counter-left", "counter-middle", "counter-right")[counter_third(obj.x)]


def state_facts(state, hidden_hands: Sequence[str] = ()) -> dict[str, str]:
    """The facts of a :class:`~egoframe.world.FrameState` (or its dict form), one class name per head.

    ``hidden_hands``: hands painted out of the frame (``render_state(..., hidden_hands=...)``) read "no hand".
    """
    if isinstance(state, dict):
        state = FrameState.from_dict(state)
    facts = {name: classes[0] for name, classes in HEADS.items()}
    by_id = {o.id: o for o in state.objects}
    for side in ("left", "right"):
        held = state.hands[side].holding
        if side in hidden_hands:
            facts[f"{side}_hand"] = "no hand"
        elif held is None:
            facts[f"{side}_hand"] = "nothing"
        else:
            obj = by_id[held]
            facts[f"{side}_hand"] = obj.name if obj.kind == "cup" else obj.kind
    tomatoes = [o for o in state.objects if o.kind == "tomato"]
    facts["tomatoes_cut"] = str(min(sum(t.cut for t in tomatoes), 3))
    facts["tomatoes_on_board"] = str(min(sum(t.place == "board" and not t.held_by for t in tomatoes), 3))
    facts["tomatoes_in_bowls"] = str(min(sum(t.place.startswith("bowl") and not t.held_by for t in tomatoes), 3))
    for obj in state.objects:
        if obj.kind == "drawer":
            facts[obj.id] = "open" if obj.open >= 0.5 else "closed"
        elif obj.kind == "tap":
            facts["tap"] = "on" if obj.on else "off"
        elif obj.kind == "cup":
            facts[f"cup_{obj.colour}"] = "filled" if obj.filled else "empty"
            facts[f"place_{obj.colour}_cup"] = _place(obj)
        elif obj.kind == "bowl":
            facts[f"bowl_{obj.colour}"] = "full" if obj.fill >= 0.5 else "empty"
        elif obj.kind == "knife":
            facts["place_knife"] = _place(obj)
    return facts


def action_facts(verb: str, input_facts: dict[str, str], target_facts: dict[str, str]) -> list[str]:
    """The facts an action is judged on: its verb's facts plus every fact the true state changed.

    Verbs arrive in every spelling the readers produce: "turn-on" (world), "turn_on" (Ego4D structured
    verb), "turn on" (the curated record's verb).
    """
    verb = "-".join(verb.strip().lower().replace("_", " ").split())
    if verb not in VERB_FACTS:
        raise InputError(f"unknown world verb {verb!r}; expected one of {', '.join(VERB_FACTS)}")
    changed = [name for name in HEADS if input_facts[name] != target_facts[name]]
    return [name for name in HEADS if name in VERB_FACTS[verb] or name in changed]


def action_success(predicted: dict[str, str], verb: str, input_facts: dict[str, str],
                   target_facts: dict[str, str]) -> bool:
    return all(predicted[name] == target_facts[name] for name in action_facts(verb, input_facts, target_facts))


def state_accuracy(predicted: dict[str, str], target_facts: dict[str, str]) -> float:
    return sum(predicted[name] == target_facts[name] for name in HEADS) / len(HEADS)


def facts_to_indices(facts: dict[str, str]) -> list[int]:
    return [HEADS[name].index(facts[name]) for name in HEADS]


class WorldStates:
    """True per-frame states of a world, read lazily per video (a few ms each)."""

    def __init__(self, world: str | os.PathLike):
        self.root = os.fspath(world)
        self.manifest = WorldManifest.load(self.root)
        self._paths = {v["video_id"]: self.manifest.path(v["states_path"]) for v in self.manifest.videos}
        self._cache: dict[str, list] = {}
        self._actions: dict[str, dict[str, dict]] = {}

    def state(self, video_id: str, frame: int):
        if video_id not in self._paths:
            raise InputError(f"video {video_id!r} is not in the world at {self.root}")
        if video_id not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[video_id] = load_states(self._paths[video_id])
        states = self._cache[video_id]
        if not 0 <= frame < len(states):
            raise InputError(f"frame {frame} is outside video {video_id} ({len(states)} frames)")
        return states[frame]

    def action(self, video_id: str, narration_id: str) -> dict:
        """The annotated action ``narration_id`` of a video (its ``parts/<video>.json`` entry: label, hand, object,
        every completion the label allows, frames)."""
        import json

        if video_id not in self._actions:
            path = os.path.join(self.root, "parts", f"{video_id}.json")
            if not os.path.isfile(path):
                raise InputError(f"video {video_id!r} has no annotation in {self.root}/parts")
            with open(path) as fh:
                self._actions[video_id] = {a["narration_id"]: a for a in json.load(fh)["actions"]}
        if narration_id not in self._actions[video_id]:
            raise InputError(f"action {narration_id!r} is not in video {video_id!r} of the world at {self.root}")
        return self._actions[video_id][narration_id]


# an object counts as shown when at least this share of its drawn area is visible (object_visibility)
MIN_VISIBLE = 0.5


def fact_objects(state, name: str) -> list[str]:
    """Ids of the objects a fact is read from: the cup of a colour for its fill and place, the bowl, the knife,
    the drawer, the tap, and for a tomato count the tomatoes it counts (those on the board, in a bowl, or cut).
    The hands and the ``frame`` fact are read from no object (always shown while the hand is drawn)."""
    if isinstance(state, dict):
        state = FrameState.from_dict(state)
    objects = state.objects
    if name.startswith("cup_") or (name.startswith("place_") and name.endswith("_cup")):
        colour = name.split("_")[1]
        return [o.id for o in objects if o.kind == "cup" and o.colour == colour]
    if name.startswith("bowl_"):
        return [o.id for o in objects if o.kind == "bowl" and o.colour == name[len("bowl_"):]]
    if name == "place_knife":
        return [o.id for o in objects if o.kind == "knife"]
    if name == "tap":
        return [o.id for o in objects if o.kind == "tap"]
    if name in ("drawer_left", "drawer_right"):  # the drawers' ids are their facts' names
        return [o.id for o in objects if o.id == name]
    counted = {"tomatoes_cut": lambda t: t.cut,
               "tomatoes_on_board": lambda t: t.place == "board" and not t.held_by,
               "tomatoes_in_bowls": lambda t: t.place.startswith("bowl") and not t.held_by}
    if name in counted:
        return [o.id for o in objects if o.kind == "tomato" and counted[name](o)]
    return []


def readable_facts(state, visibility: dict[str, float], min_visible: float = MIN_VISIBLE) -> list[str]:
    """The facts a frame of ``state`` shows: every fact whose objects (:func:`fact_objects`) are each at least
    ``min_visible`` visible (``visibility``: :func:`egoframe.world.render.object_visibility` of the same state).

    A cup hidden under the arm that reaches past it, or behind the cup the other hand holds, has a true place
    and fill that no reader of the frame can see; scoring them measures guessing, not reading. Evaluation
    reports reading accuracy on these facts beside the accuracy on all facts (docs/evaluation.md).
    """
    return [name for name in HEADS
            if all(visibility.get(obj, 1.0) >= min_visible for obj in fact_objects(state, name))]


AMBIGUITIES = ("object", "hand", "place")


def label_ambiguity(completions: Sequence[dict]) -> dict[str, bool]:
    """What an action's bare label leaves open, from every completion the world says it allows: which object
    ("take cup" with three cups on the counter), which hand, which destination. LEGO's premise is that the
    enriched description and the VLLM's reading of the frame settle exactly these (papers/001, Sec. 1: labels
    "lack the necessary details ... to associate the action with correct objects and body movements")."""
    objects = {c["object"] for c in completions}
    hands = {c["hand"] for c in completions}
    places = {None if c["destination"] is None else (c["destination"]["place"], round(c["destination"]["x"], 2),
                                                     round(c["destination"]["y"], 2)) for c in completions}
    return {"object": len(objects) > 1, "hand": len(hands) > 1, "place": len(places) > 1}


def unchanged_pair(world: WorldStates, video_id: str, verb: str, input_frame: int, target_frame: int) -> bool:
    """True when the true states of the two frames agree on every fact the action is about: the pair shows
    nothing happening (what the paper's "too similar" CLIP filter is there to drop)."""
    fin = state_facts(world.state(video_id, input_frame))
    ftg = state_facts(world.state(video_id, target_frame))
    return all(fin[k] == ftg[k] for k in action_facts(verb, fin, ftg))


__all__ = ["AMBIGUITIES", "BOWL_COLOURS", "COMMON_FACTS", "COUNTS", "CUP_COLOURS", "HEADS", "HELD", "MIN_VISIBLE", "PLACES",
           "VERB_FACTS", "WorldStates", "action_facts", "action_success", "fact_objects", "facts_to_indices", "label_ambiguity",
           "readable_facts", "state_accuracy", "state_facts", "unchanged_pair"]
