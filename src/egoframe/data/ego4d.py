"""Ego4D Forecasting Hands & Objects annotations (fho_main.json) -> ActionRecords.

Layout: ``videos[] -> annotated_intervals[] -> narrated_actions[]``; each action lists ``frames[]`` of
``frame_type`` pre_45 / pre_30 / pre_15 / pre_frame / contact_frame / pnr_frame / post_frame with a
``frame_number`` and ``boxes[]`` (``object_type``, ``structured_noun``, ``bbox {x, y, width, height}``).
LEGO's pair: input = the PRE-15 frame, target = the PNR frame.

The official schema's flags and nulls, as this reader treats them (each skip is counted with its reason in
the curation report): ``is_rejected`` true, ``is_valid_action`` false or ``is_invalid_annotation`` true: the
annotators rejected the action, skipped. ``frames`` null: no per-frame annotation, the frame numbers come from
``critical_frames`` (no boxes); both null: skipped ("no frames annotated"). A chosen frame type (PRE-15, PNR)
absent or null in both, e.g. ``critical_frames.pnr_frame`` null: skipped. ``contact_frame`` (and any other
frame type than the two chosen) null: ignored, it is not used. ``stage`` (the annotation pass) null: ignored,
the frames annotated are used as they are.
"""

from __future__ import annotations

import json
import os
import re

from egoframe.data.records import ActionRecord, Box
from egoframe.data.report import Skip
from egoframe.errors import InputError

BOX_ROLES = ("left_hand", "right_hand", "object_of_change", "tool")
_NARRATION_PREFIX = re.compile(r"^\s*#\s*[Cc]\s+[Cc]\s+")


def short_label(structured: str | None) -> str:
    """``"take_(pick,_grab,_get)"`` -> ``"take"``; ``"cup_(mug)"`` -> ``"cup"``; underscores -> spaces."""
    if not structured:
        return ""
    return structured.split("_(")[0].replace("_", " ").strip()


def read_ego4d_fho(path: str, input_frame_type: str = "pre_15",
                   target_frame_type: str = "pnr_frame") -> tuple[list[ActionRecord], list[Skip]]:
    """Parse fho_main.json; rejected/invalid actions and actions without both frames are skipped with a reason."""
    if not os.path.isfile(path):
        raise InputError(f"Ego4D FHO annotation JSON not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("videos"), list):
        raise InputError(f"{path} has no 'videos' list: is it an Ego4D fho_main.json?")
    records: list[ActionRecord] = []
    skips: list[Skip] = []
    for video in data["videos"]:
        video_uid = str(video.get("video_uid", ""))
        meta = video.get("video_metadata") or {}
        for interval_index, interval in enumerate(video.get("annotated_intervals") or []):
            for action_index, action in enumerate(interval.get("narrated_actions") or []):
                # narration_annotation_uid names the narration pass (shared by many actions), not the action.
                action_id = str(action.get("uid") or f"{video_uid}_{interval_index:03d}_{action_index:03d}")
                try:
                    rec = _action_to_record(action, action_id, video_uid, interval, meta,
                                            input_frame_type, target_frame_type)
                except (KeyError, TypeError, ValueError) as exc:
                    skips.append(Skip(action_id, f"malformed narrated action: {exc!r}"))
                    continue
                if isinstance(rec, str):
                    skips.append(Skip(action_id, rec))
                else:
                    records.append(rec)
    return records, skips


def _action_to_record(action: dict, action_id: str, video_uid: str, interval: dict, meta: dict,
                      input_type: str, target_type: str) -> ActionRecord | str:
    if action.get("is_rejected") or action.get("is_valid_action") is False:
        return "action marked rejected/invalid by the annotators"
    if action.get("is_invalid_annotation"):
        return "annotation marked invalid by the annotators (is_invalid_annotation)"
    if action.get("frames") is None and action.get("critical_frames") is None:
        return "no frames annotated (frames and critical_frames are null)"
    frames = {f["frame_type"]: f for f in (action.get("frames") or []) if f and f.get("frame_type")}
    critical = action.get("critical_frames") or {}
    numbers = {}
    for frame_type in (input_type, target_type):
        if frame_type in frames and frames[frame_type].get("frame_number") is not None:
            numbers[frame_type] = int(frames[frame_type]["frame_number"])
        elif critical.get(frame_type) is not None:
            value = critical[frame_type]
            numbers[frame_type] = int(value["frame"] if isinstance(value, dict) else value)
        else:
            return f"no {frame_type} frame annotated"
    if numbers[input_type] < 0 or numbers[target_type] < 0:
        return f"negative frame number ({numbers[input_type]}, {numbers[target_type]})"
    boxes = []
    for frame_type, frame_role in ((input_type, "input"), (target_type, "pnr")):
        for raw in (frames.get(frame_type) or {}).get("boxes") or []:
            bbox = raw["bbox"]
            x, y = float(bbox["x"]), float(bbox["y"])
            width, height = float(bbox["width"]), float(bbox["height"])
            object_type = raw.get("object_type") or "other"
            boxes.append(Box(
                label=short_label(raw.get("structured_noun")) or object_type,
                x0=x, y0=y, x1=x + width, y1=y + height,
                role=object_type if object_type in BOX_ROLES else "other",
                frame=frame_role,
            ))
    verb = short_label(action.get("structured_verb")) or (action.get("freeform_verb") or "")
    noun = short_label(action.get("structured_noun")) or next(
        (b.label for b in boxes if b.role == "object_of_change" and b.frame == "pnr"),
        next((b.label for b in boxes if b.role == "object_of_change"), ""))
    narration = action.get("narration_text") or ""
    action_label = " ".join(x for x in (verb, noun) if x) or _NARRATION_PREFIX.sub("", narration).strip()
    if not action_label:
        return "no verb, noun or narration"
    fps = float(meta.get("fps") or 0.0)
    return ActionRecord(
        id=action_id,
        source="ego4d",
        action=action_label,
        verb=verb,
        noun=noun,
        video_id=video_uid,
        participant_id=str(meta.get("participant_id") or ""),
        fps=fps,
        input_frame=numbers[input_type],
        target_frame=numbers[target_type],
        boxes=boxes,
        narration=narration,
        extra={"clip_uid": interval.get("clip_uid") or "",
               "structured_verb": action.get("structured_verb") or "",
               "input_frame_type": input_type, "target_frame_type": target_type},
    )
