"""Oracle state reader for the embedded world: frame -> scene facts, and *action success* of a generated frame.

The world records the true scene state of every frame (``states/<video>.jsonl.gz``), so on the world the
question "did the generated frame carry out the action?" has a checkable answer. A small CNN, trained by
``egoframe oracle train`` on frames redrawn from those states (``render_state``), reads a frame back into
the facts an action can change (:data:`HEADS`): what each hand holds, drawers, tap, cut / placed tomatoes,
cup and bowl fill, and coarse object places. It is the embedded stand-in for EgoVLP (does the frame show
the action?) and for the user study (would a rater say it is right?); see docs/evaluation.md.

*Action success* (:func:`action_facts`, :func:`action_success`) of a generated frame for an action with true
input state S_in and true target state S_tg: the reader's facts of the generated frame equal facts(S_tg) on
every fact the action is about, i.e. the facts of its verb (take/put: both hands; open/close: both drawers;
turn-on/off: the tap; cut: the cut count; pour: every cup and bowl fill) plus every fact whose true value
differs between S_in and S_tg (e.g. "take cup": the taken cup's place becomes ``hand`` and the acting
hand's fact becomes that cup's colour, so the *right* cup must be in the *right* hand). *State accuracy* is
the share of all facts read equal to facts(S_tg): it also punishes damage to the rest of the scene.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from egoframe.errors import InputError, MissingWeightsError

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "oracle.safetensors"
CONFIG_FILE = "oracle_config.json"
REPORT_FILE = "oracle_report.json"

CUP_COLOURS = ("red", "green", "blue", "yellow")
BOWL_COLOURS = ("white", "purple", "orange")
HELD = ("nothing", "red cup", "green cup", "blue cup", "yellow cup", "knife", "tomato")
PLACES = ("absent", "hand", "board", "counter-left", "counter-middle", "counter-right")
COUNTS = ("0", "1", "2", "3")

# fact name -> its classes. Object identity = kind + colour (the two tomatoes look alike, so they are counted).
HEADS: dict[str, tuple[str, ...]] = {
    "left_hand": HELD,
    "right_hand": HELD,
    "drawer_left": ("closed", "open"),
    "drawer_right": ("closed", "open"),
    "tap": ("off", "on"),
    "tomatoes_cut": COUNTS,
    "tomatoes_on_board": COUNTS,
    "tomatoes_in_bowls": COUNTS,
    **{f"cup_{c}": ("absent", "empty", "filled") for c in CUP_COLOURS},
    **{f"bowl_{c}": ("absent", "empty", "full") for c in BOWL_COLOURS},
    **{f"place_{c}_cup": PLACES for c in CUP_COLOURS},
    "place_knife": PLACES,
}

# Facts each verb is about, whatever changed (world verbs, docs/world.md).
VERB_FACTS: dict[str, tuple[str, ...]] = {
    "take": ("left_hand", "right_hand"),
    "put": ("left_hand", "right_hand"),
    "open": ("drawer_left", "drawer_right"),
    "close": ("drawer_left", "drawer_right"),
    "turn-on": ("tap",),
    "turn-off": ("tap",),
    "cut": ("tomatoes_cut",),
    "pour": tuple(f"cup_{c}" for c in CUP_COLOURS) + tuple(f"bowl_{c}" for c in BOWL_COLOURS),
}


# ----------------------------------------------------------------------------------------- facts of a state


def _place(obj) -> str:
    from egoframe.world.state import counter_third

    if obj.held_by:
        return "hand"
    if obj.place == "board":
        return "board"
    # thirds of the counter in scene x (camera motion does not move it)
    return ("counter-left", "counter-middle", "counter-right")[counter_third(obj.x)]


def state_facts(state) -> dict[str, str]:
    """The facts of a :class:`~egoframe.world.FrameState` (or its dict form), one class name per head."""
    from egoframe.world.state import FrameState

    if isinstance(state, dict):
        state = FrameState.from_dict(state)
    facts = {name: classes[0] for name, classes in HEADS.items()}
    by_id = {o.id: o for o in state.objects}
    for side in ("left", "right"):
        held = state.hands[side].holding
        if held is None:
            facts[f"{side}_hand"] = "nothing"
        else:
            obj = by_id[held]
            facts[f"{side}_hand"] = obj.name if obj.kind == "cup" else obj.kind
    tomatoes = [o for o in state.objects if o.kind == "tomato"]
    facts["tomatoes_cut"] = str(min(sum(t.cut for t in tomatoes), 3))
    facts["tomatoes_on_board"] = str(min(sum(t.place == "board" and not t.held_by for t in tomatoes), 3))
    facts["tomatoes_in_bowls"] = str(min(sum(t.place.startswith("bowl") and not t.held_by for t in tomatoes), 3))
    for obj in state.objects:
        if obj.kind == "drawer":
            facts[obj.id] = "open" if obj.open >= 0.5 else "closed"
        elif obj.kind == "tap":
            facts["tap"] = "on" if obj.on else "off"
        elif obj.kind == "cup":
            facts[f"cup_{obj.colour}"] = "filled" if obj.filled else "empty"
            facts[f"place_{obj.colour}_cup"] = _place(obj)
        elif obj.kind == "bowl":
            facts[f"bowl_{obj.colour}"] = "full" if obj.fill >= 0.5 else "empty"
        elif obj.kind == "knife":
            facts["place_knife"] = _place(obj)
    return facts


def action_facts(verb: str, input_facts: dict[str, str], target_facts: dict[str, str]) -> list[str]:
    """The facts an action is judged on: its verb's facts plus every fact the true state changed.

    Verbs arrive in every spelling the readers produce: "turn-on" (world), "turn_on" (Ego4D structured
    verb), "turn on" (the curated record's verb).
    """
    verb = "-".join(verb.strip().lower().replace("_", " ").split())
    if verb not in VERB_FACTS:
        raise InputError(f"unknown world verb {verb!r}; expected one of {', '.join(VERB_FACTS)}")
    changed = [name for name in HEADS if input_facts[name] != target_facts[name]]
    return [name for name in HEADS if name in VERB_FACTS[verb] or name in changed]


def action_success(predicted: dict[str, str], verb: str, input_facts: dict[str, str],
                   target_facts: dict[str, str]) -> bool:
    return all(predicted[name] == target_facts[name] for name in action_facts(verb, input_facts, target_facts))


def state_accuracy(predicted: dict[str, str], target_facts: dict[str, str]) -> float:
    return sum(predicted[name] == target_facts[name] for name in HEADS) / len(HEADS)


def facts_to_indices(facts: dict[str, str]) -> list[int]:
    return [HEADS[name].index(facts[name]) for name in HEADS]


# ----------------------------------------------------------------------------------------- the model


@dataclass
class OracleConfig:
    """How an oracle was (or will be) trained; saved as ``oracle_config.json`` beside its weights."""

    world: str = ""
    out_dir: str = ""
    resolution: int = 64  # frames are resized to this square size (PIL bicubic) before reading
    channels: tuple[int, ...] = (32, 64, 96, 128)  # one stride-2 conv block each
    hidden: int = 256
    frame_stride: int = 6  # every k-th frame of each training video, plus every action's input/target frame
    max_videos: int | None = None  # per split; None: all
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    blur_prob: float = 0.5  # augmentation: generated frames are softer than rendered ones
    noise_std: float = 0.03
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
        if self.steps < 1 or self.batch_size < 1 or self.frame_stride < 1:
            raise InputError("oracle steps, batch_size and frame_stride must be >= 1")
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
    """A plain CNN: stride-2 conv blocks, then an MLP over the flattened (spatial) map, one logit per class."""
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
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(c_in * side * side, config.hidden), nn.ReLU(inplace=True),
                         nn.Dropout(0.1), nn.Linear(config.hidden, n_out)).to(torch.float32)


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

    from egoframe.evaluation.images import to_pil

    arrays = []
    for i, image in enumerate(images):
        pil = to_pil(image, f"image {i}")
        if pil.size != (resolution, resolution):
            pil = pil.resize((resolution, resolution), Image.Resampling.BICUBIC)
        arrays.append(np.asarray(pil, dtype=np.uint8))
    batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    return batch / 127.5 - 1.0


class OracleReader:
    """A trained oracle: ``read(images)`` -> one facts dict per image."""

    def __init__(self, model, config: OracleConfig, device: str = "cpu"):
        self.model = model.to(device).eval()
        self.config = config
        self.device = device

    @classmethod
    def load(cls, path: str | os.PathLike | None, device: str = "cpu") -> "OracleReader":
        from egoframe.utils.checkpoint import load_tensors

        if path is None:
            raise MissingWeightsError("action-success / state-acc need a trained oracle: pass --oracle DIR "
                                      "(made by `egoframe oracle train --world WORLD --out DIR`)")
        path = os.fspath(path)
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


class WorldStates:
    """True per-frame states of a world, read lazily per video (a few ms each)."""

    def __init__(self, world: str | os.PathLike):
        from egoframe.world import WorldManifest

        self.root = os.fspath(world)
        self.manifest = WorldManifest.load(self.root)
        self._paths = {v["video_id"]: self.manifest.path(v["states_path"]) for v in self.manifest.videos}
        self._cache: dict[str, list] = {}

    def state(self, video_id: str, frame: int):
        from egoframe.world import load_states

        if video_id not in self._paths:
            raise InputError(f"video {video_id!r} is not in the world at {self.root}")
        if video_id not in self._cache:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[video_id] = load_states(self._paths[video_id])
        states = self._cache[video_id]
        if not 0 <= frame < len(states):
            raise InputError(f"frame {frame} is outside video {video_id} ({len(states)} frames)")
        return states[frame]


def _frames_for(world: WorldStates, split: str, config: OracleConfig) -> list[tuple[str, int]]:
    """(video, frame) pairs: every ``frame_stride``-th frame plus every action's key frames (what gets scored)."""
    from egoframe.data.records import load_records

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

    from egoframe.world import render_state

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


def _loss(logits, labels, heads):
    import torch

    parts = _split_logits(logits, heads)
    return sum(torch.nn.functional.cross_entropy(l, labels[:, k]) for k, l in enumerate(parts.values())) / len(parts)


# ----------------------------------------------------------------------------------------- train + report


def train_oracle(config: OracleConfig, progress: bool = False) -> dict:
    """Train the reader on the world's train-split videos; report accuracy on the test-split videos.

    Writes ``oracle.safetensors``, ``oracle_config.json`` and ``oracle_report.json`` to ``config.out_dir``.
    A directory that already holds all three is reused as it is (the report is returned).
    """
    import torch

    from egoframe.utils.checkpoint import atomic_write_json, save_tensors

    config.validate()
    out = config.out_dir
    report_path = os.path.join(out, REPORT_FILE)
    if all(os.path.isfile(os.path.join(out, f)) for f in (WEIGHTS_FILE, CONFIG_FILE, REPORT_FILE)):
        with open(report_path) as fh:
            return json.load(fh)
    if config.threads:
        torch.set_num_threads(config.threads)
    world = WorldStates(config.world)
    if not world.manifest.split_videos("test"):
        raise InputError(f"the world at {config.world} has no test-split videos to measure the oracle on")
    t0 = time.time()
    x_train, y_train = render_examples(world, _frames_for(world, "train", config), config.resolution)
    render_s = time.time() - t0
    torch.manual_seed(config.seed)
    model = build_model(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=0.15)
    g = torch.Generator().manual_seed(config.seed)
    model.train()
    t1, loss_value = time.time(), float("nan")
    for step in range(config.steps):
        idx = torch.randint(0, x_train.shape[0], (config.batch_size,), generator=g)
        x = _augment(x_train[idx].float() / 127.5 - 1.0, g, config)
        loss = _loss(model(x), y_train[idx], config.heads)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_value = float(loss.detach())
        if progress and (step + 1) % 100 == 0:
            logger.info("oracle step %d/%d loss %.4f", step + 1, config.steps, loss_value)
    train_s = time.time() - t1
    model.eval()
    reader = OracleReader(model, config)
    report = {"train_frames": int(x_train.shape[0]), "steps": config.steps, "final_loss": loss_value,
              "render_seconds": round(render_s, 1), "train_seconds": round(train_s, 1),
              **held_out_report(reader, world, config)}
    os.makedirs(out, exist_ok=True)
    save_tensors({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(out, WEIGHTS_FILE))
    atomic_write_json(os.path.join(out, CONFIG_FILE), config.to_dict())
    atomic_write_json(report_path, report)  # written last: its presence marks a finished oracle
    return report


def held_out_report(reader: OracleReader, world: WorldStates, config: OracleConfig) -> dict:
    """Accuracy on test-split videos: per fact on sampled frames, and on the actions' true frames.

    ``target_action_success`` is the oracle's ceiling (action success of the true target frames);
    ``input_action_success`` is the floor a generator reaches by copying its input frame.
    """
    from egoframe.data.records import load_records
    from egoframe.evaluation.stats import bootstrap_ci

    frames = _frames_for(world, "test", config)
    x, y = render_examples(world, frames, config.resolution)
    pil = [img.permute(1, 2, 0).numpy() for img in x]
    predicted = reader.read(pil)
    truth = y.numpy()
    names = list(HEADS)
    per_fact = {name: float(np.mean([HEADS[name].index(p[name]) == truth[i, k] for i, p in enumerate(predicted)]))
                for k, name in enumerate(names)}
    all_exact = [all(HEADS[n].index(p[n]) == truth[i, k] for k, n in enumerate(names)) for i, p in enumerate(predicted)]

    test_videos = set(world.manifest.split_videos("test")[: config.max_videos] if config.max_videos
                      else world.manifest.split_videos("test"))
    records = [r for r in load_records(world.manifest.path(world.manifest.files["ground_truth"]))
               if r.video_id in test_videos]
    from egoframe.world import render_state

    res = world.manifest.config.resolution
    tgt_imgs = [render_state(world.state(r.video_id, r.target_frame), res) for r in records]
    in_imgs = [render_state(world.state(r.video_id, r.input_frame), res) for r in records]
    tgt_read, in_read = reader.read(tgt_imgs), reader.read(in_imgs)
    success_tgt, success_in = [], []
    for r, pt, pi in zip(records, tgt_read, in_read):
        fin = state_facts(world.state(r.video_id, r.input_frame))
        ftg = state_facts(world.state(r.video_id, r.target_frame))
        success_tgt.append(float(action_success(pt, r.verb, fin, ftg)))
        success_in.append(float(action_success(pi, r.verb, fin, ftg)))
    return {
        "test_frames": len(frames),
        "fact_accuracy": {k: round(v, 4) for k, v in per_fact.items()},
        "mean_fact_accuracy": round(float(np.mean(list(per_fact.values()))), 4),
        "all_facts_exact": bootstrap_ci(np.asarray(all_exact, float), resamples=2000).as_dict(),
        "test_actions": len(records),
        "target_action_success": bootstrap_ci(np.asarray(success_tgt), resamples=2000).as_dict() if records else None,
        "input_action_success": bootstrap_ci(np.asarray(success_in), resamples=2000).as_dict() if records else None,
    }


# ----------------------------------------------------------------------------------------- scoring generated frames


SAMPLE_COLUMNS = ("video_id", "input_frame", "target_frame")


class OracleScorer:
    """Action success and state accuracy of generated frames, for the evaluation runner."""

    def __init__(self, oracle: str | None, world: str | None, device: str = "cpu"):
        self.reader = OracleReader.load(oracle, device=device)
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


__all__ = ["HEADS", "VERB_FACTS", "OracleConfig", "OracleReader", "OracleScorer", "WorldStates", "action_facts",
           "action_success", "state_accuracy", "state_facts", "train_oracle"]
