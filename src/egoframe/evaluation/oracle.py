"""Oracle state reader for the embedded world: frame -> scene facts, and *action success* of a generated frame.

The world records the true scene state of every frame (``states/<video>.jsonl.gz``), so on the world the
question "did the generated frame carry out the action?" has a checkable answer. A small CNN, trained by
``egoframe oracle train`` on frames redrawn from those states (``render_state``), reads a frame back into
the facts an action can change (:data:`HEADS`): what each hand holds, drawers, tap, cut / placed tomatoes,
cup and bowl fill, and coarse object places. It is the embedded stand-in for EgoVLP (does the frame show
the action?) and for the user study (would a rater say it is right?); see docs/evaluation.md.

The facts, their classes and *action success* are the world's (:mod:`egoframe.world.facts`, re-exported
here). The reader is trained on an unlimited stream of freshly simulated frames (:mod:`egoframe.world.stream`)
with degradations, painted-out hands and garbage frames (:mod:`egoframe.evaluation.degrade`), and measured on
the decoded video frames of worlds it never saw (:func:`video_report`). A trained reader ships in the package
(:data:`SHIPPED_ORACLE`): every score on the embedded world is made by the same reader.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

import egoframe.evaluation.degrade as degrade
from egoframe.data.records import load_records
from egoframe.engine import Checkpoints, ModuleState, TrainState, run_steps
from egoframe.errors import InputError, MissingWeightsError
from egoframe.evaluation.images import to_pil
from egoframe.evaluation.stats import bootstrap_ci
from egoframe.utils.checkpoint import atomic_write_json, load_tensors, save_tensors
from egoframe.utils.progress import ProgressBar
from egoframe.world.config import WorldConfig
from egoframe.world.facts import (  # noqa: F401  (the oracle's heads are the world's facts; re-exported)
    BOWL_COLOURS,
    COMMON_FACTS,
    COUNTS,
    CUP_COLOURS,
    HEADS,
    HELD,
    MIN_VISIBLE,
    PLACES,
    VERB_FACTS,
    WorldStates,
    action_facts,
    action_success,
    facts_to_indices,
    readable_facts,
    state_accuracy,
    state_facts,
)
from egoframe.world.render import object_visibility, render_state
from egoframe.world.simulate import plan_video, play
from egoframe.world.stream import stream_frames
from egoframe.world.video import read_frames

logger = logging.getLogger(__name__)

# The oracle shipped in the package (`egoframe oracle train` on the stream; its report and command beside it):
# the reader every score on the embedded world uses unless the caller names another.
SHIPPED_ORACLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assets", "oracle")
WEIGHTS_FILE = "oracle.safetensors"
CONFIG_FILE = "oracle_config.json"
REPORT_FILE = "oracle_report.json"


# ----------------------------------------------------------------------------------------- the model


@dataclass
class OracleConfig:
    """How an oracle was (or will be) trained; saved as ``oracle_config.json`` beside its weights."""

    # "stream": unlimited frames of fresh simulated scenes (egoframe.world.stream), never a stored video;
    # "world": the frames of ``world``'s train-split videos (the first oracle's recipe, kept for comparison)
    source: str = "stream"
    world: str = ""  # "world" source: the training world; both: the world whose test-split videos are the report
    out_dir: str = ""
    resolution: int = 64  # frames are resized to this square size (PIL bicubic) before reading
    channels: tuple[int, ...] = (32, 64, 96, 128)  # one stride-2 conv block each
    hidden: int = 256
    frame_stride: int = 6  # every k-th frame of each training (and report) video, plus every action's key frames
    max_videos: int | None = None  # per split; None: all
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    blur_prob: float = 0.5  # "world" source augmentation: generated frames are softer than rendered ones
    noise_std: float = 0.03
    # "stream" source: shares of each batch that are degraded (blur, JPEG, noise, shifts, resampling; see
    # egoframe.evaluation.degrade), have a hand painted out (labelled "no hand"), or are garbage ("unreadable")
    degrade_prob: float = 0.6
    hidden_hand_prob: float = 0.06
    garbage_prob: float = 0.05
    checkpoint_every: int = 250  # "stream" source: steps between resumable checkpoints
    global_pool: bool = True  # the MLP also reads per-channel max / mean of the map (see build_model)
    # "stream" source: each class's loss weight is (its share of the stream's labels) ** -class_balance, so
    # rare states count more (0: plain cross-entropy; 0.5: inverse square root of the share). Why: with plain
    # cross-entropy a fact that is rare in the stream is never learnt - measured, "a tomato in a bowl" (4 % of
    # the frames) was read as none on every frame after 24 000 steps (docs/evaluation.md). Weighting classes by
    # inverse frequency is the standard remedy for class imbalance (e.g. King & Zeng 2001; Cui et al. 2019).
    class_balance: float = 0.0
    # "stream" source: facts whose objects the frame hides (less than MIN_VISIBLE of the object shows: a cup
    # under the reaching arm or behind the held cup; egoframe.world.render.object_visibility) get no label, so
    # the reader is not taught to guess what it cannot see - the same facts evaluation leaves out of "shown"
    mask_hidden: bool = False
    data_workers: int = 2  # "stream" source: processes rendering batches beside the training loop
    init_from: str = ""  # an oracle directory whose weights start this run (training on, with a fresh schedule)
    seed: int = 0
    threads: int | None = None
    heads: dict[str, list[str]] = field(default_factory=lambda: {k: list(v) for k, v in HEADS.items()})

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["channels"] = list(self.channels)
        # The logits are laid out in head order, and JSON files are written with sorted keys: store the heads
        # as an ordered list of [name, classes] so that a reload slices the logits exactly as training did.
        row["heads"] = [[name, list(classes)] for name, classes in self.heads.items()]
        return row

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> "OracleConfig":
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(row) - known)
        if unknown:
            raise InputError(f"oracle config: unknown keys {unknown}")
        row = dict(row)
        row.setdefault("global_pool", False)  # oracles saved before the option read the flattened map only
        row.setdefault("data_workers", 1)
        row.setdefault("init_from", "")
        row.setdefault("class_balance", 0.0)
        row.setdefault("mask_hidden", False)
        row["channels"] = tuple(row.get("channels", (32, 64, 96, 128)))
        if "heads" in row:
            row["heads"] = _ordered_heads(row["heads"])
        return cls(**row)

    def validate(self) -> "OracleConfig":
        if list(self.heads) != list(HEADS) or any(list(HEADS[k]) != list(v) for k, v in self.heads.items()):
            raise InputError("oracle heads differ from this egoframe's HEADS (the labels are made in HEADS order); "
                             "retrain the oracle with `egoframe oracle train`")
        if self.resolution < 16 or self.resolution % 2 ** len(self.channels):
            raise InputError(f"oracle resolution {self.resolution} must be >= 16 and divisible by "
                             f"{2 ** len(self.channels)}")
        if self.steps < 1 or self.batch_size < 1 or self.frame_stride < 1 or self.checkpoint_every < 1:
            raise InputError("oracle steps, batch_size, frame_stride and checkpoint_every must be >= 1")
        if self.source not in ("stream", "world"):
            raise InputError(f"oracle source must be 'stream' or 'world', got {self.source!r}")
        if self.source == "world" and not self.world:
            raise InputError("the 'world' oracle source needs a world directory (--world)")
        if not 0.0 <= self.class_balance <= 1.0:
            raise InputError(f"oracle class_balance must be in [0, 1], got {self.class_balance}")
        if self.class_balance and self.source != "stream":
            raise InputError("oracle class_balance weights the stream source's classes; the 'world' source has none")
        if self.mask_hidden and self.source != "stream":
            raise InputError("oracle mask_hidden masks the stream source's labels; use --source stream")
        for name in ("degrade_prob", "hidden_hand_prob", "garbage_prob", "blur_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"oracle {name} must be in [0, 1]")
        return self


def _ordered_heads(heads) -> dict[str, list[str]]:
    """Heads from a config file: an ordered [[name, classes], ...] list, or (files written before egoframe stored
    the order) a name -> classes mapping whose key order was lost to sorting. Training always used
    :data:`HEADS` order, so such a mapping is put back in that order when it names exactly those heads."""
    if isinstance(heads, list):
        try:
            return {str(name): list(classes) for name, classes in heads}
        except (TypeError, ValueError):
            raise InputError("oracle config: 'heads' must be a list of [name, classes] pairs") from None
    if isinstance(heads, dict):
        if set(heads) != set(HEADS):
            raise InputError(f"oracle config: heads {sorted(heads)} are not this egoframe's oracle heads; retrain it")
        return {name: list(heads[name]) for name in HEADS}
    raise InputError("oracle config: 'heads' must be a list of [name, classes] pairs")


def build_model(config: OracleConfig):
    """A plain CNN: stride-2 conv blocks, then an MLP over the flattened (spatial) map, one logit per class.

    With ``global_pool`` the MLP also sees the map's per-channel max and mean over all positions: facts that
    hold anywhere in the frame (is there a white bowl, is the blue cup filled, how many tomatoes are cut) are
    read by one detector wherever the object lies, instead of one learned per position.
    """
    import torch
    from torch import nn

    layers, c_in = [], 3
    for c_out in config.channels:
        layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                   nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        c_in = c_out
    side = config.resolution // 2 ** len(config.channels)
    n_out = sum(len(v) for v in config.heads.values())
    # Flattening (not pooling) keeps where things are: object places and which hand is which need it.
    if not config.global_pool:
        return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * side * side, config.hidden),
                             nn.ReLU(inplace=True), nn.Dropout(0.1), nn.Linear(config.hidden, n_out)).to(torch.float32)

    class Reader(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(*layers)
            self.head = nn.Sequential(nn.Linear(c_in * side * side + 2 * c_in, config.hidden), nn.ReLU(inplace=True),
                                      nn.Dropout(0.1), nn.Linear(config.hidden, n_out))

        def forward(self, x):
            f = self.features(x)  # (B, C, S, S)
            pooled = torch.cat([f.flatten(1), f.amax(dim=(2, 3)), f.mean(dim=(2, 3))], dim=1)
            return self.head(pooled)

    return Reader().to(torch.float32)


def _split_logits(logits, heads: dict[str, list[str]]):
    out, start = {}, 0
    for name, classes in heads.items():
        out[name] = logits[:, start:start + len(classes)]
        start += len(classes)
    return out


def preprocess(images: Sequence, resolution: int):
    """Images (paths, PIL, uint8 or [0, 1] float arrays) -> (B, 3, R, R) float tensor in [-1, 1]."""
    import torch
    from PIL import Image

    arrays = []
    for i, image in enumerate(images):
        pil = to_pil(image, f"image {i}")
        if pil.size != (resolution, resolution):
            pil = pil.resize((resolution, resolution), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(pil, dtype=np.uint8))
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return batch / 127.5 - 1.0


def resolve_oracle(path: str | os.PathLike | None) -> str:
    """The oracle directory to use: ``path``, or the shipped one when ``path`` is None."""
    if path is not None:
        return os.fspath(path)
    if os.path.isfile(os.path.join(SHIPPED_ORACLE, WEIGHTS_FILE)):
        return SHIPPED_ORACLE
    raise MissingWeightsError("action-success / state-acc need an oracle and this install ships none: pass "
                              "--oracle DIR (made by `egoframe oracle train --out DIR`)")


class OracleReader:
    """A trained oracle: ``read(images)`` -> one facts dict per image."""

    def __init__(self, model, config: OracleConfig, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.config = config
        self.device = device

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str = "cpu") -> "OracleReader":
        """Load an oracle directory; ``None``: the shipped oracle (:data:`SHIPPED_ORACLE`)."""
        path = resolve_oracle(path)
        weights, cfg = os.path.join(path, WEIGHTS_FILE), os.path.join(path, CONFIG_FILE)
        if not (os.path.isfile(weights) and os.path.isfile(cfg)):
            raise MissingWeightsError(f"{path} is not an oracle directory: it needs {WEIGHTS_FILE} and {CONFIG_FILE} "
                                      "(made by `egoframe oracle train`)")
        with open(cfg) as fh:
            config = OracleConfig.from_dict(json.load(fh)).validate()
        model = build_model(config)
        model.load_state_dict(load_tensors(weights))
        return cls(model, config, device)

    def read(self, images: Sequence, batch_size: int = 64) -> list[dict[str, str]]:
        import torch

        out = []
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                x = preprocess(images[start:start + batch_size], self.config.resolution).to(self.device)
                logits = _split_logits(self.model(x), self.config.heads)
                picks = {name: l.argmax(dim=1).tolist() for name, l in logits.items()}
                for k in range(x.shape[0]):
                    out.append({name: self.config.heads[name][picks[name][k]] for name in self.config.heads})
        return out


# ----------------------------------------------------------------------------------------- training data


def _frames_for(world: WorldStates, split: str, config: OracleConfig) -> list[tuple[str, int]]:
    """(video, frame) pairs: every ``frame_stride``-th frame plus every action's key frames (what gets scored)."""
    videos = world.manifest.split_videos(split)
    if config.max_videos is not None:
        videos = videos[: config.max_videos]
    chosen = set(videos)
    picks = {(v, f) for v in videos for f in range(0, next(x["n_frames"] for x in world.manifest.videos
                                                          if x["video_id"] == v), config.frame_stride)}
    for rec in load_records(world.manifest.path(world.manifest.files["ground_truth"])):
        if rec.video_id in chosen:
            # the PNR and its neighbours: curation may pick a target up to 3 frames away (aesthetic choice)
            for f in range(rec.target_frame - 3, rec.target_frame + 4):
                picks.add((rec.video_id, f))
            picks.add((rec.video_id, rec.input_frame))
    n_frames = {x["video_id"]: x["n_frames"] for x in world.manifest.videos}
    return sorted((v, f) for v, f in picks if 0 <= f < n_frames[v])


def render_examples(world: WorldStates, frames: list[tuple[str, int]], resolution: int):
    """Redraw each frame from its state at the world's resolution, resize like any scored image; (N,3,R,R) uint8."""
    import torch
    from PIL import Image

    images = np.empty((len(frames), resolution, resolution, 3), np.uint8)
    labels = np.empty((len(frames), len(HEADS)), np.int64)
    world_res = world.manifest.config.resolution
    for i, (video, frame) in enumerate(frames):
        state = world.state(video, frame)
        img = Image.fromarray(render_state(state, world_res))
        if world_res != resolution:
            img = img.resize((resolution, resolution), Image.Resampling.BICUBIC)
        images[i] = np.asarray(img)
        labels[i] = facts_to_indices(state_facts(state))
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels)


def _augment(x, generator, config: OracleConfig):
    """Random blur (3x3 binomial, as soft as a small diffusion model's output) and pixel noise. x in [-1, 1]."""
    import torch

    if config.blur_prob > 0:
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :]) / 16.0
        blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"),
                                             kernel.expand(3, 1, 3, 3), groups=3)
        pick = torch.rand(x.shape[0], generator=generator) < config.blur_prob
        x = torch.where(pick[:, None, None, None], blurred, x)
    if config.noise_std > 0:
        x = x + config.noise_std * torch.randn(x.shape, generator=generator)
    return x


IGNORE = -100  # label of a head that a training frame says nothing about (every head but "frame" of garbage)


def _loss(logits, labels, heads, weights=None):
    """Mean over heads of each head's cross-entropy (weighted per class when ``weights`` is given: one
    (n_classes,) tensor per head, as :func:`class_weights` makes)."""
    import torch

    parts = _split_logits(logits, heads)
    total, count = logits.new_zeros(()), 0
    for k, l in enumerate(parts.values()):
        valid = labels[:, k] != IGNORE
        if bool(valid.any()):
            weight = weights[k] if weights is not None else None
            total = total + torch.nn.functional.cross_entropy(l[valid], labels[valid, k], weight=weight)
            count += 1
    return total / max(count, 1)


CLASS_COUNT_BATCHES = 24  # stream batches whose labels estimate each class's share for class_balance
MAX_CLASS_WEIGHT = 10.0


def class_weights(config: OracleConfig) -> list:
    """Per head, (n_classes,) weights share ** -class_balance, normalised to a label-weighted mean of 1 and
    capped at ``MAX_CLASS_WEIGHT``; shares are counted on fixed stream batches (a pure function of the seed,
    so a resumed run gets the same weights). Classes never seen there get the largest weight of their head."""
    import torch

    counts = [np.zeros(len(v)) for v in HEADS.values()]
    for b in range(CLASS_COUNT_BATCHES):
        _, labels = stream_batch(config, 10**9 + b)  # batches no training run reaches
        for k in range(labels.shape[1]):
            col = labels[:, k]
            np.add.at(counts[k], col[col != IGNORE], 1)
    weights = []
    for c in counts:
        share = c / max(c.sum(), 1.0)
        seen = share > 0
        w = np.ones_like(share)
        if seen.any():
            w[seen] = share[seen] ** -config.class_balance
            w[~seen] = w[seen].max()
            w /= float((w * share).sum())
        weights.append(torch.tensor(np.minimum(w, MAX_CLASS_WEIGHT), dtype=torch.float32))
    return weights


def stream_batch(config: OracleConfig, step: int):
    """Training batch ``step`` of the "stream" source, a pure function of (config.seed, step):
    (B, 3, R, R) uint8 frames at the reader's resolution and (B, heads) int64 labels (``IGNORE`` where
    unknown), as numpy arrays (made in a forked worker, which must not run torch).

    Frames are drawn at the world's 128 px most of the time, sometimes at a generator's 64 / 96 / 256 px,
    and resized to the reader's size with the same resampling as :func:`preprocess`."""
    import itertools

    from PIL import Image

    rng = np.random.default_rng(np.random.SeedSequence([config.seed, step, 0x6F7261636C65]))
    draw_res = int(rng.choice([128, 64, 96, 256], p=[0.7, 0.15, 0.1, 0.05]))
    # 16 frames of each of 4 fresh scenes per batch of 64: scenes vary within a batch (BatchNorm statistics)
    frames = itertools.islice(stream_frames(int(rng.integers(0, 2**31 - 1)), draw_res, frames_per_episode=16),
                              config.batch_size)
    res = config.resolution
    images = np.empty((config.batch_size, res, res, 3), np.uint8)
    labels = np.full((config.batch_size, len(HEADS)), IGNORE, np.int64)
    frame_head = list(HEADS).index("frame")
    for i, item in enumerate(frames):
        u = rng.random()
        if u < config.garbage_prob:
            image = degrade.garbage(rng, draw_res, like=item.image)
            labels[i, frame_head] = HEADS["frame"].index("unreadable")
        else:
            hidden: tuple[str, ...] = ()
            image = item.image
            if u < config.garbage_prob + config.hidden_hand_prob:
                hidden = (("left",), ("right",), ("left", "right"))[int(rng.integers(0, 3))]
                image = render_state(item.state, draw_res, hidden_hands=hidden)
            if rng.random() < config.degrade_prob:
                image = degrade.random_degradation(image, rng)
            labels[i] = facts_to_indices(state_facts(item.state, hidden_hands=hidden))
            if config.mask_hidden:
                shown = set(readable_facts(item.state, object_visibility(item.state, 64, hidden_hands=hidden)))
                labels[i, [k for k, name in enumerate(HEADS) if name not in shown]] = IGNORE
        if image.shape[0] != res:
            image = np.asarray(Image.fromarray(image).resize((res, res), Image.Resampling.BICUBIC))
        images[i] = image
    return np.ascontiguousarray(images.transpose(0, 3, 1, 2)), labels


def _prefetched(config: OracleConfig, start: int, stop: int, workers: int = 1, ahead: int = 6):
    """Batches ``start .. stop - 1`` in order, made by ``workers`` forked processes at most ``ahead`` batches
    ahead of the training loop (rendering and degrading run beside the optimizer step). Fork, not spawn: a
    user's script without a ``__main__`` guard still works; the workers run numpy and PIL only."""
    import multiprocessing
    from collections import deque

    if start >= stop:
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        pending: deque = deque()
        step = start
        while step < stop or pending:
            while step < stop and len(pending) < ahead:
                pending.append(pool.apply_async(stream_batch, (config, step)))
                step += 1
            yield pending.popleft().get()


# ----------------------------------------------------------------------------------------- train + report


CHECKPOINT_DIR = "checkpoint"


def train_oracle(config: OracleConfig, progress: bool = False) -> dict:
    """Train the reader; write ``oracle.safetensors``, ``oracle_config.json`` and ``oracle_report.json``.

    ``source="stream"`` trains on unlimited simulated frames (resumable: a killed run continues from its last
    checkpoint in ``out_dir/checkpoint``); ``source="world"`` on the frames of ``world``'s train-split videos.
    The report is measured on the decoded video frames of ``world``'s test split (none without a world).
    A directory that already holds all three files is reused as it is (the report is returned).
    """
    import torch

    config.validate()
    out = config.out_dir
    report_path = os.path.join(out, REPORT_FILE)
    if all(os.path.isfile(os.path.join(out, f)) for f in (WEIGHTS_FILE, CONFIG_FILE, REPORT_FILE)):
        with open(report_path) as fh:
            return json.load(fh)
    if config.threads:
        torch.set_num_threads(config.threads)
    world = WorldStates(config.world) if config.world else None
    if world is not None and not world.manifest.split_videos("test"):
        raise InputError(f"the world at {config.world} has no test-split videos to measure the oracle on")
    os.makedirs(out, exist_ok=True)
    t0 = time.time()
    if config.source == "world":
        model, info = _train_on_world(config, world, progress)
    else:
        model, info = _train_on_stream(config, progress)
    model.eval()
    reader = OracleReader(model, config)
    report = {**info, "steps": config.steps, "source": config.source, "train_seconds": round(time.time() - t0, 1)}
    if world is not None:
        report.update(video_report(reader, config.world, frame_stride=config.frame_stride,
                                   max_videos=config.max_videos))
    save_tensors({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, WEIGHTS_FILE))
    atomic_write_json(os.path.join(out, CONFIG_FILE), config.to_dict())
    atomic_write_json(report_path, report)  # written last: its presence marks a finished oracle
    return report


def _train_on_world(config: OracleConfig, world: WorldStates, progress: bool):
    import torch

    x_train, y_train = render_examples(world, _frames_for(world, "train", config), config.resolution)
    torch.manual_seed(config.seed)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=0.15)
    g = torch.Generator().manual_seed(config.seed)
    model.train()

    def step_fn(step: int) -> float:
        idx = torch.randint(0, x_train.shape[0], (config.batch_size,), generator=g)
        x = _augment(x_train[idx].float() / 127.5 - 1.0, g, config)
        loss = _loss(model(x), y_train[idx], config.heads)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        return float(loss.detach())

    with ProgressBar(progress, "oracle", config.steps, fields={"loss": "-"}) as bar:
        loss_value = run_steps(step_fn, 0, config.steps, bar=bar, advice="lower --lr")
    return model, {"train_frames": int(x_train.shape[0]), "final_loss": loss_value}


def _train_on_stream(config: OracleConfig, progress: bool):
    import torch

    if not config.threads:
        # the data workers render the next batches; more torch threads would only contend with them
        torch.set_num_threads(max(1, (os.cpu_count() or 2) - config.data_workers))
    torch.manual_seed(config.seed)
    model = build_model(config)
    if config.init_from:
        origin_dir = resolve_oracle(config.init_from)
        try:
            with open(os.path.join(origin_dir, CONFIG_FILE)) as fh:
                origin = OracleConfig.from_dict(json.load(fh))
        except OSError:
            raise MissingWeightsError(f"--init-from {origin_dir} is not an oracle directory (no {CONFIG_FILE})") from None
        shape = lambda c: (c.to_dict()["heads"], c.global_pool, tuple(c.channels), c.hidden, c.resolution)  # noqa: E731
        if shape(origin) != shape(config):
            raise InputError(f"--init-from {config.init_from} is an oracle of another architecture")
        model.load_state_dict(load_tensors(os.path.join(origin_dir, WEIGHTS_FILE)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=0.1)
    saver = Checkpoints(os.path.join(config.out_dir, CHECKPOINT_DIR), single=True)
    state = TrainState(tensors={"model": ModuleState(model)}, optimizer=optimizer, scheduler=schedule)
    start, losses = 0, []
    if saver.latest():
        if saver.record(saver.root)["config"] != config.to_dict():
            raise InputError(f"{config.out_dir} holds a checkpoint of a different oracle config; "
                             "use another --out or delete its checkpoint/ folder")
        record = saver.load(saver.root, state)  # the RNG too: dropout draws
        start, losses = record["step"], record["losses"]
        logger.info("oracle: resuming at step %d/%d", start, config.steps)

    weights = class_weights(config) if config.class_balance else None
    model.train()
    batches = _prefetched(config, start, config.steps, workers=config.data_workers)

    def step_fn(step: int) -> float:
        x_uint8, labels = next(batches)
        x = torch.from_numpy(x_uint8).float() / 127.5 - 1.0
        loss = _loss(model(x), torch.from_numpy(labels), config.heads, weights)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(round(float(loss.detach()), 5))
        return losses[-1]

    try:
        with ProgressBar(progress, "oracle", config.steps, start, fields={"loss": "-"}) as bar:
            run_steps(step_fn, start, config.steps, bar=bar, checkpoint_every=config.checkpoint_every,
                      checkpoint=lambda done: saver.save(done, state, losses=losses, config=config.to_dict()),
                      advice="lower --lr")
    finally:
        batches.close()  # stops the rendering workers
    tail = losses[-50:] or [float("nan")]
    return model, {"train_frames": config.steps * config.batch_size, "final_loss": float(np.mean(tail)),
                   "loss_curve": losses[:: max(1, len(losses) // 200)]}


def video_report(reader: OracleReader, world_dir: str, frame_stride: int = 6, max_videos: int | None = None,
                 split: str = "test") -> dict:  # split: "train", "test" or "all"
    """How well the reader reads a world's *video frames* (decoded MP4, what curation and users see).

    Per fact and all-facts-exact on every ``frame_stride``-th frame plus every action's key frames of the
    split's videos; and on the actions' true pairs, action success of the decoded PNR frame (the ceiling),
    of each frame of the PNR +-3 window curation may choose from, and of the PRE-15 input frame (the floor).
    """
    world = WorldStates(world_dir)
    videos = ([v["video_id"] for v in world.manifest.videos] if split == "all"
              else world.manifest.split_videos(split))
    videos = videos[:max_videos] if max_videos else videos
    if not videos:
        raise InputError(f"the world at {world_dir} has no {split}-split videos")
    records = [r for r in load_records(world.manifest.path(world.manifest.files["ground_truth"]))
               if r.video_id in set(videos)]
    paths = {v["video_id"]: world.manifest.path(v["video_path"]) for v in world.manifest.videos}
    images, truth, states, where = [], [], [], {}
    for video in videos:
        decoded = read_frames(paths[video])
        picks = set(range(0, len(decoded), frame_stride))
        for r in records:
            if r.video_id == video:
                picks |= {r.input_frame, *range(r.target_frame - 3, r.target_frame + 4)}
        for f in sorted(p for p in picks if 0 <= p < len(decoded)):
            where[(video, f)] = len(images)
            images.append(decoded[f])
            states.append(world.state(video, f))
            truth.append(state_facts(states[-1]))
    read = reader.read(images)
    names = list(HEADS)
    per_fact = {n: float(np.mean([p[n] == t[n] for p, t in zip(read, truth)])) for n in names}
    exact = [float(all(p[n] == t[n] for n in names)) for p, t in zip(read, truth)]
    # the same on the facts each frame shows (its objects at least half visible): what reading can be asked to get
    shown = [readable_facts(state, object_visibility(state)) for state in states]
    hits = {n: [] for n in names}
    for p, t, r in zip(read, truth, shown):
        for n in r:
            hits[n].append(p[n] == t[n])
    shown_fact = {n: float(np.mean(v)) if v else None for n, v in hits.items()}
    shown_exact = [float(all(p[n] == t[n] for n in r)) for p, t, r in zip(read, truth, shown)]
    hidden = {n: len(read) - len(hits[n]) for n in names if len(hits[n]) < len(read)}
    wrong: dict[str, int] = {}
    for p, t in zip(read, truth):
        for n in names:
            if p[n] != t[n]:
                wrong[f"{n}: {t[n]} -> {p[n]}"] = wrong.get(f"{n}: {t[n]} -> {p[n]}", 0) + 1
    tgt, window, inp = [], [], []
    for r in records:
        fin = state_facts(world.state(r.video_id, r.input_frame))
        ftg = state_facts(world.state(r.video_id, r.target_frame))
        tgt.append(float(action_success(read[where[(r.video_id, r.target_frame)]], r.verb, fin, ftg)))
        inp.append(float(action_success(read[where[(r.video_id, r.input_frame)]], r.verb, fin, ftg)))
        for f in range(r.target_frame - 3, r.target_frame + 4):
            if (r.video_id, f) in where:
                window.append(float(action_success(read[where[(r.video_id, f)]], r.verb, fin, ftg)))
    ci = lambda v: bootstrap_ci(np.asarray(v), resamples=2000).as_dict() if v else None  # noqa: E731
    return {
        "world": os.path.abspath(world_dir), "world_seed": world.manifest.config.seed, "split": split,
        "videos": len(videos), "test_frames": len(images),
        "fact_accuracy": {k: round(v, 5) for k, v in per_fact.items()},
        "mean_fact_accuracy": round(float(np.mean(list(per_fact.values()))), 5),
        "all_facts_exact": ci(exact),
        "shown_fact_accuracy": {k: None if v is None else round(v, 5) for k, v in shown_fact.items()},
        "mean_shown_fact_accuracy": round(float(np.mean([v for v in shown_fact.values() if v is not None])), 5),
        "shown_facts_exact": ci(shown_exact),
        "hidden_facts": {"min_visible": MIN_VISIBLE, "frames_per_fact": hidden,
                         "share": round(sum(hidden.values()) / (len(read) * len(names)), 5)},
        "most_common_errors": dict(sorted(wrong.items(), key=lambda kv: -kv[1])[:15]),
        "test_actions": len(records),
        "target_action_success": ci(tgt),
        "target_window_action_success": ci(window),
        "input_action_success": ci(inp),
    }


def robustness_report(reader: OracleReader, seed: int, n_videos: int = 20, resolution: int = 128) -> dict:
    """Action success of true target frames under mild degradations a person still reads through, and of
    frames that show no action done (issue 17, item 3), on the actions of ``n_videos`` freshly simulated
    videos of world seed ``seed`` (rendered from their states, at ``resolution``).

    Degraded targets (should stay ~1): Gaussian blur sigma 1 px, JPEG quality 60, noise sigma 0.02, shifts of
    +-2 px. Garbage (should stay ~0): pure noise, a flat grey frame, the target with the acting hand painted out.
    """
    config = WorldConfig(n_videos=n_videos, seed=seed, resolution=resolution).validate()
    rng = np.random.default_rng(seed)
    cases: dict[str, list] = {name: [] for name in ("clean", "blur_1px", "jpeg_60", "noise_0.02", "shift_2px",
                                                    "noise_frame", "grey_frame", "acting_hand_painted_out")}
    truth = []
    for index in range(n_videos):
        plan = plan_video(config, index)
        states = play(config, plan)
        for a in plan.actions:
            s_in, s_tg = states[a.pnr - config.pre_frames], states[a.pnr]
            target = render_state(s_tg, resolution)
            truth.append((a.verb, state_facts(s_in), state_facts(s_tg)))
            cases["clean"].append(target)
            cases["blur_1px"].append(degrade.gaussian_blur(target, 1.0))
            cases["jpeg_60"].append(degrade.jpeg(target, 60))
            cases["noise_0.02"].append(degrade.add_noise(target, 0.02, rng))
            dx, dy = (int(v) for v in rng.choice([-2, -1, 1, 2], size=2))
            cases["shift_2px"].append(degrade.shift(target, dx, dy))
            cases["noise_frame"].append(rng.integers(0, 256, size=target.shape, dtype=np.uint8))
            cases["grey_frame"].append(np.full_like(target, 128))
            cases["acting_hand_painted_out"].append(render_state(s_tg, resolution, hidden_hands=(a.hand,)))
    out = {"world_seed": seed, "videos": n_videos, "actions": len(truth), "resolution": resolution}
    for name, images in cases.items():
        read = reader.read(images)
        success = [action_success(p, verb, fin, ftg) for p, (verb, fin, ftg) in zip(read, truth)]
        out[name] = round(float(np.mean(success)), 5)
    return out


# ----------------------------------------------------------------------------------------- scoring generated frames


SAMPLE_COLUMNS = ("video_id", "input_frame", "target_frame")


class OracleScorer:
    """Action success and state accuracy of generated frames, for the evaluation runner."""

    def __init__(self, oracle: str | None, world: str | None, device: str = "cpu"):
        self.reader = OracleReader.load(oracle, device=device)  # None: the shipped oracle
        if world is None:
            raise InputError("action-success / state-acc need the world's true states: pass --world DIR")
        self.world = WorldStates(world)

    def _truth(self, samples) -> list[tuple[str, dict, dict]]:
        out = []
        for s in samples:
            missing = [c for c in SAMPLE_COLUMNS if not str(s.extra.get(c, "")).strip()]
            if missing:
                raise InputError(f"sample {s.sample_id!r} has no {', '.join(missing)} column(s): oracle metrics need "
                                 "the world frame of each sample (written by `egoframe reproduce`)")
            video = s.extra["video_id"]
            verb = s.extra.get("verb") or s.action.split(" ", 1)[0]
            out.append((verb, state_facts(self.world.state(video, int(s.extra["input_frame"]))),
                        state_facts(self.world.state(video, int(s.extra["target_frame"])))))
        return out

    def check(self, samples) -> None:
        self._truth(samples)

    def score(self, samples, images: Sequence, batch_size: int = 64) -> tuple[list[float], list[float]]:
        """(action success 0/1, state accuracy) per sample."""
        truth = self._truth(samples)
        read = self.reader.read(list(images), batch_size=batch_size)
        success = [float(action_success(p, verb, fin, ftg)) for p, (verb, fin, ftg) in zip(read, truth)]
        accuracy = [state_accuracy(p, ftg) for p, (_, _, ftg) in zip(read, truth)]
        return success, accuracy


__all__ = ["HEADS", "SHIPPED_ORACLE", "VERB_FACTS", "OracleConfig", "OracleReader", "OracleScorer", "WorldStates",
           "action_facts", "action_success", "resolve_oracle", "robustness_report", "state_accuracy", "state_facts", "stream_batch",
           "train_oracle", "video_report"]
