"""From a played video to annotations: boxes, EPIC-KITCHENS-100 times, Ego4D FHO frames, ground-truth pairs.

Timing contract (what makes the real-format readers find the world's true frames):

- The input frame is PRE-15: ``pnr - round(pre_offset_s * fps)`` (15 frames at 30 fps), 0-based.
- Ego4D FHO: ``frames[].frame_number`` is the 0-based frame index in the video; the ``pre_15`` entry is the input
  frame and ``pnr_frame`` the target frame.
- EPIC-KITCHENS-100: LEGO takes the input at ``start - 0.25 s`` and the target at ``start + 0.6 (stop - start)``.
  So the world sets ``start = pre/fps + 0.25`` and ``stop = start + (pnr/fps - start) / 0.6``, rounded to the
  CSV's 1/100 s so that the times land 0.1-0.35 frame *after* the true frame's timestamp: then
  ``floor(t * fps)`` and ``round(t * fps)`` both give the true 0-based frame. (Forced by the rule, the EPIC
  window is short, 0.25 s before to 0.17 s after the PNR at 30 fps; the full motion is in the Ego4D window.)
  ``start_frame``/``stop_frame`` are 1-based like EPIC's: ``floor(t * fps) + 1``.
"""

from __future__ import annotations

import math
from typing import Any

from egoframe.data.records import ActionRecord, Box
from egoframe.world.config import WorldConfig
from egoframe.world.simulate import Action, VideoPlan
from egoframe.world.state import (
    CUP_RADIUS,
    KNIFE_LENGTH,
    PALM_RADIUS,
    TOMATO_RADIUS,
    FrameState,
    ObjectState,
    object_extent,
)

# Class tables written next to the CSVs (EPIC_100_verb_classes.csv / EPIC_100_noun_classes.csv layout).
VERB_CLASSES: dict[str, int] = {"take": 0, "put": 1, "open": 3, "close": 4, "turn-on": 6, "cut": 7, "turn-off": 8,
                                "pour": 9}
NOUN_CLASSES: dict[str, int] = {"tap": 0, "knife": 4, "bowl": 7, "drawer": 8, "cup": 13, "board:chopping": 17,
                                "tomato": 42, "counter": 58}
VERB_FORMS = {"take": "takes", "put": "puts", "open": "opens", "close": "closes", "cut": "cuts", "pour": "pours",
              "turn-on": "turns on", "turn-off": "turns off"}
NOUN_PHRASE = {"cup": "a cup", "knife": "a knife", "tomato": "a tomato", "drawer": "a drawer", "tap": "the tap"}
# Ego4D FHO frame types in order, with their offset before the PNR in seconds (PRE-45 = 45 frames at 30 fps).
PRE_FRAMES_S = {"pre_45": 1.5, "pre_30": 1.0}


# ------------------------------------------------------------------------------------------------- boxes


def _clip_box(x0, y0, x1, y1, res: int) -> tuple[float, float, float, float] | None:
    """Scene-view box (fractions) -> pixel box clipped to the frame; None when nothing of it is visible."""
    x0, x1 = max(x0 * res, 0.0), min(x1 * res, float(res))
    y0, y1 = max(y0 * res, 0.0), min(y1 * res, float(res))
    if x1 - x0 < 1.0 or y1 - y0 < 1.0:
        return None
    return round(x0, 2), round(y0, 2), round(x1, 2), round(y1, 2)


def object_box(state: FrameState, obj: ObjectState, res: int):
    x0, y0, x1, y1 = object_extent(obj)
    return _clip_box(x0 + state.camera_dx, y0 + state.camera_dy, x1 + state.camera_dx, y1 + state.camera_dy, res)


def hand_box(state: FrameState, side: str, res: int):
    h = state.hands[side]
    r = PALM_RADIUS * 1.2  # palm disc plus the fingers' reach
    return _clip_box(h.x - r + state.camera_dx, h.y - r + state.camera_dy, h.x + r + state.camera_dx,
                     h.y + r + state.camera_dy, res)


def destination_box(state: FrameState, action: Action, res: int):
    """Box of where a put/pour goes: the bowl or board itself, or the counter spot the object will cover."""
    d = action.destination
    if d is None:
        return None
    if d["object_id"]:
        return object_box(state, state.object(d["object_id"]), res)
    kind = action.object_id.split("_")[0]
    r = {"cup": CUP_RADIUS, "tomato": TOMATO_RADIUS, "knife": KNIFE_LENGTH / 2}[kind]
    return _clip_box(d["x"] - r + state.camera_dx, d["y"] - r + state.camera_dy, d["x"] + r + state.camera_dx,
                     d["y"] + r + state.camera_dy, res)


def frame_boxes(state: FrameState, action: Action, res: int) -> list[dict[str, Any]]:
    """Boxes of one annotated frame: both hands, the object of change, the tool, the destination.

    Each: {"role", "noun", "instance", "box": (x0, y0, x1, y1) pixels}. ``noun`` carries the attribute
    ("red cup", "left drawer"), so an enrichment prompt built from boxes can name the object.
    """
    out = []
    for side in ("left", "right"):
        b = hand_box(state, side, res)
        if b is not None:
            out.append({"role": f"{side}_hand", "noun": None, "instance": None, "box": b})

    def add(role: str, obj: ObjectState, b):
        if b is not None:
            suffix = obj.id.rsplit("_", 1)[-1]
            # Ego4D numbers instances of a noun from 1; ours follow the object id ("cup_2" -> 3)
            instance = int(suffix) + 1 if suffix.isdigit() else 1
            out.append({"role": role, "noun": obj.name, "instance": instance, "box": b})

    obj = state.object(action.object_id)
    add("object_of_change", obj, object_box(state, obj, res))
    if action.tool_id:
        tool = state.object(action.tool_id)
        add("tool", tool, object_box(state, tool, res))
    if action.destination is not None:
        d = action.destination
        dest = state.object(d["object_id"]) if d["object_id"] else ObjectState(id="counter_0", kind="counter",
                                                                                name="counter")
        add("destination", dest, destination_box(state, action, res))
    return out


# ----------------------------------------------------------------------------------------------- timing


def key_frames(config: WorldConfig, action: Action) -> dict[str, int]:
    """Ego4D FHO frame types -> 0-based frame index (clipped at 0)."""
    fps = config.fps
    frames = {name: max(action.pnr - round(sec * fps), 0) for name, sec in PRE_FRAMES_S.items()}
    frames["pre_15"] = action.pnr - config.pre_frames
    frames["pre_frame"] = action.start
    frames["contact_frame"] = action.contact
    frames["pnr_frame"] = action.pnr
    frames["post_frame"] = action.end
    return frames


def epic_window(config: WorldConfig, pre: int, pnr: int) -> tuple[int, int]:
    """EPIC (start, stop) in centiseconds whose LEGO input/target times fall on frames ``pre``/``pnr``.

    Picks, among neighbouring hundredths, the times whose frame position is closest to 0.2 frame past the
    true frame, so that floor and round of ``t * fps`` agree on it.
    """
    fps, delta, lam = config.fps, config.epic_input_offset_s, config.epic_target_lambda

    def start_pos(s_cs: int) -> float:
        return (s_cs / 100 - delta) * fps - pre

    ideal = round(((pre + 0.2) / fps + delta) * 100)
    start = min((ideal + k for k in (-1, 0, 1)), key=lambda s: abs(start_pos(s) - 0.2))

    def target_pos(e_cs: int) -> float:
        return (start / 100 + lam * (e_cs - start) / 100) * fps - pnr

    ideal = round(start + ((pnr + 0.2) / fps - start / 100) / lam * 100)
    stop = min((ideal + k for k in (-1, 0, 1)), key=lambda e: abs(target_pos(e) - 0.2))
    assert 0.0 < start_pos(start) < 0.5 and 0.0 < target_pos(stop) < 0.5, (pre, pnr, start, stop)
    return start, stop


def epic_timestamp(centis: int, decimals: int = 2) -> str:
    """Centiseconds -> "HH:MM:SS.ff" (EPIC start/stop); decimals=3 gives the narration's "HH:MM:SS.fff"."""
    h, rem = divmod(centis, 360000)
    m, rem = divmod(rem, 6000)
    s, cs = divmod(rem, 100)
    frac = f"{cs:02d}" if decimals == 2 else f"{cs * 10:03d}"
    return f"{h:02d}:{m:02d}:{s:02d}.{frac}"


# -------------------------------------------------------------------------------------------- per video


def oracle_description(action: Action, state: FrameState) -> str:
    """One sentence with the details the label leaves out (hand, which object, where): built from the
    annotation, as LEGO's GPT prompt builds it from boxes, never from the target frame's pixels."""
    obj = state.object(action.object_id)
    hand = f"the {action.hand} hand"
    if action.verb == "take":
        place = "cutting board" if obj.place == "board" else ("counter" if obj.place == "counter" else obj.place)
        return f"{hand} takes the {obj.name} from the {place}"
    if action.verb == "put":
        into = "into" if action.destination["place"].startswith("bowl") else "on"
        return f"{hand} puts the {obj.name} {into} the {action.destination['name']}"
    if action.verb == "pour":
        return f"{hand} pours the water from the {obj.name} into the {action.destination['name']}"
    if action.verb == "cut":
        where = "cutting board" if obj.place == "board" else "counter"
        return f"{hand} cuts the {obj.name} on the {where} with the knife"
    return f"{hand} {VERB_FORMS[action.verb]} the {obj.name}"


def video_part(config: WorldConfig, plan: VideoPlan, states: list[FrameState], video: dict[str, Any]) -> dict:
    """Everything the world-level files need about one video, as JSON-able data (saved as parts/<id>.json)."""
    res = config.resolution
    actions = []
    for a in plan.actions:
        frames = key_frames(config, a)
        start_cs, stop_cs = epic_window(config, frames["pre_15"], a.pnr)
        pre_state = states[frames["pre_15"]]
        actions.append({
            "index": a.index,
            "narration_id": f"{video['video_id']}_{a.index}",
            "verb": a.verb,
            "noun": a.noun,
            "label": a.label,
            "hand": a.hand,
            "object_id": a.object_id,
            "object_name": pre_state.object(a.object_id).name,
            "object_colour": pre_state.object(a.object_id).colour,
            "tool_id": a.tool_id,
            "destination": a.destination,
            "cue": a.cue,
            "distractor_id": a.distractor_id,
            "gaze_gain": round(a.gaze_gain, 4),
            "completions": a.candidates,
            "candidate_objects": sorted({c["object"] for c in a.candidates}),
            "frames": frames,
            "epic_start_cs": start_cs,
            "epic_stop_cs": stop_cs,
            "boxes": {name: frame_boxes(states[f], a, res) for name, f in frames.items()},
            "description": oracle_description(a, pre_state),
        })
    return {**video, "n_frames": plan.n_frames, "fps": config.fps, "width": res, "height": res,
            "duration_sec": round(plan.n_frames / config.fps, 6), "actions": actions}


def _action_frame_entries(part: dict, act: dict) -> list[dict[str, Any]]:
    entries = []
    for frame_type, frame_number in act["frames"].items():
        boxes = [{"object_type": b["role"], "structured_noun": b["noun"], "instance_number": b["instance"],
                  "bbox": {"x": b["box"][0], "y": b["box"][1], "width": round(b["box"][2] - b["box"][0], 2),
                           "height": round(b["box"][3] - b["box"][1], 2)}} for b in act["boxes"][frame_type]]
        entries.append({"frame_type": frame_type, "frame_number": frame_number, "clip_frame_number": frame_number,
                        "width": part["width"], "height": part["height"], "boxes": boxes})
    return entries


# ------------------------------------------------------------------------------------------ world files

EPIC_COLUMNS = ("narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
                "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
                "noun_class", "all_nouns", "all_noun_classes")


def epic_rows(part: dict) -> list[dict[str, Any]]:
    fps = part["fps"]
    rows = []
    for act in part["actions"]:
        start, stop = act["epic_start_cs"], act["epic_stop_cs"]
        narr_ms = round(act["frames"]["pre_frame"] / fps * 1000)
        rows.append({
            "narration_id": act["narration_id"],
            "participant_id": part["participant_id"],
            "video_id": part["video_id"],
            "narration_timestamp": epic_timestamp(narr_ms // 10, 3),
            "start_timestamp": epic_timestamp(start),
            "stop_timestamp": epic_timestamp(stop),
            "start_frame": math.floor(start / 100 * fps + 1e-9) + 1,
            "stop_frame": math.floor(stop / 100 * fps + 1e-9) + 1,
            "narration": act["label"],
            "verb": act["verb"],
            "verb_class": VERB_CLASSES[act["verb"]],
            "noun": act["noun"],
            "noun_class": NOUN_CLASSES[act["noun"]],
            # EPIC writes these as Python list literals
            "all_nouns": repr([act["noun"]]),
            "all_noun_classes": repr([NOUN_CLASSES[act["noun"]]]),
        })
    return rows


def fho_video(part: dict) -> dict[str, Any]:
    """One ``videos[]`` entry of an Ego4D ``fho_main.json``: one annotated interval spanning the video."""
    fps = part["fps"]
    narrated = []
    for act in part["actions"]:
        f = act["frames"]
        start_f, end_f = f["pre_45"], f["post_frame"]
        narr_sec = round(f["pre_frame"] / fps, 6)
        critical = {k: f[k] for k in ("pre_frame", "contact_frame", "pnr_frame", "post_frame")}
        narrated.append({
            "warnings": [],
            "uid": act["narration_id"],
            "start_sec": round(start_f / fps, 6), "end_sec": round(end_f / fps, 6),
            "start_frame": start_f, "end_frame": end_f,
            "is_valid_action": True, "is_partial": False,
            "clip_start_sec": round(start_f / fps, 6), "clip_end_sec": round(end_f / fps, 6),
            "clip_start_frame": start_f, "clip_end_frame": end_f,
            "narration_timestamp_sec": narr_sec, "clip_narration_timestamp_sec": narr_sec,
            "narration_annotation_uid": f"{part['video_id']}_narrations",
            "structured_verb": act["verb"].replace("-", "_"),
            "freeform_verb": act["verb"].replace("-", " "),
            # The action's bare noun ("cup"): the label must stay as ambiguous as a real one, while the
            # boxes' structured_noun carries the attribute ("green cup") that only the annotation knows.
            "structured_noun": act["noun"],
            "state_transition": None,
            "critical_frames": critical, "clip_critical_frames": dict(critical),
            "frames": _action_frame_entries(part, act),
            "is_rejected": False, "is_invalid_annotation": False, "reject_reason": None, "stage": None,
            "narration_text": f"#C C {VERB_FORMS[act['verb']]} {NOUN_PHRASE[act['noun']]}",
        })
    return {
        "video_uid": part["video_id"],
        "split": part["split"],
        "duration_sec": part["duration_sec"],
        "video_metadata": {"fps": fps, "num_frames": part["n_frames"], "width": part["width"],
                           "height": part["height"]},
        "annotated_intervals": [{
            "clip_uid": f"{part['video_id']}_clip",
            "start_sec": 0.0, "end_sec": part["duration_sec"],
            "start_frame": 0, "end_frame": part["n_frames"] - 1,
            "narrated_actions": narrated,
        }],
    }


def ground_truth_records(part: dict) -> list:
    """The world's true (input, target) pairs as the shared :class:`ActionRecord` type."""
    fps = part["fps"]
    out = []
    for act in part["actions"]:
        pre, pnr = act["frames"]["pre_15"], act["frames"]["pnr_frame"]
        boxes = [Box(label=b["noun"] or b["role"], x0=b["box"][0], y0=b["box"][1], x1=b["box"][2], y1=b["box"][3],
                     role=b["role"], frame=frame) for frame, key in (("input", "pre_15"), ("pnr", "pnr_frame"))
                 for b in act["boxes"][key]]
        out.append(ActionRecord(
            id=act["narration_id"], source="world", action=act["label"], verb=act["verb"], noun=act["noun"],
            video_id=part["video_id"], participant_id=part["participant_id"], fps=float(fps),
            input_frame=pre, target_frame=pnr, input_time=round(pre / fps, 6), target_time=round(pnr / fps, 6),
            width=part["width"], height=part["height"], boxes=boxes, narration=act["label"], split=part["split"],
            extra={
                "hand": act["hand"], "object_id": act["object_id"], "object_name": act["object_name"],
                "object_colour": act["object_colour"], "tool_id": act["tool_id"], "destination": act["destination"],
                "cue": act["cue"], "distractor_id": act["distractor_id"],
                "candidate_objects": act["candidate_objects"], "n_completions": len(act["completions"]),
                "frames": act["frames"], "oracle_description": act["description"],
                "video_path": part["video_path"], "states_path": part["states_path"],
            },
        ))
    return out
