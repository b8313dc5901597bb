"""Unlimited (input frame, action, target frame) training pairs, simulated on the fly: no video, no curation run.

Curation takes each action's input near PRE-15 and its target near the PNR (the best-scoring frame of each
+-3-frame aesthetic window, LEGO Sec. 3.1). This source draws a fresh world per *episode* (the same random
scene sizes, camera jitter and motion blur as :mod:`egoframe.world.stream`), plans and plays one video of it
with the world's own code, and for every action takes one frame of each window at random (every frame of
both windows is a frame curation could pick: the world's timing makes them all show the pre- and post-state,
see ``WorldConfig.change_lead_s``). The two frames pass through the same 4:2:0 chroma subsampling and mild
lossy coding that a world video's yuv420p H.264 frames carry, so a model trained here sees inputs like the
curated frames it is scored on.

:func:`write_pairs` writes them as a data set in curation's layout (``pairs.parquet`` + PNG shards), so that
``egoframe enrich``, ``egoframe vllm train/embed`` and ``egoframe train`` read it unchanged; it is resumable
chunk by chunk. Everything is a pure function of the seed: same seed, same pairs, in the same order.
"""

from __future__ import annotations

import io
import itertools
import json
import os
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from egoframe.data.curate import REPORT_FILE, atomic_write_bytes, atomic_write_json
from egoframe.data.records import RECORDS_FILE, ActionRecord, Box, load_records, save_records
from egoframe.errors import InputError
from egoframe.utils.workers import process_pool
from egoframe.world.annotate import frame_boxes, oracle_description
from egoframe.world.render import render_state
from egoframe.world.simulate import plan_video, play
from egoframe.world.state import FrameState
from egoframe.world.stream import episode_config

_PAIRS_TAG = 0x7061697273  # "pairs": keeps these draws apart from the frame stream's and the worlds'
WINDOW = 3  # curation's aesthetic window: +-3 frames around PRE-15 and around the PNR
EPISODES_PER_CHUNK = 32  # a chunk of the written data set: its unit of work and of resuming
CODING_QUALITY = 92  # JPEG quality of the 4:2:0 round trip that stands in for the videos' H.264 coding


@dataclass
class StreamPair:
    """One simulated pair: uint8 frames, the true states they show, and the record's fields."""

    input_image: np.ndarray  # (R, R, 3) uint8
    target_image: np.ndarray
    input_state: FrameState
    target_state: FrameState
    episode: int
    world_seed: int
    input_frame: int
    target_frame: int
    action: object  # egoframe.world.simulate.Action
    boxes: list  # [(frame "input" | "pnr", frame_boxes entry)]
    description: str  # the annotation's one-sentence description (egoframe.world.annotate.oracle_description)


def video_coding(image: np.ndarray, quality: int = CODING_QUALITY) -> np.ndarray:
    """A rendered frame as a decoded video frame looks: 4:2:0 chroma and mild block coding (JPEG round trip)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality, subsampling=2)
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))


def _frame(states: list[FrameState], index: int, config) -> np.ndarray:
    image = render_state(states[index], config.resolution)
    if config.motion_blur and index > 0:  # the blend make_video applies: the previous frame shows through
        prev = render_state(states[index - 1], config.resolution).astype(np.float32)
        image = np.clip((1 - config.blur_shutter) * image + config.blur_shutter * prev + 0.5, 0, 255).astype(np.uint8)
    return image


def episode_pairs(seed: int, episode: int, resolution: int = 128, coding: bool = True) -> list[StreamPair]:
    """Every action's pair of one episode (a fresh simulated video; see the module docstring)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, episode, _PAIRS_TAG]))
    config = episode_config(rng, resolution)
    plan = plan_video(config, int(rng.integers(0, 10_000)))
    states = play(config, plan)
    last = len(states) - 1
    out = []
    for action in plan.actions:
        pre = max(action.pnr - config.pre_frames, 0)
        f_in = int(np.clip(pre + rng.integers(-WINDOW, WINDOW + 1), 0, last))
        f_tg = int(np.clip(action.pnr + rng.integers(-WINDOW, WINDOW + 1), 0, last))
        x, y = _frame(states, f_in, config), _frame(states, f_tg, config)
        if coding:
            x, y = video_coding(x), video_coding(y)
        boxes = [("input", b) for b in frame_boxes(states[f_in], action, resolution)]
        boxes += [("pnr", b) for b in frame_boxes(states[f_tg], action, resolution)]
        out.append(StreamPair(input_image=x, target_image=y, input_state=states[f_in], target_state=states[f_tg],
                              episode=episode, world_seed=config.seed, input_frame=f_in, target_frame=f_tg,
                              action=action, boxes=boxes, description=oracle_description(action, states[pre])))
    return out


def stream_pairs(seed: int, resolution: int = 128, coding: bool = True) -> Iterator[StreamPair]:
    """An endless, seeded stream of simulated training pairs (episode after episode)."""
    for episode in itertools.count():
        yield from episode_pairs(seed, episode, resolution, coding)


def pair_record(pair: StreamPair, split: str, input_path: str = "", target_path: str = ""):
    """The pair as the shared :class:`~egoframe.data.records.ActionRecord` (boxes as Ego4D's reader makes them)."""
    a = pair.action
    res = pair.input_image.shape[0]
    obj = pair.input_state.object(a.object_id)
    video_id = f"E{pair.episode:07d}"
    boxes = [Box(label=b["noun"] or b["role"], x0=b["box"][0], y0=b["box"][1], x1=b["box"][2], y1=b["box"][3],
                 role=b["role"], frame=frame) for frame, b in pair.boxes]
    return ActionRecord(
        id=f"{video_id}_{a.index}", source="world", action=a.label, verb=a.verb, noun=a.noun, video_id=video_id,
        participant_id="stream", fps=30.0, input_frame=pair.input_frame, target_frame=pair.target_frame,
        input_time=round(pair.input_frame / 30, 6), target_time=round(pair.target_frame / 30, 6),
        width=res, height=res, boxes=boxes, narration=a.label, input_path=input_path, target_path=target_path,
        split=split,
        extra={"hand": a.hand, "object_id": a.object_id, "object_name": obj.name, "object_colour": obj.colour,
               "tool_id": a.tool_id, "destination": a.destination, "cue": a.cue,
               "candidate_objects": sorted({c["object"] for c in a.candidates}),
               "n_completions": len(a.candidates), "oracle_description": pair.description,
               "episode": pair.episode, "world_seed": pair.world_seed},
    )


# ----------------------------------------------------------------------------------- writing a data set

CONFIG_FILE = "pairs_config.json"


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk_path(out: str, chunk: int) -> str:
    return os.path.join(out, "work", f"chunk-{chunk:05d}.json")


def write_chunk(out: str, seed: int, chunk: int, resolution: int, test_every: int) -> int:
    """Render one chunk's episodes into ``out/shards/<chunk>/`` and its records into ``work/``; returns the count."""
    rows = []
    for episode in range(chunk * EPISODES_PER_CHUNK, (chunk + 1) * EPISODES_PER_CHUNK):
        split = "test" if test_every and episode % test_every == test_every - 1 else "train"
        for pair in episode_pairs(seed, episode, resolution):
            base = f"shards/{chunk:05d}/E{pair.episode:07d}_{pair.action.index}"
            atomic_write_bytes(os.path.join(out, f"{base}_in.png"), _png(pair.input_image))
            atomic_write_bytes(os.path.join(out, f"{base}_tgt.png"), _png(pair.target_image))
            rows.append(pair_record(pair, split, f"{base}_in.png", f"{base}_tgt.png").to_dict())
    atomic_write_json(_chunk_path(out, chunk), rows)  # last: a chunk file means the chunk is complete
    return len(rows)


def _chunk_job(args: tuple[str, int, int, int, int]) -> int:
    out, seed, chunk, resolution, test_every = args
    return write_chunk(out, seed, chunk, resolution, test_every)


def write_pairs(out: str, n_pairs: int, seed: int = 0, resolution: int = 128, workers: int = 1,
                test_every: int = 50, on_chunk: Callable[[int, int], None] | None = None) -> dict:
    """Write at least ``n_pairs`` simulated pairs as a data set in curation's layout (resumable); returns the report.

    Whole chunks of ``EPISODES_PER_CHUNK`` episodes are written until ``n_pairs`` are reached, so a data set
    of more pairs with the same seed starts with the same pairs. Every ``test_every``-th episode is the test
    split (0: none), which a training run uses for its sample grids.
    """
    if n_pairs < 1:
        raise InputError(f"--pairs must be >= 1, got {n_pairs}")
    if resolution < 16 or resolution % 2:
        raise InputError(f"--resolution must be an even number >= 16, got {resolution}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise InputError(f"--out {out} exists and is not a directory")
    settings = {"source": "egoframe.world.pairs", "seed": seed, "resolution": resolution, "test_every": test_every,
                "episodes_per_chunk": EPISODES_PER_CHUNK, "coding_quality": CODING_QUALITY}
    os.makedirs(os.path.join(out, "work"), exist_ok=True)
    config_path = os.path.join(out, CONFIG_FILE)
    if os.path.exists(config_path):
        with open(config_path) as fh:
            saved = json.load(fh)
        if saved != settings:
            raise InputError(f"{out} holds pairs made with other settings ({saved}); use another --out")
    atomic_write_json(config_path, settings)

    counts: dict[int, int] = {}
    for chunk in itertools.count():  # the chunks already written
        path = _chunk_path(out, chunk)
        if not os.path.exists(path):
            break
        with open(path) as fh:
            counts[chunk] = len(json.load(fh))
    total = sum(counts.values())
    next_chunk = len(counts)
    # ~6.5 actions per episode: plan enough chunks, then top up one chunk at a time if the estimate fell short
    with process_pool(workers, preload=[__name__]) as pool:
        while total < n_pairs:
            want = max(1, int(np.ceil((n_pairs - total) / (6.0 * EPISODES_PER_CHUNK))))
            chunks = list(range(next_chunk, next_chunk + want))
            jobs = [(out, seed, c, resolution, test_every) for c in chunks]
            results = pool.map(_chunk_job, jobs) if workers > 1 else map(_chunk_job, jobs)
            for c, n in zip(chunks, results):
                counts[c] = n
                total += n
                if on_chunk:
                    on_chunk(min(total, n_pairs), n_pairs)
            next_chunk += want

    records = []
    for chunk in sorted(counts):
        with open(_chunk_path(out, chunk)) as fh:
            records.extend(ActionRecord.from_dict(r) for r in json.load(fh))
    records = records[:n_pairs]
    records_path = os.path.join(out, RECORDS_FILE)
    # A finished data set is left untouched on a rerun: its file's identity (size, mtime) keys the trainer's latent
    # cache (training.trainer.latent_cache_key), so rewriting the same pairs cost a resumed recipe ~8 min of encoding.
    if not (os.path.exists(records_path) and load_records(records_path) == records):
        save_records(records, records_path)
    report = {"format": "world-pairs", **settings,
              "counts": {"pairs_kept": len(records), "pairs_kept_train": sum(r.split == "train" for r in records),
                         "pairs_kept_test": sum(r.split == "test" for r in records),
                         "chunks": len(counts), "episodes": len(counts) * EPISODES_PER_CHUNK}}
    atomic_write_json(os.path.join(out, REPORT_FILE), report)
    return report


__all__ = ["StreamPair", "episode_pairs", "pair_record", "stream_pairs", "video_coding", "write_pairs"]
