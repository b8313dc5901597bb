"""The embedded, offline enricher: one deterministic sentence per record, from the annotation alone.

It adds what a label such as "take cup" lacks: WHICH HAND (the hand box overlapping, else nearest to, the
object of change), WHICH OBJECT (the object box's own label, e.g. "red cup") and WHERE (left / centre /
right of the frame, on the supporting surface when one is annotated; for put/pour-like verbs, the
destination). Like the paper's prompt it reads boxes and labels only, never target-frame pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from egoframe.data.records import ActionRecord, Box

RULES_MODEL = "rules-v1"  # bump when a template changes, so journals/parquet rows say which text they hold

HAND_ROLES = ("left_hand", "right_hand")
_PLACE_VERBS = {"put", "place", "put-down", "put down", "insert", "throw", "drop", "hang", "move", "transfer"}
_POUR_VERBS = {"pour", "fill", "empty", "sprinkle", "scoop"}
_TOOL_VERBS = {"cut", "slice", "chop", "peel", "stir", "mix", "spread", "scrape", "grate", "dice", "mince"}
# destinations one puts things *into* rather than *onto*
_CONTAINERS = {"bowl", "cup", "mug", "glass", "pot", "pan", "sink", "drawer", "basket", "box", "fridge",
               "cupboard", "bin", "jar", "bag", "oven", "microwave", "container", "rack", "kettle", "bottle"}


@dataclass
class RuleConfig:
    # surface named in WHERE when no annotated box under the object names it: ``surface`` for every record,
    # else by record.source (only the embedded world is known to be a counter scene)
    surface: str | None = None
    default_surface: dict[str, str] = field(default_factory=lambda: {"world": "counter"})
    # centre-x fractions that split the frame into left / centre / right
    left_edge: float = 1 / 3
    right_edge: float = 2 / 3


def third_person(verb: str) -> str:
    """ "take" -> "takes", "pick up" / "pick-up" -> "picks up", "wash" -> "washes", "empty" -> "empties"."""
    words = verb.replace("-", " ").split()
    if not words:
        return ""
    head = words[0].lower()
    if head.endswith(("s", "sh", "ch", "x", "z", "o")):
        head += "es"
    elif head.endswith("y") and len(head) > 1 and head[-2] not in "aeiou":
        head = head[:-1] + "ies"
    else:
        head += "s"
    return " ".join([head, *words[1:]])


def _area(b: Box) -> float:
    return max(0.0, b.x1 - b.x0) * max(0.0, b.y1 - b.y0)


def _intersection(a: Box, b: Box) -> float:
    w = min(a.x1, b.x1) - max(a.x0, b.x0)
    h = min(a.y1, b.y1) - max(a.y0, b.y0)
    return w * h if w > 0 and h > 0 else 0.0


def _gap(a: Box, b: Box) -> float:
    dx = max(0.0, max(a.x0, b.x0) - min(a.x1, b.x1))
    dy = max(0.0, max(a.y0, b.y0) - min(a.y1, b.y1))
    return (dx * dx + dy * dy) ** 0.5


def _centre(b: Box) -> tuple[float, float]:
    return ((b.x0 + b.x1) / 2, (b.y0 + b.y1) / 2)


def _centre_dist(a: Box, b: Box) -> float:
    (ax, ay), (bx, by) = _centre(a), _centre(b)
    return ((ax - bx) ** 2 + (ay - by) ** 2) ** 0.5


def _is_hand(b: Box) -> bool:
    return b.role in HAND_ROLES or b.label in HAND_ROLES


def _hand_side(b: Box) -> str:
    name = b.role if b.role in HAND_ROLES else b.label
    return "left" if name.startswith("left") else "right"


def _by_frame(boxes: list[Box], prefer: tuple[str, ...]) -> list[Box]:
    """Boxes ordered so that those on the preferred annotated frames come first, in ``prefer`` order."""
    rank = {name: i for i, name in enumerate(prefer)}
    return sorted(boxes, key=lambda b: rank.get(b.frame, len(prefer)))


def _pick(boxes: list[Box], role: str, prefer: tuple[str, ...]) -> Box | None:
    found = [b for b in boxes if b.role == role]
    return _by_frame(found, prefer)[0] if found else None


def find_object(record: ActionRecord) -> Box | None:
    """The object of change; without that role, the first non-hand box whose label ends with the noun."""
    box = _pick(record.boxes, "object_of_change", ("input", "pre", "pnr"))
    if box is not None:
        return box
    noun = (record.noun or " ".join(record.action.split()[1:])).split(":")[0].replace("_", " ").strip().lower()
    named = [b for b in record.boxes if not _is_hand(b) and noun and b.label.lower().endswith(noun)]
    return _by_frame(named, ("input", "pre", "pnr"))[0] if named else None


def find_hand(record: ActionRecord, target: Box) -> Box | None:
    """The hand doing the action on ``target``: most overlap, then smallest gap, then nearest centre.

    Hands are compared on the frame where hand and object meet when it is annotated (PNR, contact),
    else on the target's own frame, else on any frame.
    """
    hands = [b for b in record.boxes if _is_hand(b)]
    if not hands:
        return None
    same_frame_targets = {b.frame: b for b in record.boxes if b.role == target.role and b.label == target.label}
    for frame in ("pnr", target.frame, "input", *sorted({h.frame for h in hands})):
        here = [h for h in hands if h.frame == frame]
        ref = same_frame_targets.get(frame, target)
        if here:
            # right hand wins an exact tie (sorted last by the key's final element) only for determinism
            return min(here, key=lambda h: (-_intersection(h, ref), _gap(h, ref), _centre_dist(h, ref),
                                            _hand_side(h) != "right"))
    return None


def _support_label(record: ActionRecord, target: Box, exclude: tuple[Box, ...]) -> str | None:
    """Label of the smallest other box (a counter, a board, a sink) that holds the target's centre."""
    cx, cy = _centre(target)
    holders = [b for b in record.boxes
               if b not in exclude and not _is_hand(b) and b.frame == target.frame and b.label != target.label
               and b.role in ("other", "destination") and b.x0 <= cx <= b.x1 and b.y0 <= cy <= b.y1
               and _area(b) > _area(target)]
    return min(holders, key=_area).label if holders else None


def where(record: ActionRecord, target: Box, cfg: RuleConfig, exclude: tuple[Box, ...] = ()) -> str:
    """ "on the left of the counter", "in the centre", "on the right of the cutting board"."""
    if record.width <= 0:
        return ""
    cx = _centre(target)[0] / record.width
    side = "on the left" if cx < cfg.left_edge else "on the right" if cx > cfg.right_edge else "in the centre"
    surface = _support_label(record, target, exclude) or cfg.surface or cfg.default_surface.get(record.source)
    named = {target.label, *(b.label for b in exclude)}
    if surface and surface not in named:  # "onto the counter on the left", not "... of the counter"
        return f"{side} of the {surface}"
    return side


def find_destination(record: ActionRecord, obj: Box | None) -> Box | None:
    """The ``destination`` box; Ego4D has no such role, so else the other box the object meets at PNR."""
    box = _pick(record.boxes, "destination", ("pnr", "input"))
    if box is not None or obj is None:
        return box
    at_pnr = next((b for b in record.boxes if b.frame == "pnr" and b.role == obj.role and b.label == obj.label), obj)
    others = [b for b in record.boxes if b.role == "other" and not _is_hand(b) and b.label != obj.label]
    others = [b for b in others if b.frame == at_pnr.frame] or others
    touching = [b for b in others if _intersection(b, at_pnr) > 0]
    if not touching:
        return None
    return min(touching, key=lambda b: (-_intersection(b, at_pnr) / max(_area(at_pnr), 1e-9), _area(b)))


def describe(record: ActionRecord, cfg: RuleConfig | None = None) -> str:
    """One deterministic sentence for ``record`` (raises ValueError for a record without an action label)."""
    cfg = cfg or RuleConfig()
    if not record.action.strip():
        raise ValueError("record has no action label")
    words = record.action.split()
    verb = (record.verb or words[0]).replace("_", " ").strip()
    noun_label = (record.noun or " ".join(words[1:]) or "object").split(":")[0].replace("_", " ")
    obj = find_object(record)
    obj_name = obj.label.replace("_", " ") if obj is not None else noun_label
    hand = find_hand(record, obj) if obj is not None else None
    hand_side = _hand_side(hand) if hand is not None else None
    acts = third_person(verb)
    base_verb = verb.replace("-", " ").split()[0].lower()

    destination = find_destination(record, obj) if base_verb in _PLACE_VERBS | _POUR_VERBS else None
    tool = _pick(record.boxes, "tool", ("input", "pre", "pnr"))

    if destination is not None:
        dest_name = destination.label.replace("_", " ")
        prep = "into" if dest_name.split()[-1].lower() in _CONTAINERS else "onto"
        # where it lands: the object's own PNR box when it sits in/on the destination then, which for a
        # large surface (a counter) is far more precise than the surface's centre
        landed = next((b for b in record.boxes if obj is not None and b.frame == "pnr" and b.label == obj.label
                       and b.role == obj.role and _intersection(b, destination) > 0), None)
        spot = destination if landed is None or base_verb in _POUR_VERBS else landed
        place = where(record, spot, cfg, exclude=(destination,) if spot is landed else (obj,) if obj else ())
        held = f" from the {hand_side} hand" if hand_side else ""
        return f"the person {acts} the {obj_name}{held} {prep} the {dest_name} {place}".rstrip() + "."

    place = where(record, obj, cfg) if obj is not None else ""
    if tool is not None and base_verb in _TOOL_VERBS:
        tool_hand = find_hand(record, tool)
        tool_name = tool.label.replace("_", " ")
        holder = f"holds the {tool_name} in the {_hand_side(tool_hand)} hand and " if tool_hand else ""
        sentence = f"the person {holder}{acts} the {obj_name} {place}".rstrip()
        if not holder:
            sentence += f" with the {tool_name}"
        return sentence + "."
    sentence = f"the person {acts} the {obj_name} {place}".rstrip()
    if hand_side:
        sentence += f" with the {hand_side} hand"
    return sentence + "."
