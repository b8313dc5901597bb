"""The reading ceiling: how well a supervised classifier reads the hand and the object from the same frames.

``egoframe vllm evaluate`` says how often the VLLM's description names the right hand and object. Whether
that is good depends on how much the input frame (PRE-15, before the action) gives away at all: with a weak
or misleading cue nobody can tell which cup will be taken. This module measures the best a plain classifier
does on the same question: a CNN reads the input frame, an embedding reads the action label, and two heads
name the hand and the object, trained on one data set's pairs with the labels the enricher's description
gives (the same ground truth and the same reading rules, :func:`~egoframe.vllm.evaluate.hand_of` /
:func:`~egoframe.vllm.evaluate.object_of`, as the VLLM's score), and scored on another data set's held-out
split. The VLLM should come within a few points of it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from egoframe.data.records import load_records
from egoframe.enrichment import attach_descriptions
from egoframe.errors import InputError
from egoframe.utils.progress import ProgressBar
from egoframe.vllm.evaluate import hand_of, normalise_label, object_of

logger = logging.getLogger(__name__)


@dataclass
class CeilingConfig:
    train_data: str  # enriched data set whose pairs train the classifier (e.g. `egoframe world pairs` output)
    eval_data: str  # enriched data set whose ``split`` pairs are scored (the one `vllm evaluate` reads)
    split: str = "test"
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    resolution: int = 64  # the frame size the tiny VLLM reads
    max_train: int = 20000
    seed: int = 0


def _examples(data_dir: str, split: str, limit: int | None, resolution: int, names: list[str] | None = None):
    """Frames (N, 3, R, R) uint8, action labels, hand and object labels (from the enriched description)."""
    import os

    from PIL import Image

    records = load_records(data_dir)
    attach_descriptions(records, data_dir)
    if names is None:
        names = sorted({normalise_label(b.label) for r in records for b in r.boxes
                        if b.role not in ("left_hand", "right_hand") and b.label not in ("left_hand", "right_hand")})
    rows = [r for r in records if split == "all" or r.split == split]
    if not rows:
        raise InputError(f"no {split!r} pairs in {data_dir}")
    if not any(r.description for r in rows):
        raise InputError(f"{data_dir} has no enriched descriptions: run `egoframe enrich {data_dir}` first")
    if limit and len(rows) > limit:
        rows = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, limit).round()]
    frames, actions, hands, objects = [], [], [], []
    for r in rows:
        image = Image.open(os.path.join(data_dir, r.input_path)).convert("RGB")
        frames.append(np.asarray(image.resize((resolution, resolution), Image.Resampling.BICUBIC)))
        actions.append(r.action)
        hands.append(hand_of(r.description or ""))
        objects.append(object_of(r.description or "", names))
    return np.stack(frames).transpose(0, 3, 1, 2), actions, hands, objects, names


def _model(n_actions: int, n_objects: int, resolution: int):
    import torch
    from torch import nn

    class Reader(nn.Module):
        def __init__(self):
            super().__init__()
            layers, c_in = [], 3
            for c_out in (32, 64, 96, 128):
                layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(),
                           nn.Conv2d(c_out, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU()]
                c_in = c_out
            self.features = nn.Sequential(*layers)
            side = resolution // 16
            self.action = nn.Embedding(n_actions, 64)
            self.head = nn.Sequential(nn.Linear(c_in * side * side + 64, 256), nn.ReLU(), nn.Dropout(0.1),
                                      nn.Linear(256, 2 + n_objects))

        def forward(self, x, a):
            return self.head(torch.cat([self.features(x).flatten(1), self.action(a)], dim=1))

    return Reader()


def reading_ceiling(config: CeilingConfig, progress: bool = True) -> dict[str, Any]:
    """Train the classifier on ``train_data`` and score it on ``eval_data``'s split; returns the accuracies."""
    import torch
    from torch import nn

    if config.resolution % 16 or config.steps < 1:
        raise InputError("ceiling resolution must be a multiple of 16 and steps >= 1")
    torch.manual_seed(config.seed)
    x_tr, a_tr, h_tr, o_tr, names = _examples(config.train_data, "train", config.max_train, config.resolution)
    x_ev, a_ev, h_ev, o_ev, _ = _examples(config.eval_data, config.split, None, config.resolution, names)
    labels = sorted(set(a_tr) | set(a_ev))
    a_index = {a: i for i, a in enumerate(labels)}
    hand_ix = {"left": 0, "right": 1}
    o_index = {n: i for i, n in enumerate(names)}
    keep = [i for i in range(len(a_tr)) if h_tr[i] in hand_ix and o_tr[i] in o_index]
    if not keep:
        raise InputError(f"no training pair of {config.train_data} names a hand and an object in its description")
    x = torch.from_numpy(x_tr[keep])
    a = torch.tensor([a_index[a_tr[i]] for i in keep])
    h = torch.tensor([hand_ix[h_tr[i]] for i in keep])
    o = torch.tensor([o_index[o_tr[i]] for i in keep])
    model = _model(len(labels), len(names), config.resolution)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    g = torch.Generator().manual_seed(config.seed)
    model.train()
    with ProgressBar(progress, "ceiling", config.steps) as bar:
        for _ in range(config.steps):
            idx = torch.randint(0, len(x), (config.batch_size,), generator=g)
            logits = model(x[idx].float() / 127.5 - 1.0, a[idx])
            loss = nn.functional.cross_entropy(logits[:, :2], h[idx]) + nn.functional.cross_entropy(logits[:, 2:], o[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.advance()
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(torch.from_numpy(x_ev[i:i + 256]).float() / 127.5 - 1.0,
                                  torch.tensor([a_index[t] for t in a_ev[i:i + 256]]))
                            for i in range(0, len(x_ev), 256)])
    hand_pred = ["left" if k == 0 else "right" for k in logits[:, :2].argmax(1).tolist()]
    # the object among the names the label's noun allows ("take cup": one of the cups), as a reader would
    obj_logits = logits[:, 2:].clone()
    for i, act in enumerate(a_ev):
        noun = act.split()[-1]
        allowed = [j for j, n in enumerate(names) if n.split()[-1] == noun]
        if allowed:
            mask = torch.full((len(names),), float("-inf"))
            mask[allowed] = 0.0
            obj_logits[i] += mask
    obj_pred = [names[k] for k in obj_logits.argmax(1).tolist()]
    hand_pairs = [(t, p) for t, p in zip(h_ev, hand_pred) if t]
    obj_pairs = [(t, p) for t, p in zip(o_ev, obj_pred) if t]
    return {
        "n": len(a_ev), "train_pairs": len(keep),
        "hand_accuracy": sum(t == p for t, p in hand_pairs) / max(1, len(hand_pairs)), "hand_n": len(hand_pairs),
        "object_accuracy": sum(t == p for t, p in obj_pairs) / max(1, len(obj_pairs)), "object_n": len(obj_pairs),
        "config": asdict(config),
    }


__all__ = ["CeilingConfig", "reading_ceiling"]
