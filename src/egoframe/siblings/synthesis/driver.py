"""The resumable drivers: read a curated data set's records as frames, run one frame's synthesis on each, write the
triplets as a new curated data set (``images/``, ``pairs.parquet``) with one ``progress.jsonl`` line per finished
record, so a rerun resumes; :func:`synthesize_part3` (ReasonPix2Pix Part III, papers/003 Fig. 6) and
:func:`synthesize_smartedit` (SmartEdit, papers/002 Fig. 1)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

from egoframe.data.records import RECORDS_FILE, ActionRecord, Box, load_records, save_records
from egoframe.errors import InputError
from egoframe.evaluation.oracle import WorldStates
from egoframe.siblings.synthesis.part3 import Part3Stages, part3_triplet
from egoframe.siblings.synthesis.smartedit import SmartEditConfig, smartedit_triplets
from egoframe.siblings.synthesis.types import EditTriplet, Frame
from egoframe.siblings.synthesis.world import WorldInpainter
from egoframe.utils.progress import ProgressBar
from egoframe.world import render_state

PROGRESS_FILE = "progress.jsonl"
SPEC_FILE = "synthesis.json"


@dataclass
class SynthesisSummary:
    out: str
    triplets: int  # rows of pairs.parquet now
    new: int  # triplets written by this run
    resumed: int  # source records finished by an earlier run and not redone
    processed: int  # source records done by this run
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count, this run

    def line(self) -> str:
        why = "; ".join(f"{n} x {reason}" for reason, n in sorted(self.skipped.items()))
        return (f"{self.triplets} triplets ({self.new} new from {self.processed} records, {self.resumed} records "
                f"resumed){'; skipped: ' + why if why else ''} -> {self.out}")


class _Frames:
    """Source records -> :class:`Frame`: redrawn from the world's state (then input and edited frame differ
    only where the edit is), else the stored input image."""

    def __init__(self, data: str, world: str | None):
        path = data if not os.path.isdir(data) else os.path.join(data, RECORDS_FILE)
        self.records = load_records(path)
        self.root = os.path.dirname(os.path.abspath(path))
        self.world = None
        if world is not None:
            self.world = WorldStates(world)

    def frame(self, rec: ActionRecord) -> Frame:
        stored = os.path.join(self.root, rec.input_path) if rec.input_path else None
        if self.world is None:
            if stored is None:
                raise InputError(f"record {rec.id} has no input image: pass --world WORLD to redraw world frames")
            try:
                with Image.open(stored) as image:
                    return Frame(rec.id, np.asarray(image.convert("RGB")), None, rec)
            except (OSError, UnidentifiedImageError):
                raise InputError(f"cannot read the input image {stored} of record {rec.id}") from None

        if not rec.video_id or rec.input_frame < 0:
            raise InputError(f"record {rec.id} names no world video/frame (video_id, input_frame)")
        state = self.world.state(rec.video_id, rec.input_frame)
        size = self.world.manifest.config.resolution
        if stored is not None and os.path.exists(stored):
            with Image.open(stored) as image:  # reads the header only
                if image.width == image.height and image.width >= 16:
                    size = image.width
        return Frame(rec.id, render_state(state, size), state, rec)


def _safe_name(item_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]", "_", item_id)
    # ids that differ only in replaced characters must not share files
    return name if name == item_id else f"{name}-{hashlib.sha256(item_id.encode()).hexdigest()[:8]}"


def _save_png(path: str, image: np.ndarray) -> None:
    tmp = f"{path}.tmp-{os.getpid()}.png"
    Image.fromarray(np.asarray(image, np.uint8)).save(tmp)
    os.replace(tmp, path)


def _write_triplet(out: str, triplet: EditTriplet, origin: ActionRecord) -> ActionRecord:
    name = _safe_name(triplet.id)
    input_path, edited_path = f"images/{name}_input.png", f"images/{name}_edited.png"
    _save_png(os.path.join(out, input_path), triplet.input)
    _save_png(os.path.join(out, edited_path), triplet.edited)
    height, width = triplet.input.shape[:2]
    boxes = []
    if triplet.box is not None:
        boxes.append(Box(triplet.label, *(float(v) for v in triplet.box), role="object_of_change", frame="input"))
    return ActionRecord(
        id=triplet.id, source=triplet.source, action=triplet.instruction, video_id=origin.video_id,
        participant_id=origin.participant_id, fps=origin.fps, input_frame=origin.input_frame,
        input_time=origin.input_time, width=width, height=height, boxes=boxes, input_path=input_path,
        target_path=edited_path, split=origin.split,
        extra={"instruction": triplet.instruction, "origin_id": origin.id, "label": triplet.label, **triplet.extra})


def _read_progress(path: str) -> dict[str, dict]:
    done = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut off by a crash: that record is simply redone
                done[entry["origin"]] = entry
    return done


def _drive(frames: _Frames, out: str, spec: dict, make: Callable[[Frame], tuple[list[EditTriplet], list[str]]],
           limit: int | None, progress: bool, desc: str) -> SynthesisSummary:
    if limit is not None and limit < 0:
        raise InputError(f"limit must be >= 0, got {limit}")
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    spec_path = os.path.join(out, SPEC_FILE)
    if os.path.exists(spec_path):
        with open(spec_path) as f:
            old = json.load(f)
        if old != spec:
            raise InputError(f"{out} was made with other settings ({SPEC_FILE}): write to a new --out")
    else:
        with open(spec_path, "w") as f:
            json.dump(spec, f, indent=1, sort_keys=True)
    log_path = os.path.join(out, PROGRESS_FILE)
    done = _read_progress(log_path)
    if os.path.exists(log_path) and os.path.getsize(log_path):
        with open(log_path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            cut = f.read(1) != b"\n"
        if cut:  # end a line cut off by a crash, so that the next entry starts a line of its own
            with open(log_path, "a") as f:
                f.write("\n")
    records = frames.records
    todo = [r for r in records if r.id not in done]
    resumed = len(records) - len(todo)
    if limit is not None:
        todo = todo[:limit]
    bar = ProgressBar(progress, desc, resumed + len(todo), resumed).start()
    new, reasons = 0, Counter()
    try:
        with open(log_path, "a") as log:
            for rec in todo:
                triplets, skipped = make(frames.frame(rec))
                rows = [_write_triplet(out, t, rec) for t in triplets]
                entry = {"origin": rec.id, "records": [r.to_dict() for r in rows], "skipped": skipped}
                log.write(json.dumps(entry) + "\n")
                log.flush()
                os.fsync(log.fileno())  # the line is the record's done mark: written after its images
                done[rec.id] = entry
                new += len(rows)
                reasons.update(skipped)
                bar.advance()
    finally:
        bar.close()
        order = {r.id: i for i, r in enumerate(records)}
        rows = [ActionRecord.from_dict(row) for origin in sorted(done, key=lambda o: order.get(o, len(order)))
                for row in done[origin]["records"]]
        save_records(rows, os.path.join(out, RECORDS_FILE))
    return SynthesisSummary(out=out, triplets=len(rows), new=new, resumed=resumed, processed=len(todo),
                            skipped=dict(reasons))


def synthesize_part3(data: str, out: str, stages: Part3Stages, world: str | None = None, limit: int | None = None,
                     min_l2: float = 0.0, progress: bool = True) -> SynthesisSummary:
    """ReasonPix2Pix Part III over a curated data set: one (input, edited, instruction) triplet per record
    whose frame yields a replacement. ``world``: the embedded world the records come from (the stand-ins need
    its states; with it every frame is redrawn from its state). ``limit``: at most this many new records."""
    frames = _Frames(data, world)
    spec = {"kind": "rp2p-part3", "data": os.path.abspath(data), "world": os.path.abspath(world) if world else None,
            "stages": stages.names(), "min_l2": min_l2}

    def make(frame: Frame) -> tuple[list[EditTriplet], list[str]]:
        triplet, why = part3_triplet(frame, stages, min_l2)
        return ([triplet], []) if triplet is not None else ([], [why])

    return _drive(frames, out, spec, make, limit, progress, "rp2p part III")


def synthesize_smartedit(data: str, world: str, out: str, config: SmartEditConfig | None = None, inpainter=None,
                         limit: int | None = None, progress: bool = True) -> SynthesisSummary:
    """SmartEdit's copy-paste synthesis over a curated world data set: per record up to one triplet per
    operation in ``config.ops``. ``inpainter``: :class:`WorldInpainter` (default) or :class:`DiffusersInpainter`."""
    config = config or SmartEditConfig()
    config.validate()
    if world is None:
        raise InputError("SmartEdit synthesis takes masks from the world's renderer: pass --world WORLD")
    inpainter = inpainter or WorldInpainter()
    frames = _Frames(data, world)
    spec = {"kind": "smartedit-synth", "data": os.path.abspath(data), "world": os.path.abspath(world),
            "config": json.loads(json.dumps(asdict(config))), "inpainter": type(inpainter).__name__}

    def make(frame: Frame) -> tuple[list[EditTriplet], list[str]]:
        return smartedit_triplets(frame, config, inpainter)

    return _drive(frames, out, spec, make, limit, progress, "smartedit synth")
