"""Make a world data set on disk: videos, per-frame states, EPIC / Ego4D annotations, ground-truth pairs.

Layout under ``out_dir`` (see docs/world.md):

    world_config.json                 the WorldConfig
    manifest.json                     WorldManifest: videos (id, split, paths, length) and the world-level files
    P01/videos/P01_01.MP4             EPIC-KITCHENS-100 folder layout, H.264
    states/P01_01.jsonl.gz            one FrameState per line, every frame
    parts/P01_01.json                 per-video annotation; written last, so its presence marks the video done
    annotations/EPIC_100_train.csv    EPIC columns, train-split videos
    annotations/EPIC_100_validation.csv   test-split videos (EPIC's labelled held-out file)
    annotations/EPIC_100_verb_classes.csv, EPIC_100_noun_classes.csv
    annotations/fho_main.json         Ego4D FHO layout, all videos (each with its split)
    ground_truth.parquet              ActionRecord per action: true input (PRE-15) / target (PNR) frames + details

Resumable: each video's files are written atomically and its part file last; a rerun skips videos whose part
exists and rebuilds the world-level files from the parts, so a killed run finishes with identical output.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from egoframe.data.records import save_records
from egoframe.errors import InputError
from egoframe.utils.progress import ProgressBar
from egoframe.utils.workers import process_pool
from egoframe.world.annotate import (
    EPIC_COLUMNS,
    NOUN_CLASSES,
    VERB_CLASSES,
    epic_rows,
    fho_video,
    ground_truth_records,
    video_part,
)
from egoframe.world.config import CONFIG_FILE, WorldConfig
from egoframe.world.render import render_state
from egoframe.world.simulate import plan_video, play
from egoframe.world.state import FrameState
from egoframe.world.video import pick_codec, write_mp4

MANIFEST_FILE = "manifest.json"
GROUND_TRUTH_FILE = "ground_truth.parquet"


@dataclass
class WorldManifest:
    """What a world directory holds. Paths are relative to ``root``."""

    root: str
    config: WorldConfig
    videos: list[dict[str, Any]]  # video_id, participant_id, split, video_path, states_path, n_frames, ...
    files: dict[str, str]  # role -> path: epic_train, epic_validation, verb_classes, noun_classes, fho, ground_truth
    n_actions: int
    stats: dict[str, Any] = field(default_factory=dict)  # counts by verb / cue, ambiguity share

    def path(self, rel: str) -> str:
        return os.path.join(self.root, rel)

    def split_videos(self, split: str) -> list[str]:
        return [v["video_id"] for v in self.videos if v["split"] == split]

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row.pop("root")
        row["config"] = self.config.to_dict()
        return row

    @classmethod
    def load(cls, root: str) -> "WorldManifest":
        path = os.path.join(root, MANIFEST_FILE)
        if not os.path.exists(path):
            raise InputError(f"no world at {root}: run `egoframe world make --out {root}` first")
        with open(path) as f:
            row = json.load(f)
        row["config"] = WorldConfig.from_dict(row["config"])
        return cls(root=root, **row)


def video_ids(config: WorldConfig) -> list[dict[str, Any]]:
    """Ids, participant and split of every video; the split is by video, fixed by (seed, n_videos)."""
    n = config.n_videos
    n_test = round(n * config.test_fraction)
    if config.test_fraction > 0 and n >= 2:
        n_test = min(max(n_test, 1), n - 1)  # both splits non-empty whenever possible
    order = np.random.default_rng(np.random.SeedSequence([config.seed, 0x73706C6974])).permutation(n)
    test = set(int(i) for i in order[:n_test])
    out = []
    for i in range(n):
        pid = f"P{i // config.videos_per_participant + 1:02d}"
        vid = f"{pid}_{i % config.videos_per_participant + 1:02d}"
        out.append({"index": i, "video_id": vid, "participant_id": pid, "split": "test" if i in test else "train",
                    "video_path": f"{pid}/videos/{vid}.MP4", "states_path": f"states/{vid}.jsonl.gz"})
    return out


def _write_atomic(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _states_bytes(states) -> bytes:
    lines = "".join(json.dumps(s.to_dict(), sort_keys=True, separators=(",", ":")) + "\n" for s in states)
    # mtime=0: the gzip header carries no time stamp, so reruns give identical bytes
    return gzip.compress(lines.encode(), compresslevel=6, mtime=0)


def load_states(path: str) -> list:
    """Read a ``states/*.jsonl.gz`` file as a list of FrameState (index = frame number)."""
    try:
        with gzip.open(path, "rt") as f:
            return [FrameState.from_dict(json.loads(line)) for line in f]
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read world states {path}: {exc}") from None


def make_video(config: WorldConfig, video: dict[str, Any], out_dir: str) -> dict[str, Any]:
    """Plan, play, render and encode one video; write its states and part file. Returns the part."""
    plan = plan_video(config, video["index"])
    states = play(config, plan)

    def frames():
        prev = None
        for s in states:
            img = render_state(s, config.resolution)
            if config.motion_blur and prev is not None:
                out = (1 - config.blur_shutter) * img.astype(np.float32) + config.blur_shutter * prev
                prev = img.astype(np.float32)
                yield np.clip(out + 0.5, 0, 255).astype(np.uint8)
            else:
                prev = img.astype(np.float32)
                yield img

    video_path = os.path.join(out_dir, video["video_path"])
    os.makedirs(os.path.dirname(video_path), exist_ok=True)
    write_mp4(video_path, frames(), config.fps, codec=config.codec, crf=config.crf, pix_fmt=config.pix_fmt)
    _write_atomic(os.path.join(out_dir, video["states_path"]), _states_bytes(states))
    part = video_part(config, plan, states, {k: v for k, v in video.items() if k != "index"})
    _write_atomic(os.path.join(out_dir, "parts", f"{video['video_id']}.json"),
                  json.dumps(part, sort_keys=True, indent=1).encode())
    return part


def _make_video_job(args: tuple[dict, dict, str]) -> str:
    config_dict, video, out_dir = args
    make_video(WorldConfig(**config_dict), video, out_dir)
    return video["video_id"]


def _done(out_dir: str, video: dict[str, Any]) -> bool:
    return all(os.path.exists(os.path.join(out_dir, p)) for p in (
        f"parts/{video['video_id']}.json", video["video_path"], video["states_path"]))


def _check_config(out_dir: str, config: WorldConfig) -> None:
    path = os.path.join(out_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return
    old = WorldConfig.load(path)
    if old != config:
        diff = sorted(k for k, v in config.to_dict().items() if old.to_dict().get(k) != v)
        raise InputError(f"{out_dir} holds a world made with a different config ({', '.join(diff)} differ): "
                         "use another output directory or delete it")


def make_world(out_dir: str, n_videos: int = 50, seed: int = 0, resolution: int = 128, fps: int = 30, *,
               workers: int | None = None, progress: bool = True, config: WorldConfig | None = None,
               on_video: Callable[[str], None] | None = None, **overrides: Any) -> WorldManifest:
    """Make (or finish) a world data set in ``out_dir`` and return its manifest.

    ``config`` replaces ``n_videos/seed/resolution/fps/overrides`` when given. ``workers``: processes for
    rendering + encoding (default: up to 2, one per core). ``on_video`` is called after each finished video.
    """
    if config is None:
        config = WorldConfig(n_videos=n_videos, seed=seed, resolution=resolution, fps=fps, **overrides)
    config = config.validate()
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise InputError(f"--out {out_dir} exists and is not a directory")
    os.makedirs(os.path.join(out_dir, "parts"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "states"), exist_ok=True)
    os.makedirs(os.path.join(out_dir, "annotations"), exist_ok=True)
    _check_config(out_dir, config)

    pick_codec(config.codec)  # fail before any work when the encoder is missing
    config.save(out_dir)

    videos = video_ids(config)
    todo = [v for v in videos if not _done(out_dir, v)]
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    workers = max(1, min(workers, len(todo) or 1))

    with ProgressBar(progress, "world videos", len(videos), len(videos) - len(todo)) as bar:
        advance = bar.advance
        if workers == 1:
            for v in todo:
                make_video(config, v, out_dir)
                advance()
                if on_video:
                    on_video(v["video_id"])
        else:
            with process_pool(workers, preload=[__name__]) as pool:
                jobs = [(config.to_dict(), v, out_dir) for v in todo]
                for vid in pool.map(_make_video_job, jobs):
                    advance()
                    if on_video:
                        on_video(vid)
    return write_world_files(out_dir, config, videos)


def write_world_files(out_dir: str, config: WorldConfig, videos: list[dict[str, Any]]) -> WorldManifest:
    """Assemble the world-level annotation files and the manifest from the per-video parts."""
    parts = []
    for v in videos:
        path = os.path.join(out_dir, "parts", f"{v['video_id']}.json")
        try:
            with open(path) as f:
                parts.append(json.load(f))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"world video part {path} is unreadable ({exc}): delete it and rerun") from None

    files = {"epic_train": "annotations/EPIC_100_train.csv", "epic_validation": "annotations/EPIC_100_validation.csv",
             "verb_classes": "annotations/EPIC_100_verb_classes.csv",
             "noun_classes": "annotations/EPIC_100_noun_classes.csv", "fho": "annotations/fho_main.json",
             "ground_truth": GROUND_TRUTH_FILE}
    for role, split in (("epic_train", "train"), ("epic_validation", "test")):
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=EPIC_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for part in parts:
            if part["split"] == split:
                writer.writerows(epic_rows(part))
        _write_atomic(os.path.join(out_dir, files[role]), buf.getvalue().encode())
    counts_v: dict[str, int] = {}
    counts_n: dict[str, int] = {}
    for part in parts:
        for act in part["actions"]:
            counts_v[act["verb"]] = counts_v.get(act["verb"], 0) + 1
            counts_n[act["noun"]] = counts_n.get(act["noun"], 0) + 1
    for role, table, counts in (("verb_classes", VERB_CLASSES, counts_v), ("noun_classes", NOUN_CLASSES, counts_n)):
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["id", "key", "instances", "category"])
        for key, idx in sorted(table.items(), key=lambda kv: kv[1]):
            writer.writerow([idx, key, repr([key]), "world"])
        _write_atomic(os.path.join(out_dir, files[role]), buf.getvalue().encode())
    fho = {"version": "world-1", "date": "", "description": "egoframe embedded world, Ego4D FHO layout",
           "videos": [fho_video(p) for p in parts]}
    _write_atomic(os.path.join(out_dir, files["fho"]), json.dumps(fho, indent=1).encode())
    records = [r for p in parts for r in ground_truth_records(p)]
    save_records(records, os.path.join(out_dir, GROUND_TRUTH_FILE))

    actions = [a for p in parts for a in p["actions"]]
    stats = {
        "verbs": dict(sorted(counts_v.items())),
        "cues": {c: sum(a["cue"] == c for a in actions) for c in ("strong", "weak", "misleading")},
        "ambiguous_share": round(sum(len(a["completions"]) > 1 for a in actions) / max(len(actions), 1), 4),
        "frames": sum(p["n_frames"] for p in parts),
    }
    entries = [{k: p[k] for k in ("video_id", "participant_id", "split", "video_path", "states_path", "n_frames",
                                  "fps", "width", "height", "duration_sec")} | {"n_actions": len(p["actions"])}
               for p in parts]
    manifest = WorldManifest(root=out_dir, config=config, videos=entries, files=files, n_actions=len(actions),
                             stats=stats)
    _write_atomic(os.path.join(out_dir, MANIFEST_FILE),
                  (json.dumps(manifest.to_dict(), indent=1, sort_keys=True) + "\n").encode())
    return manifest


__all__ = ["WorldManifest", "make_world", "make_video", "load_states", "video_ids", "write_world_files"]
