"""The offline stand-ins for the embedded world, which read a frame's true ``FrameState`` instead of running a
model: for ReasonPix2Pix Part III (papers/003 Eq. 4-7, Fig. 6) the captioner (:func:`world_caption`), grounder,
rule picker and replacer (a re-render with the object changed); for SmartEdit (papers/002 Fig. 1) the segmenter
(the renderer's mask) and the inpainter (a re-render without the object); and the state helpers they share."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from egoframe.errors import InputError
from egoframe.siblings.synthesis.types import MASK_THRESHOLD, Detection, Frame, Pick, stable_index
from egoframe.world.render import render_object_alpha, render_state
from egoframe.world.state import BOWL_COLOURS, CUP_COLOURS


def require_state(frame: Frame, stage: str, flag: str = ""):
    """The frame's true world state; InputError naming --world (and the real model's ``flag``) without one."""
    if frame.state is None:
        real = f" or {flag} DIR for the real model" if flag else ""
        raise InputError(f"{stage} reads the embedded world's true state, which frame {frame.id} lacks: pass "
                         f"--world WORLD (the world the data came from){real}")
    return frame.state


def world_box(obj, state, resolution: int) -> tuple[float, float, float, float] | None:
    """The box of an object's drawn pixels in the view (its mask's bounding box, as a detector would box it;
    ``object_extent`` leaves out e.g. the tap's running water); None when it is off-frame."""
    ys, xs = np.nonzero(render_object_alpha(state, obj.id, resolution) > MASK_THRESHOLD)
    if len(xs) == 0:
        return None
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def state_without(state, object_id: str):
    """A copy of a world state without one object (and without the pouring stream it is part of)."""
    rest = copy.deepcopy(state)
    rest.objects = [o for o in rest.objects if o.id != object_id]
    if rest.pouring is not None and object_id in rest.pouring:
        rest.pouring = None
    return rest


# ------------------------------------------------------------------------- ReasonPix2Pix Part III: stand-ins


def _article(phrase: str) -> str:
    return "an" if phrase[:1].lower() in "aeiou" else "a"


def _plural(phrase: str) -> str:
    head, _, last = phrase.rpartition(" ")
    last = {"tomato": "tomatoes", "knife": "knives"}.get(last, last + "s")
    return f"{head} {last}".strip()


NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five"}


def _object_phrase(obj) -> str:
    if obj.kind == "cup":
        return f"{obj.colour} cup" + (" of water" if obj.filled else "")
    if obj.kind == "bowl":
        return f"{obj.colour} bowl" + (" of water" if obj.fill >= 0.5 else "")
    if obj.kind == "tomato":
        return "cut tomato" if obj.cut else "tomato"
    if obj.kind == "board":
        return "cutting board"
    if obj.kind == "drawer":
        return "open drawer" if obj.open >= 0.5 else "drawer"
    if obj.kind == "tap":
        return "running tap" if obj.on else "tap"
    return obj.kind


def world_caption(state) -> str:
    """What a captioner would say about a world frame, from its true state: the free objects (grouped), and
    what each hand holds. Deterministic; ``WorldCaptioner`` and the docs' examples use it."""
    order = {"cup": 0, "bowl": 1, "tomato": 2, "knife": 3, "board": 4, "drawer": 5, "tap": 6}
    free = sorted((o for o in state.objects if not o.held_by), key=lambda o: (order.get(o.kind, 9), o.id))
    counts = Counter(_object_phrase(o) for o in free)
    items = []
    for phrase, n in counts.items():
        items.append(f"{_article(phrase)} {phrase}" if n == 1 else f"{NUMBERS.get(n, str(n))} {_plural(phrase)}")
    if not items:
        listed = "nothing on it"
    elif len(items) == 1:
        listed = items[0]
    else:
        listed = ", ".join(items[:-1]) + " and " + items[-1]
    held = [f"the {side} hand holds the {_object_phrase(state.object(state.hands[side].holding))}"
            for side in ("left", "right") if state.hands[side].holding]
    # two sentences: with the hands as a clause of the first, spaCy's parser loses "counter" now and then
    text = f"A kitchen counter with {listed}."
    return text + (" " + " and ".join(held).capitalize() + "." if held else "")


class WorldCaptioner:
    """Stand-in for BLIP-2: :func:`world_caption` of the frame's true state."""

    def caption(self, frame: Frame) -> str:
        return world_caption(require_state(frame, "WorldCaptioner", "--blip2"))


# caption noun -> world object kind
WORLD_NOUNS = {"cup": "cup", "bowl": "bowl", "tomato": "tomato", "knife": "knife", "board": "board",
               "drawer": "drawer", "tap": "tap"}


class WorldGrounder:
    """Stand-in for Grounding DINO: the box of the drawn pixels of every object of the noun's kind, score 1;
    nouns that name no world object ("counter", "hand") get no box."""

    def ground(self, frame: Frame, nouns: Sequence[str]) -> list[Detection]:
        state = require_state(frame, "WorldGrounder", "--grounding-dino")
        found = []
        for noun in nouns:
            kind = WORLD_NOUNS.get(noun.lower())
            for obj in (o for o in state.objects if o.kind == kind):
                box = world_box(obj, state, frame.resolution)
                if box is not None:
                    found.append(Detection(noun, box, 1.0, obj.id))
        return found


class WorldRulePicker:
    """Stand-in for the LLM: recolour one grounded cup (else bowl) into a colour no other object of its kind has
    ("replace the red cup with a blue one"); object and colour are chosen by a hash of the frame id, so runs
    repeat and the data set still varies."""

    def pick(self, frame: Frame, caption: str, detections: Sequence[Detection]) -> Pick | None:
        state = require_state(frame, "WorldRulePicker")
        by_id = {o.id: o for o in state.objects}
        for kind, palette in (("cup", CUP_COLOURS), ("bowl", BOWL_COLOURS)):
            found = sorted({d.object_id: d for d in detections
                            if d.object_id in by_id and by_id[d.object_id].kind == kind}.values(),
                           key=lambda d: d.object_id)
            used = {o.colour for o in state.objects if o.kind == kind}
            free = [c for c in palette if c not in used]
            if not found or not free:
                continue
            det = found[stable_index(frame.id, len(found))]
            obj, colour = by_id[det.object_id], free[stable_index(frame.id + "/colour", len(free))]
            return Pick(category=kind, target=f"{colour} {kind}",
                        instruction=f"replace the {obj.name} with {_article(colour)} {colour} one", box=det.box,
                        object_id=obj.id, changes={"colour": colour, "name": f"{colour} {kind}"})
        return None


def _changes_from_target(obj, target: str) -> dict[str, Any] | None:
    """ObjectState fields that turn ``obj`` into ``target`` ("blue cup"): a recolour within the kind's palette."""
    palette = {"cup": CUP_COLOURS, "bowl": BOWL_COLOURS}.get(obj.kind, ())
    words = target.lower().replace("-", " ").split()
    if len(words) >= 2 and words[-1] == obj.kind and words[-2] in palette:
        return {"colour": words[-2], "name": f"{words[-2]} {obj.kind}"}
    return None


def _object_in_box(state, box, resolution: int, kind: str) -> str | None:
    """The world object of ``kind`` whose drawn box overlaps ``box`` best (IoU >= 0.5), for picks made on pixels."""
    best, best_iou = None, 0.5
    for obj in state.objects:
        if obj.kind != kind:
            continue
        other = world_box(obj, state, resolution)
        if other is None:
            continue
        ix = max(0.0, min(box[2], other[2]) - max(box[0], other[0]))
        iy = max(0.0, min(box[3], other[3]) - max(box[1], other[1]))
        inter = ix * iy
        union = (box[2] - box[0]) * (box[3] - box[1]) + (other[2] - other[0]) * (other[3] - other[1]) - inter
        if union > 0 and inter / union >= best_iou:
            best, best_iou = obj.id, inter / union
    return best


class WorldReplacer:
    """Stand-in for GLIGEN: re-render the frame's state with the picked object's attributes changed, so the
    input (the same state rendered) and the edited frame differ only at that object. Picks made on pixels
    (real grounder / LLM) are mapped to the object by box overlap and to a recolour by their target; None when
    the world cannot draw the target."""

    def replace(self, frame: Frame, pick: Pick) -> np.ndarray | None:
        state = require_state(frame, "WorldReplacer", "--gligen")
        object_id = pick.object_id or _object_in_box(state, pick.box, frame.resolution, pick.category)
        if object_id is None:
            return None
        edited_state = copy.deepcopy(state)
        obj = edited_state.object(object_id)
        changes = pick.changes or _changes_from_target(obj, pick.target)
        if not changes:
            return None
        for name, value in changes.items():
            setattr(obj, name, value)
        return render_state(edited_state, frame.resolution)


# =============================================================== SmartEdit copy-paste synthesis: stand-ins


class WorldSegmenter:
    """Stand-in for SAM: the renderer's soft mask of the object (``render_object_alpha``)."""

    def segment(self, frame: Frame, object_id: str) -> np.ndarray:
        state = require_state(frame, "WorldSegmenter")
        return render_object_alpha(state, object_id, frame.resolution)


class WorldInpainter:
    """Stand-in for inpainting (MAT in papers/002): the frame re-rendered without the object, i.e. the true
    background behind it."""

    def remove(self, frame: Frame, object_id: str, alpha: np.ndarray) -> np.ndarray:
        return render_state(state_without(require_state(frame, "WorldInpainter"), object_id), frame.resolution)
