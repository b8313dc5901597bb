"""EPIC-KITCHENS-100 action annotations (EPIC_100_train.csv / EPIC_100_validation.csv) -> ActionRecords.

LEGO's pair rule: input frame at ``start - δi`` (δi = 0.25 s), target frame at ``start + λ·(stop - start)``
(λ = 0.6). The reader keeps times in seconds; frame indices need the video's fps and are set at curation.
"""

from __future__ import annotations

import csv
import os

from egoframe.data.records import ActionRecord
from egoframe.data.report import Skip
from egoframe.errors import InputError

EPIC_COLUMNS = ("narration_id", "participant_id", "video_id", "narration_timestamp", "start_timestamp",
                "stop_timestamp", "start_frame", "stop_frame", "narration", "verb", "verb_class", "noun",
                "noun_class", "all_nouns", "all_noun_classes")
REQUIRED_COLUMNS = ("narration_id", "participant_id", "video_id", "start_timestamp", "stop_timestamp")


def parse_timestamp(text: str) -> float:
    """``"HH:MM:SS.ff"`` (any number of fraction digits, as EPIC mixes 2 and 3) -> seconds.

    The fraction is read as a decimal fraction: dividing its digits by 100 (as some public loaders do)
    is wrong for the 3-digit ``narration_timestamp`` values.
    """
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise ValueError(f"timestamp {text!r} is not HH:MM:SS.ff")
    try:
        hours, minutes, seconds = int(parts[0]), int(parts[1]), float(parts[2])
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not HH:MM:SS.ff") from None
    if hours < 0 or not 0 <= minutes < 60 or not 0 <= seconds < 60:
        raise ValueError(f"timestamp {text!r} is out of range")
    return hours * 3600 + minutes * 60 + seconds


def read_epic100(path: str, input_offset_s: float = 0.25,
                 target_fraction: float = 0.6) -> tuple[list[ActionRecord], list[Skip]]:
    """Parse an EPIC-100 action CSV; malformed rows become :class:`Skip` entries, never an exception."""
    if not os.path.isfile(path):
        raise InputError(f"EPIC-KITCHENS annotation CSV not found: {path}")
    if not 0.0 <= target_fraction <= 1.0:
        raise InputError(f"target_fraction must be in [0, 1], got {target_fraction}")
    records: list[ActionRecord] = []
    skips: list[Skip] = []
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path} is empty: expected an EPIC_100_train.csv style header")
        header = [h.strip() for h in header]
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise InputError(f"{path} lacks EPIC-100 columns {missing}: is it an EPIC_100_*.csv action file?")
        for line_number, row in enumerate(reader, start=2):
            if not row or all(not cell.strip() for cell in row):
                continue
            row_id = row[0].strip() if row and row[0].strip() else f"line {line_number}"
            if len(row) != len(header):
                skips.append(Skip(row_id, f"malformed CSV row at line {line_number}: {len(row)} fields, "
                                          f"header has {len(header)}"))
                continue
            fields = dict(zip(header, (cell.strip() for cell in row)))
            try:
                records.append(_row_to_record(fields, input_offset_s, target_fraction))
            except ValueError as exc:
                skips.append(Skip(row_id, f"malformed CSV row at line {line_number}: {exc}"))
    return records, skips


def _row_to_record(fields: dict[str, str], input_offset_s: float, target_fraction: float) -> ActionRecord:
    for name in REQUIRED_COLUMNS:
        if not fields.get(name):
            raise ValueError(f"empty {name}")
    start = parse_timestamp(fields["start_timestamp"])
    stop = parse_timestamp(fields["stop_timestamp"])
    if stop < start:
        raise ValueError(f"stop_timestamp {fields['stop_timestamp']} is before start_timestamp {fields['start_timestamp']}")
    extra: dict = {"start_time": start, "stop_time": stop}
    for name in ("start_frame", "stop_frame", "verb_class", "noun_class"):
        if fields.get(name):
            try:
                extra[name] = int(fields[name])
            except ValueError:
                raise ValueError(f"{name} {fields[name]!r} is not an integer") from None
    if fields.get("all_nouns"):
        extra["all_nouns"] = fields["all_nouns"]
    narration = fields.get("narration", "")
    verb, noun = fields.get("verb", ""), fields.get("noun", "")
    return ActionRecord(
        id=fields["narration_id"],
        source="epic100",
        action=narration or " ".join(x for x in (verb, noun) if x),
        verb=verb,
        noun=noun,
        video_id=fields["video_id"],
        participant_id=fields["participant_id"],
        # Clamped at 0: an action that starts in the first 0.25 s has no earlier frame.
        input_time=max(0.0, start - input_offset_s),
        target_time=start + target_fraction * (stop - start),
        narration=narration,
        extra=extra,
    )


def estimate_fps(records: list[ActionRecord]) -> dict[str, float]:
    """Per-video fps from the CSV's own (timestamp, 1-based frame) pairs, for frame folders without a video.

    A least-squares slope through all start/stop points of a video: EPIC's 2-decimal timestamps make
    any single row's ratio too coarse, but hundreds of rows pin it down.
    """
    points: dict[str, list[tuple[float, float]]] = {}
    for rec in records:
        if "start_frame" in rec.extra and "stop_frame" in rec.extra:
            pts = points.setdefault(rec.video_id, [])
            pts.append((rec.extra["start_time"], rec.extra["start_frame"] - 1))
            pts.append((rec.extra["stop_time"], rec.extra["stop_frame"] - 1))
    fps = {}
    for video_id, pts in points.items():
        sxx = sum(t * t for t, _ in pts)
        sxy = sum(t * f for t, f in pts)
        if sxx > 0:
            fps[video_id] = sxy / sxx  # frame = fps * t through the origin
    return fps
