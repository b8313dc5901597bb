"""The LEGO in-context enrichment prompt (papers/000, supplement Fig. 9).

The system text is the paper's, verbatim. The paper's 12 worked examples per data set exist only as images
(its Figs. 7-8), so ours are written for kitchen scenes in the same form: action label + normalized boxes
of hands and objects -> one sentence. A query (worked or for inference) is rendered by :func:`format_query`,
so the examples and the inference item always share one format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from egoframe.data.records import ActionRecord
from egoframe.errors import InputError

SYSTEM_PROMPT = (
    "You are an AI assistant that provides a description of an image based on the action and object context. "
    "The action consists of a verb and nouns. Each object location is represented by a bounding box. For each "
    "bounding box, four numbers are provided in brackets \u2013 they are [x-coordinate of top-left, y-coordinate "
    "of top-left, x-coordinate of bottom-right, y-coordinate of bottom-right]. The origin is at the top-left of "
    "each frame. The x-axis is on the top and the y-axis is on the left. All coordinates are normalized to the "
    "range from 0 to 1. This information can be used to infer the spatial relation of hands and objects. Note "
    "that the detailed narration is in a natural and holistic style. Please add more details in the action. For "
    "example, try to describe which hand is used in each action like \u201cwith right hand\u201d or \u201cusing "
    "left hand\u201d. Try to describe the spatial relation of these objects like \u201con the right\u201d, \u201con "
    "the left\u201d, \u201cfrom ... to ...\u201d or use some spatial words like \u201cin\u201d, \u201con\u201d, "
    "\u201cout\u201d, \u201cfront\u201d, \u201cback\u201d, etc. Describe the image in only one sentence. Do not "
    "describe objects or actions that are not presented in action or objects locations context. Many examples "
    "are provided for learning and an additional example is provided for inference."
)


@dataclass(frozen=True)
class Example:
    """One worked in-context example: label, normalized boxes ``(label, (x0, y0, x1, y1))`` and the answer."""

    action: str
    boxes: tuple[tuple[str, tuple[float, float, float, float]], ...]
    description: str


def _ex(action: str, description: str, **boxes: tuple[float, float, float, float]) -> Example:
    # keyword names cannot hold spaces, so "red_cup" stands for the label "red cup"; hand labels keep "_"
    named = tuple((k if k.endswith("_hand") else k.replace("_", " "), v) for k, v in boxes.items())
    return Example(action, named, description)


DEFAULT_EXAMPLES: tuple[Example, ...] = (
    _ex("take cup", "The person takes the red cup from the left of the counter with the left hand.",
        left_hand=(0.08, 0.52, 0.30, 0.95), right_hand=(0.66, 0.58, 0.90, 0.98), red_cup=(0.14, 0.40, 0.26, 0.60)),
    _ex("put plate", "The person puts the white plate held in the right hand onto the table in front of the sink.",
        right_hand=(0.55, 0.50, 0.80, 0.92), white_plate=(0.45, 0.48, 0.75, 0.70), table=(0.0, 0.45, 1.0, 1.0),
        sink=(0.35, 0.20, 0.70, 0.42)),
    _ex("cut tomato", "The person holds the knife in the right hand and cuts the tomato on the cutting board "
        "while steadying it with the left hand.",
        left_hand=(0.20, 0.45, 0.45, 0.85), right_hand=(0.55, 0.40, 0.85, 0.90), knife=(0.45, 0.42, 0.70, 0.60),
        tomato=(0.38, 0.46, 0.52, 0.62), cutting_board=(0.20, 0.40, 0.85, 0.80)),
    _ex("open drawer", "The person pulls the drawer on the right out of the cabinet using the right hand.",
        right_hand=(0.62, 0.55, 0.88, 0.95), drawer=(0.55, 0.60, 0.98, 0.85)),
    _ex("pour water", "The person pours water from the jug in the right hand into the glass on the left.",
        right_hand=(0.50, 0.30, 0.78, 0.75), jug=(0.45, 0.25, 0.70, 0.60), glass=(0.25, 0.50, 0.38, 0.75)),
    _ex("close fridge", "The person pushes the fridge door closed with the left hand.",
        left_hand=(0.15, 0.35, 0.40, 0.80), fridge=(0.0, 0.0, 0.55, 1.0)),
    _ex("wash bowl", "The person holds the blue bowl under the tap in the sink with the left hand and scrubs it "
        "with the sponge in the right hand.",
        left_hand=(0.25, 0.45, 0.48, 0.85), right_hand=(0.52, 0.45, 0.78, 0.88), blue_bowl=(0.32, 0.42, 0.60, 0.65),
        sponge=(0.50, 0.40, 0.62, 0.55), sink=(0.10, 0.30, 0.90, 0.90)),
    _ex("turn on tap", "The person turns on the tap at the back of the sink with the right hand.",
        right_hand=(0.52, 0.20, 0.72, 0.55), tap=(0.48, 0.10, 0.60, 0.30), sink=(0.20, 0.25, 0.85, 0.80)),
    _ex("stir soup", "The person stirs the soup in the pot on the stove with the spoon in the right hand.",
        right_hand=(0.55, 0.30, 0.80, 0.70), spoon=(0.45, 0.25, 0.62, 0.55), pot=(0.30, 0.40, 0.70, 0.80)),
    _ex("pick up knife", "The person picks up the knife lying on the right of the cutting board with the right hand.",
        left_hand=(0.10, 0.60, 0.30, 0.98), right_hand=(0.60, 0.50, 0.85, 0.90), knife=(0.62, 0.45, 0.90, 0.58),
        cutting_board=(0.30, 0.40, 0.95, 0.80)),
    _ex("put cup", "The person places the green cup from the left hand into the dish rack on the left.",
        left_hand=(0.10, 0.35, 0.35, 0.80), green_cup=(0.15, 0.30, 0.30, 0.55), dish_rack=(0.0, 0.30, 0.40, 0.75)),
    _ex("throw paper", "The person throws the paper in the right hand into the bin at the front right.",
        right_hand=(0.60, 0.45, 0.85, 0.85), paper=(0.62, 0.40, 0.75, 0.55), bin=(0.70, 0.70, 0.98, 1.0)),
)


def _fmt_box(label: str, xyxy: tuple[float, float, float, float]) -> str:
    # clamp: annotation boxes may poke out of the frame and the prompt promises a 0-1 range
    nums = ", ".join(f"{min(1.0, max(0.0, v)):.3f}" for v in xyxy)
    return f"{label} [{nums}]"


def query_boxes(record: ActionRecord) -> list[tuple[str, tuple[float, float, float, float]]]:
    """Normalized boxes of one record for the prompt: input-frame boxes first (what the model will see)."""
    if record.width <= 0 or record.height <= 0:
        return []
    order = sorted(record.boxes, key=lambda b: (b.frame != "input", b.frame))
    multi_frame = len({b.frame for b in record.boxes}) > 1
    out = []
    for box in order:
        # with boxes from several annotated frames the frame name disambiguates repeated labels
        label = f"{box.label} ({box.frame} frame)" if multi_frame else box.label
        out.append((label, box.normalized(record.width, record.height)))
    return out


def format_query(action: str, boxes: list[tuple[str, tuple[float, float, float, float]]] | tuple) -> str:
    """The text of one example without its answer: ``Action: ...`` and ``Objects: ...`` lines."""
    objects = "; ".join(_fmt_box(label, xyxy) for label, xyxy in boxes) or "none annotated"
    return f"Action: {action}\nObjects: {objects}"


def format_record_query(record: ActionRecord) -> str:
    return format_query(record.action, query_boxes(record))


@dataclass
class PromptTemplate:
    """System text + worked examples; ``messages(record)`` gives the chat messages of Fig. 9."""

    system: str = SYSTEM_PROMPT
    examples: tuple[Example, ...] = field(default=DEFAULT_EXAMPLES)

    def examples_text(self) -> str:
        parts = [f"({i}) {format_query(ex.action, ex.boxes)}\nDescription: {ex.description}"
                 for i, ex in enumerate(self.examples, 1)]
        return "Examples for learning:\n" + "\n".join(parts)

    def messages(self, record: ActionRecord) -> list[dict[str, str]]:
        return [
            {"role": "system", "content": self.system},
            {"role": "user", "content": self.examples_text()},
            {"role": "user", "content": "Example for inference:\n" + format_record_query(record)},
        ]

    def fingerprint(self) -> str:
        """Short hash of the prompt, stored with every answer so that prompt changes stay traceable."""
        blob = json.dumps([self.system, [(e.action, e.boxes, e.description) for e in self.examples]])
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def load_examples(path: str) -> tuple[Example, ...]:
    """Worked examples from a JSON list of ``{"action", "boxes": [[label, [x0,y0,x1,y1]], ...], "description"}``."""
    try:
        with open(path, encoding="utf-8") as fh:
            rows = json.load(fh)
        examples = tuple(
            Example(str(r["action"]), tuple((str(lbl), tuple(float(v) for v in xyxy)) for lbl, xyxy in r["boxes"]),
                    str(r["description"]))
            for r in rows
        )
    except FileNotFoundError:
        raise InputError(f"examples file not found: {path}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"bad examples file {path}: expected a JSON list of "
                         f'{{"action", "boxes": [[label, [x0, y0, x1, y1]]], "description"}} ({exc})') from None
    if not examples:
        raise InputError(f"examples file {path} holds no examples")
    return examples


__all__ = ["SYSTEM_PROMPT", "DEFAULT_EXAMPLES", "Example", "PromptTemplate", "format_query",
           "format_record_query", "query_boxes", "load_examples"]
