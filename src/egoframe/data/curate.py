"""LEGO's curation pipeline: annotations -> chosen frames -> scored, filtered, split pairs on disk.

Stages (each a plain function, so the same per-unit work runs in-process, in a process pool, or on a
cluster engine, see :mod:`egoframe.data.cluster`):

1. :func:`read_annotations` parses the source format into :class:`ActionRecord` s (+ skips).
2. :func:`plan_units` groups records into work units: one per video, or chunks of image pairs.
3. :func:`curate_unit` decodes the frames of one unit by seeking, picks the best-scored frame among the
   ±3 neighbours of each chosen frame, computes the input/target similarity, writes the images into a
   shard and journals the unit (``work/done/<unit>.json``, written last and atomically).
4. :func:`finalize` merges the journal, assigns splits by video/participant, applies the similarity
   thresholds (:func:`apply_thresholds`, re-runnable on its own) and writes the data set files.

A killed run loses at most the units in flight: every file is written to a temp name and renamed, and a
rerun skips every unit whose journal entry exists.

Output layout (paths in the parquet files are relative to the data set root)::

    OUT/config.json         CurationConfig of the run
    OUT/all_pairs.parquet   every curated pair with all its scores (thresholds re-apply from here)
    OUT/pairs.parquet       the kept pairs, with their split ("train" / "test")
    OUT/report.json         counts, and every skipped item with its id and reason
    OUT/shards/00000/<id>_in.png, <id>_tgt.png
    OUT/work/done/<unit>.json
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from egoframe.data import edit_formats
from egoframe.data.edit_formats import load_source_images
from egoframe.data.ego4d import read_ego4d_fho
from egoframe.data.epic100 import read_epic100
from egoframe.data.lego import read_lego
from egoframe.data.records import RECORDS_FILE, ActionRecord, load_records, save_records
from egoframe.data.report import Skip
from egoframe.data.scoring import LaionHead, ScorerSpec, get_judge
from egoframe.data.video import FrameFolderReader, VideoFrameReader, epic_frames_rate, find_frame_folder, index_videos
from egoframe.errors import ConfigError, EgoframeError, InputError, MissingWeightsError
from egoframe.utils.progress import ProgressBar
from egoframe.utils.workers import process_pool
from egoframe.world.facts import WorldStates, unchanged_pair

FORMATS = ("epic100", "ego4d", "ip2p", "magicbrush", "reason-edit", "lego")
# Formats whose frames are referenced where they are (absolute paths in the records), never copied: the
# released LEGO-Dataset is hundreds of GB of frames that are already the curated pairs.
IN_PLACE_FORMATS = ("lego",)
VIDEO_FORMATS = ("epic100", "ego4d")
ALL_PAIRS_FILE = "all_pairs.parquet"
CONFIG_FILE = "config.json"
REPORT_FILE = "report.json"


@dataclass
class CurationConfig:
    """Everything a curation run depends on; saved as ``config.json`` next to the data set."""

    format: str
    annotations: str
    out: str
    videos: str = ""  # directory of videos (<video_id>.MP4), for epic100/ego4d
    frames: str = ""  # EPIC rgb_frames directory (rgb_frames/P01/P01_01/frame_0000000001.jpg)
    # rate the frame folders are numbered at; 0 = EPIC-KITCHENS-100's own rule (60 for PXX_YY, 50 for PXX_1YY)
    frames_fps: float = 0.0
    input_offset_s: float = 0.25  # EPIC δi: input at start - δi
    target_fraction: float = 0.6  # EPIC λ: target at start + λ·(stop - start)
    neighbours: int = 3  # frames on each side considered by the aesthetic choice (0 = nominal frame)
    scorer: str = "offline"  # "offline" (sharpness/exposure) | "laion" (CLIP ViT-L/14 + head)
    laion_head: str = ""  # safetensors file of the LAION head, for scorer "laion"
    clip_dir: str = ""  # local CLIP directory: LAION embeddings and the similarity feature
    min_sim: float = 0.81
    max_sim: float = 0.97
    filter_similarity: bool | None = None  # None: on for video formats, off for edit data sets
    # Embedded world only: drop pairs whose *true* input and target states agree on every fact the action is
    # about (nothing happened: what the similarity filter is meant to catch, checked against the world's truth).
    # None: on when --videos is an egoframe world (it holds manifest.json and the per-frame states).
    filter_unchanged: bool | None = None
    split_by: str = "video"  # "video" | "participant": no group is in both train and test
    test_fraction: float = 0.1
    split_seed: int = 0
    max_side: int = 512  # stored images are downscaled to this longest side (0 keeps the size)
    image_format: str = "png"
    units_per_shard: int = 16
    pairs_per_unit: int = 64  # edit data sets: image pairs per work unit
    workers: int = 1
    progress: bool = False

    # Fields that change no per-unit work: a resumed run may change them freely.
    _FREE = ("min_sim", "max_sim", "filter_similarity", "filter_unchanged", "split_by", "test_fraction",
             "split_seed", "workers", "progress", "out")

    def validate(self) -> None:
        if self.format not in FORMATS:
            raise ConfigError(f"unknown format {self.format!r}: use one of {', '.join(FORMATS)}")
        if self.format in VIDEO_FORMATS and not (self.videos or self.frames):
            raise ConfigError(f"format {self.format} needs --videos DIR or --frames DIR")
        if self.format == "lego" and not self.videos:
            raise ConfigError("format lego needs --videos EgoGen/<dataset>/<split> (the folder image_0 / image_1 "
                              "paths are relative to)")
        if self.frames and self.format != "epic100":
            raise ConfigError("--frames (EPIC rgb_frames folders) only applies to --format epic100")
        if not -1.0 <= self.min_sim <= self.max_sim <= 1.0:  # cosines: the offline feature can go negative
            raise ConfigError(f"need -1 <= min_sim <= max_sim <= 1, got {self.min_sim}, {self.max_sim}")
        if self.scorer not in ("offline", "laion"):
            raise ConfigError(f"unknown scorer {self.scorer!r}: use 'offline' or 'laion'")
        if self.split_by not in ("video", "participant"):
            raise ConfigError(f"split_by must be 'video' or 'participant', got {self.split_by!r}")
        if not 0.0 <= self.test_fraction < 1.0:
            raise ConfigError(f"test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.neighbours < 0 or self.workers < 1:
            raise ConfigError("neighbours must be >= 0 and workers >= 1")
        if self.image_format not in ("png", "jpg"):
            raise ConfigError(f"image_format must be png or jpg, got {self.image_format!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CurationConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown curation config keys: {sorted(unknown)}")
        return cls(**data)

    def work_key(self) -> dict:
        return {k: v for k, v in self.to_dict().items() if k not in self._FREE}

    @property
    def similarity_filter_on(self) -> bool:
        return self.format in VIDEO_FORMATS if self.filter_similarity is None else self.filter_similarity

    @property
    def truth_world(self) -> str | None:
        """The world whose true states the unchanged-pair filter reads, or None when the filter is off."""
        is_world = bool(self.videos) and os.path.isfile(os.path.join(self.videos, "manifest.json"))
        if self.filter_unchanged is None:
            return self.videos if is_world and self.format in VIDEO_FORMATS else None
        if self.filter_unchanged and not is_world:
            raise ConfigError("filter_unchanged needs --videos to be an egoframe world (with manifest.json)")
        return self.videos if self.filter_unchanged else None


@dataclass
class WorkUnit:
    unit_id: str
    shard: str
    records: list[ActionRecord]
    video_path: str = ""  # video file, or frame folder when ``frames_fps`` is set
    frames_fps: float = 0.0


@dataclass
class UnitResult:
    unit_id: str
    records: list[ActionRecord] = field(default_factory=list)
    skips: list[Skip] = field(default_factory=list)
    resumed: bool = False  # True when the journal already had it


# ----------------------------------------------------------------------------- small file helpers

def atomic_write_bytes(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def atomic_write_json(path: str, data) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=1, sort_keys=True).encode())


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_name(text: str) -> str:
    """A file-name-safe form of an id; a short hash keeps two ids that differ only in odd characters apart."""
    clean = _UNSAFE.sub("_", text).strip("._") or "item"
    if clean != text:
        clean = f"{clean[:80]}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return clean


def _encode_image(image: np.ndarray, max_side: int, fmt: str) -> bytes:
    from PIL import Image

    pil = Image.fromarray(image)
    if max_side and max(pil.size) > max_side:
        scale = max_side / max(pil.size)
        pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.BICUBIC)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG" if fmt == "png" else "JPEG", **({"quality": 95} if fmt == "jpg" else {}))
    return buffer.getvalue()


# ----------------------------------------------------------------------------- stage 1: read

def read_annotations(config: CurationConfig) -> tuple[list[ActionRecord], list[Skip]]:
    fmt, path = config.format, config.annotations
    if fmt == "epic100":
        return read_epic100(path, config.input_offset_s, config.target_fraction)
    if fmt == "ego4d":
        return read_ego4d_fho(path)
    if fmt == "lego":
        return read_lego(path, config.videos)

    if fmt == "ip2p":
        if os.path.isdir(path) and not any(n.endswith(".parquet") for n in os.listdir(path)):
            return edit_formats.read_ip2p_folders(path)
        return edit_formats.read_ip2p_parquet(path)
    if fmt == "magicbrush":
        return edit_formats.read_magicbrush(path)
    if fmt == "reason-edit":
        return edit_formats.read_reason_edit(path)
    raise ConfigError(f"unknown format {fmt!r}")


# ----------------------------------------------------------------------------- stage 2: plan

def plan_units(records: list[ActionRecord], config: CurationConfig) -> tuple[list[WorkUnit], list[Skip]]:
    """Work units in a deterministic order, so shard names stay the same across resumed runs."""
    units: list[WorkUnit] = []
    skips: list[Skip] = []
    duplicate = Counter(r.id for r in records)
    for rec_id, count in duplicate.items():
        if count > 1:
            skips.append(Skip(rec_id, f"duplicate id ({count} rows): all but the first dropped"))
    seen: set[str] = set()
    unique = []
    for rec in records:
        if rec.id not in seen:
            seen.add(rec.id)
            unique.append(rec)
    if config.format in VIDEO_FORMATS:
        by_video: dict[str, list[ActionRecord]] = {}
        for rec in unique:
            by_video.setdefault(rec.video_id, []).append(rec)
        fps_estimates: dict[str, float] = {}
        video_files = index_videos(config.videos) if not config.frames else {}
        if config.frames and not config.frames_fps:
            fps_estimates = {video_id: float(epic_frames_rate(video_id)) for video_id in by_video}
        for video_id in sorted(by_video):
            recs = by_video[video_id]
            if config.frames:
                path = find_frame_folder(config.frames, recs[0].participant_id, video_id)
                fps = config.frames_fps or fps_estimates.get(video_id, 0.0)
            else:
                # A missing file gets the path it was looked for under, for the "video not found" skip.
                path = video_files.get(video_id, os.path.join(config.videos, f"{video_id}.MP4"))
                fps = 0.0
            units.append(WorkUnit(safe_name(video_id), "", recs, path, fps))
    else:
        ordered = sorted(unique, key=lambda r: r.id)
        for start in range(0, len(ordered), config.pairs_per_unit):
            units.append(WorkUnit(f"chunk-{start // config.pairs_per_unit:06d}", "",
                                  ordered[start:start + config.pairs_per_unit]))
    for rank, unit in enumerate(units):
        unit.shard = f"{rank // max(1, config.units_per_shard):05d}"
    return units, skips


# ----------------------------------------------------------------------------- stage 3: per unit

def done_path(out: str, unit_id: str) -> str:
    return os.path.join(out, "work", "done", f"{unit_id}.json")


def load_unit_result(out: str, unit_id: str) -> UnitResult | None:
    path = done_path(out, unit_id)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return UnitResult(unit_id, [ActionRecord.from_dict(r) for r in data["records"]],
                      [Skip.from_dict(s) for s in data["skips"]], resumed=True)


def curate_unit(unit: WorkUnit, config: CurationConfig) -> UnitResult:
    """Curate one unit and journal it; a unit already journalled is loaded instead of redone.

    This is the function a cluster engine maps over units. User-fixable problems with the unit's data
    (unreadable video, missing folder) become skips and are journalled; anything unexpected is reported
    as a skip of this run but not journalled, so a rerun tries the unit again.
    """
    previous = load_unit_result(config.out, unit.unit_id)
    if previous is not None:
        return previous
    try:
        if config.format in VIDEO_FORMATS:
            result = _curate_video_unit(unit, config)
        elif config.format in IN_PLACE_FORMATS:
            result = _reference_unit(unit)
        else:
            result = _curate_image_unit(unit, config)
    except InputError as exc:  # the unit's data is bad (unreadable video, missing folder): journal it
        result = UnitResult(unit.unit_id, [], [Skip(r.id, str(exc), "frames") for r in unit.records])
    except EgoframeError:
        raise  # missing weights or a bad config concerns every unit: stop and say so
    except Exception as exc:  # noqa: BLE001 - one broken unit must not stop the run
        return UnitResult(unit.unit_id, [], [Skip(r.id, f"unexpected error: {exc!r}", "frames") for r in unit.records])
    atomic_write_json(done_path(config.out, unit.unit_id), {
        "unit_id": unit.unit_id,
        "records": [r.to_dict() for r in result.records],
        "skips": [s.to_dict() for s in result.skips],
    })
    return result


def _open_reader(unit: WorkUnit, config: CurationConfig):
    if config.frames:
        if not unit.frames_fps:
            raise InputError(f"no fps for frame folder {unit.video_path}: pass --frames-fps or CSV frame columns")
        return FrameFolderReader(unit.video_path, unit.frames_fps)
    return VideoFrameReader(unit.video_path)


def _clip_boxes(rec: ActionRecord, width: int, height: int) -> str | None:
    """Clip boxes to the frame; a reason string when a box lies wholly outside it or is empty."""
    clipped = 0
    for box in rec.boxes:
        if not all(math.isfinite(v) for v in (box.x0, box.y0, box.x1, box.y1)):
            return f"box with non-finite coordinates: {box.label}"
        x0, y0 = min(max(box.x0, 0.0), width), min(max(box.y0, 0.0), height)
        x1, y1 = min(max(box.x1, 0.0), width), min(max(box.y1, 0.0), height)
        if x1 <= x0 or y1 <= y0:
            return (f"box outside the frame: {box.label} ({box.x0:.0f}, {box.y0:.0f}, {box.x1:.0f}, {box.y1:.0f}) "
                    f"in a {width}x{height} frame")
        if (x0, y0, x1, y1) != (box.x0, box.y0, box.x1, box.y1):
            clipped += 1
            box.x0, box.y0, box.x1, box.y1 = x0, y0, x1, y1
    if clipped:
        rec.extra["boxes_clipped"] = clipped
    return None


def _curate_video_unit(unit: WorkUnit, config: CurationConfig) -> UnitResult:
    judge = get_judge(ScorerSpec(config.scorer, config.laion_head, config.clip_dir))
    result = UnitResult(unit.unit_id)
    with _open_reader(unit, config) as reader:
        info = reader.info
        duration = info.num_frames / info.fps
        ready: list[ActionRecord] = []
        for rec in unit.records:
            rec.fps, rec.width, rec.height = info.fps, info.width, info.height
            if config.format == "epic100":  # times -> frames by the reader's own rule (video or frame folder)
                rec.input_frame = reader.time_to_index(rec.input_time)
                rec.target_frame = reader.time_to_index(rec.target_time)
            else:
                rec.input_time = reader.index_to_time(rec.input_frame)
                rec.target_time = reader.index_to_time(rec.target_frame)
            last = max(rec.input_frame, rec.target_frame)
            if last >= info.num_frames:
                result.skips.append(Skip(rec.id, f"timestamp beyond video end (frame {last} at "
                                                 f"{last / info.fps:.2f} s; video has {info.num_frames} frames, "
                                                 f"{duration:.2f} s)", "frames"))
                continue
            reason = _clip_boxes(rec, info.width, info.height)
            if reason:
                result.skips.append(Skip(rec.id, reason, "frames"))
                continue
            ready.append(rec)
        # Batches of actions in time order: seeking stays forward-only, and memory stays bounded
        # (a batch holds at most 8 actions x 2 x (2n+1) frames).
        ready.sort(key=lambda r: (r.input_frame, r.id))
        for start in range(0, len(ready), 8):
            batch = ready[start:start + 8]
            wanted = set()
            n = config.neighbours
            for rec in batch:
                for nominal in (rec.input_frame, rec.target_frame):
                    wanted.update(range(max(0, nominal - n), min(info.num_frames, nominal + n + 1)))
            frames = reader.read(wanted)
            decode_note = getattr(reader, "decode_error", "")
            _choose_and_write(batch, frames, judge, unit, config, result, decode_note, reader.index_to_time)
    return result


def _choose_and_write(batch, frames, judge, unit, config, result, decode_note, index_to_time) -> None:
    indices = sorted(frames)
    if indices:
        scores, embeds = judge.aesthetic(np.stack([frames[i] for i in indices]))
        score_of = dict(zip(indices, scores.tolist()))
        embed_of = dict(zip(indices, embeds)) if embeds is not None else {}
    else:
        score_of, embed_of = {}, {}
    chosen_pairs = []
    for rec in batch:
        missing = [f for f in (rec.input_frame, rec.target_frame) if f not in frames]
        if missing:
            note = f" ({decode_note})" if decode_note else ""
            result.skips.append(Skip(rec.id, f"missing frame {missing[0]} in {os.path.basename(unit.video_path)}{note}",
                                     "frames"))
            continue
        picks = {}
        for role, nominal in (("input", rec.input_frame), ("target", rec.target_frame)):
            candidates = [i for i in range(nominal - config.neighbours, nominal + config.neighbours + 1) if i in frames]
            # Best aesthetic score; ties go to the frame nearest the annotated one.
            best = max(candidates, key=lambda i: (score_of[i], -abs(i - nominal)))
            picks[role] = best
            rec.extra[f"{role}_frame_nominal"] = nominal
            rec.extra[f"aesthetic_candidates_{role}"] = {str(i): score_of[i] for i in candidates}
            rec.scores[f"aesthetic_{role}"] = score_of[best]
        rec.input_frame, rec.target_frame = picks["input"], picks["target"]
        rec.input_time, rec.target_time = index_to_time(rec.input_frame), index_to_time(rec.target_frame)
        chosen_pairs.append(rec)
    if not chosen_pairs:
        return
    needed = sorted({i for r in chosen_pairs for i in (r.input_frame, r.target_frame)})
    if embed_of:
        feats = {i: embed_of[i] for i in needed}
    else:
        feats = dict(zip(needed, judge.features(np.stack([frames[i] for i in needed]))))
    for rec in chosen_pairs:
        rec.scores["similarity"] = float(np.dot(feats[rec.input_frame], feats[rec.target_frame]))
        rec.extra.update(scorer=config.scorer, feature=judge.feature_name)
        _write_pair(rec, frames[rec.input_frame], frames[rec.target_frame], unit, config)
        result.records.append(rec)


def _write_pair(rec: ActionRecord, input_image, target_image, unit: WorkUnit, config: CurationConfig,
                mask=None) -> None:
    name = safe_name(rec.id)
    ext = config.image_format
    rec.input_path = f"shards/{unit.shard}/{name}_in.{ext}"
    atomic_write_bytes(os.path.join(config.out, rec.input_path), _encode_image(input_image, config.max_side, ext))
    if target_image is not None:
        rec.target_path = f"shards/{unit.shard}/{name}_tgt.{ext}"
        atomic_write_bytes(os.path.join(config.out, rec.target_path), _encode_image(target_image, config.max_side, ext))
    if mask is not None:
        rec.extra["mask_path"] = f"shards/{unit.shard}/{name}_mask.png"
        atomic_write_bytes(os.path.join(config.out, rec.extra["mask_path"]), _encode_image(mask, config.max_side, "png"))


def _curate_image_unit(unit: WorkUnit, config: CurationConfig) -> UnitResult:
    result = UnitResult(unit.unit_id)
    images = load_source_images(unit.records)
    judge = get_judge(ScorerSpec("offline", "", config.clip_dir))
    for rec in unit.records:
        found = images.get(rec.id, {})
        wants_target = rec.source != "reason-edit"
        if "input" not in found or (wants_target and "target" not in found):
            what = "input" if "input" not in found else "target"
            result.skips.append(Skip(rec.id, f"missing or unreadable {what} image", "frames"))
            continue
        rec.height, rec.width = found["input"].shape[:2]
        if wants_target:
            feats = judge.features(np.stack([found["input"], _match_size(found["target"], found["input"])]))
            rec.scores["similarity"] = float(np.dot(feats[0], feats[1]))
            rec.extra["feature"] = judge.feature_name
        for key in ("input_src", "target_src", "mask_src", "parquet"):
            if key in rec.extra:
                rec.extra[key] = str(rec.extra[key])
        _write_pair(rec, found["input"], found.get("target"), unit, config, found.get("mask"))
        result.records.append(rec)
    return result


def _reference_unit(unit: WorkUnit) -> UnitResult:
    """Released pairs: check that both frames exist and decode (header and size), keep them where they are."""
    from PIL import Image, UnidentifiedImageError

    result = UnitResult(unit.unit_id)
    for rec in unit.records:
        sizes = {}
        for role in ("input", "target"):
            path = rec.extra[f"{role}_src"]
            try:
                with Image.open(path) as image:
                    sizes[role] = image.size  # from the header
                    image.verify()  # reads the whole file's structure without decoding pixels
            except FileNotFoundError:
                result.skips.append(Skip(rec.id, f"missing {role} frame {path}", "frames"))
                break
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
                result.skips.append(Skip(rec.id, f"unreadable {role} frame {path} ({exc})", "frames"))
                break
        else:
            rec.width, rec.height = sizes["input"]
            rec.input_path, rec.target_path = rec.extra["input_src"], rec.extra["target_src"]
            result.records.append(rec)
    return result


def _match_size(image: np.ndarray, like: np.ndarray) -> np.ndarray:
    if image.shape[:2] == like.shape[:2]:
        return image
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((like.shape[1], like.shape[0]), Image.BILINEAR))


# ----------------------------------------------------------------------------- stage 4: finalize

def assign_splits(records: list[ActionRecord], split_by: str, test_fraction: float, seed: int) -> None:
    """Whole groups (videos or participants) go to one split, chosen by a seeded hash of the group name.

    Hash order rather than random draws keeps a group's split stable when other groups are added.
    """
    def group_of(rec: ActionRecord) -> str:
        return (rec.participant_id or rec.video_id) if split_by == "participant" else (rec.video_id or rec.id)

    groups = sorted({group_of(r) for r in records},
                    key=lambda g: hashlib.sha1(f"{seed}:{g}".encode()).hexdigest())
    n_test = math.ceil(test_fraction * len(groups)) if len(groups) > 1 and test_fraction > 0 else 0
    test_groups = set(groups[:n_test])
    for rec in records:
        rec.split = "test" if group_of(rec) in test_groups else "train"


def apply_thresholds(root: str, min_sim: float | None = None, max_sim: float | None = None,
                     enabled: bool | None = None) -> dict:
    """Re-select ``pairs.parquet`` from ``all_pairs.parquet`` with new similarity thresholds (no decoding).

    Updates ``config.json`` and the report's filter counts; returns the new counts.
    """
    config = load_config(root)
    if min_sim is not None:
        config.min_sim = min_sim
    if max_sim is not None:
        config.max_sim = max_sim
    if enabled is not None:
        config.filter_similarity = enabled
    config.out = root
    config.validate()
    all_path = os.path.join(root, ALL_PAIRS_FILE)
    if not os.path.exists(all_path):
        raise InputError(f"no {ALL_PAIRS_FILE} in {root}: run `egoframe data curate` to the end first")
    records = load_records(all_path)
    kept, counts = _select(records, config)
    save_records(kept, os.path.join(root, RECORDS_FILE))
    atomic_write_json(os.path.join(root, CONFIG_FILE), config.to_dict())
    report_path = os.path.join(root, REPORT_FILE)
    if os.path.exists(report_path):
        with open(report_path, encoding="utf-8") as handle:
            report = json.load(handle)
        report["counts"].update(counts)
        report["filter"] = _filter_desc(config)
        atomic_write_json(report_path, report)
    return counts


def _filter_desc(config: CurationConfig) -> dict:
    return {"enabled": config.similarity_filter_on, "min_sim": config.min_sim, "max_sim": config.max_sim,
            "unchanged_truth": bool(config.truth_world)}


def _select(records: list[ActionRecord], config: CurationConfig) -> tuple[list[ActionRecord], dict]:
    kept, too_similar, too_different, unchanged = [], 0, 0, 0
    truth = None
    if config.truth_world:
        truth = WorldStates(config.truth_world)
    for rec in records:
        if truth is not None:
            if unchanged_pair(truth, rec.video_id, rec.verb, rec.input_frame, rec.target_frame):
                unchanged += 1
                continue
        sim = rec.scores.get("similarity")
        if config.similarity_filter_on and sim is not None:
            if sim > config.max_sim:
                too_similar += 1
                continue
            if sim < config.min_sim:
                too_different += 1
                continue
        kept.append(rec)
    counts = {"pairs_kept": len(kept), "filtered_too_similar": too_similar, "filtered_too_different": too_different,
              "filtered_unchanged_truth": unchanged,
              "pairs_kept_train": sum(r.split == "train" for r in kept),
              "pairs_kept_test": sum(r.split == "test" for r in kept)}
    return kept, counts


def load_config(root: str) -> CurationConfig:
    path = os.path.join(root, CONFIG_FILE)
    if not os.path.exists(path):
        raise InputError(f"no {CONFIG_FILE} in {root}: not a curated data set")
    with open(path, encoding="utf-8") as handle:
        return CurationConfig.from_dict(json.load(handle))


def skip_kind(reason: str) -> str:
    """The reason's leading words, without numbers, paths or details: the key the report counts by."""
    head = re.split(r"[:(]|(?<!\w)\d| /| at line| in ", reason, maxsplit=1)[0]
    return head.strip() or reason


def finalize(config: CurationConfig, results: list[UnitResult], read_skips: list[Skip], n_read: int) -> dict:
    # Unit order, not completion order, so that parallel and cluster runs write identical files.
    results = sorted(results, key=lambda res: res.unit_id)
    records = sorted((r for res in results for r in res.records), key=lambda r: r.id)
    skips = read_skips + [s for res in results for s in res.skips]
    if config.format not in IN_PLACE_FORMATS:  # released pairs keep their published split
        assign_splits(records, config.split_by, config.test_fraction, config.split_seed)
    save_records(records, os.path.join(config.out, ALL_PAIRS_FILE))
    kept, filter_counts = _select(records, config)
    save_records(kept, os.path.join(config.out, RECORDS_FILE))
    reasons = Counter(skip_kind(s.reason) for s in skips)
    report = {
        "format": config.format,
        "counts": {"records_read": n_read, "pairs_curated": len(records), "skipped": len(skips),
                   "units": len(results), "units_resumed": sum(r.resumed for r in results), **filter_counts},
        "skipped_by_reason": dict(sorted(reasons.items())),
        "filter": _filter_desc(config),
        "skipped": [s.to_dict() for s in skips],
    }
    atomic_write_json(os.path.join(config.out, REPORT_FILE), report)
    return report


# ----------------------------------------------------------------------------- the whole run

def prepare(config: CurationConfig) -> tuple[list[WorkUnit], list[Skip], int]:
    """Validate, check the output dir belongs to this run's settings, read and plan. No frames decoded."""
    config.validate()
    check_scorer_files(config)
    os.makedirs(config.out, exist_ok=True)
    config_path = os.path.join(config.out, CONFIG_FILE)
    if os.path.exists(config_path):
        previous = load_config(config.out)
        changed = sorted(k for k, v in config.work_key().items() if previous.work_key().get(k) != v)
        if changed:
            raise InputError(f"{config.out} was curated with other settings ({', '.join(changed)} differ): "
                             "use a new --out directory")
    atomic_write_json(config_path, config.to_dict())
    _remove_stale_temp_files(config.out)
    records, read_skips = read_annotations(config)
    units, plan_skips = plan_units(records, config)
    return units, read_skips + plan_skips, len(records)


def check_scorer_files(config: CurationConfig) -> None:
    """Fail before any decoding when the LAION/CLIP files are missing (models load later, in the workers)."""
    if config.scorer == "laion":
        LaionHead(config.laion_head)  # small: reads the head and checks its layout
    if config.scorer == "laion" or config.clip_dir:
        if not config.clip_dir or not os.path.isfile(os.path.join(config.clip_dir, "config.json")):
            raise MissingWeightsError(
                f"CLIP model directory not found: {config.clip_dir!r}; provide a local CLIP ViT-L/14 directory "
                "(config.json, model.safetensors, preprocessor_config.json) with --clip")


def _remove_stale_temp_files(out: str) -> None:
    """Delete ``*.tmp-<pid>`` files a killed run left half-written (their final names were never made)."""
    for folder in (os.path.join(out, "work", "done"), os.path.join(out, "shards")):
        for dirpath, _, files in os.walk(folder):
            for name in files:
                if ".tmp-" in name:
                    os.remove(os.path.join(dirpath, name))


def curate(config: CurationConfig) -> dict:
    """Run the whole pipeline (resuming from the journal) and return the report dict."""
    units, skips, n_read = prepare(config)
    results = run_units(units, config)
    return finalize(config, results, skips, n_read)


def run_units(units: list[WorkUnit], config: CurationConfig) -> list[UnitResult]:
    """Curate units in-process (workers=1) or in a process pool, with an optional progress bar."""
    results: list[UnitResult] = []
    todo = []
    for unit in units:
        previous = load_unit_result(config.out, unit.unit_id)
        if previous is not None:
            results.append(previous)
        else:
            todo.append(unit)
    bar = ProgressBar(config.progress, "curating units", len(units), len(results),
                      fields={"pairs": sum(len(r.records) for r in results)}).start()
    pairs = [sum(len(r.records) for r in results)]

    def advance(result: UnitResult) -> None:
        pairs[0] += len(result.records)
        bar.advance(pairs=pairs[0])

    try:
        if config.workers == 1 or len(todo) <= 1:
            for unit in todo:
                results.append(curate_unit(unit, config))
                advance(results[-1])
        else:
            from concurrent.futures import as_completed

            with process_pool(config.workers, preload=[__name__]) as pool:
                futures = [pool.submit(curate_unit, unit, config) for unit in todo]
                for future in as_completed(futures):
                    results.append(future.result())
                    advance(results[-1])
    finally:
        bar.close()
    return results
