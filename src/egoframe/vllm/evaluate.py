"""How often the VLLM's description names the right hand and the right object, against the enricher's.

The ground truth is the enriched description of each held-out pair (``egoframe enrich``); hand and object are
read from the VLLM's answer and from the ground truth by the same rules: the hand is the first "left hand" /
"right hand" mentioned; the object is the first mentioned of the data set's object names (the non-hand box
labels, e.g. "red cup", "knife").

Chance levels, because the action label already names the noun ("take cup"):
- hand: 1 / number of hands (uniform) and the share of the most frequent hand (best constant guess);
- object: for each pair, 1 / number of object names that end with the label's noun (a uniform guess among
  the cups for "take cup"), averaged; and the best constant guess per noun.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from egoframe.data.records import load_records
from egoframe.errors import InputError
from egoframe.utils.progress import ProgressBar
from egoframe.vllm.data import encode_instruction_batch, load_instruction_examples
from egoframe.vllm.embeddings import ExtractionConfig, describe_frames, to_pil
from egoframe.vllm.model import Vllm

_HAND = re.compile(r"\b(left|right) hand\b")


def hand_of(text: str) -> str | None:
    match = _HAND.search(text.lower())
    return match.group(1) if match else None


def object_of(text: str, names: Sequence[str]) -> str | None:
    """The object name mentioned first in ``text`` (the longer name wins at the same position)."""
    text = " " + " ".join(re.findall(r"[a-z0-9]+", text.lower())) + " "
    best: tuple[int, int, str] | None = None
    for name in names:
        pos = text.find(" " + name + " ")
        if pos >= 0 and (best is None or (pos, -len(name)) < best[:2]):
            best = (pos, -len(name), name)
    return best[2] if best else None


def normalise_label(label: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", label.lower().replace("_", " ")))


@dataclass
class DescriptionAccuracy:
    n: int
    hand_n: int
    hand_correct: int
    object_n: int
    object_correct: int
    hand_chance_uniform: float
    hand_chance_majority: float
    object_chance_uniform: float
    object_chance_majority: float
    examples: list[dict[str, str]] = field(default_factory=list)

    @property
    def hand_accuracy(self) -> float:
        return self.hand_correct / self.hand_n if self.hand_n else float("nan")

    @property
    def object_accuracy(self) -> float:
        return self.object_correct / self.object_n if self.object_n else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return dict(asdict(self), hand_accuracy=self.hand_accuracy, object_accuracy=self.object_accuracy)

    def lines(self) -> list[str]:
        return [
            f"held-out pairs: {self.n}",
            f"hand:   {self.hand_accuracy:6.1%} ({self.hand_correct}/{self.hand_n})   chance: uniform "
            f"{self.hand_chance_uniform:.1%}, best constant guess {self.hand_chance_majority:.1%}",
            f"object: {self.object_accuracy:6.1%} ({self.object_correct}/{self.object_n})   chance given the "
            f"label's noun: uniform {self.object_chance_uniform:.1%}, best constant guess "
            f"{self.object_chance_majority:.1%}",
        ]


def score_descriptions(predicted: Sequence[str], truth: Sequence[str], nouns: Sequence[str],
                       object_names: Sequence[str], ids: Sequence[str] | None = None) -> DescriptionAccuracy:
    """Hand/object accuracy of ``predicted`` against ``truth`` (same length), with chance levels."""
    if len(predicted) != len(truth) or len(truth) != len(nouns):
        raise InputError("predicted, truth and nouns must have the same length")
    names = sorted({normalise_label(n) for n in object_names if normalise_label(n)})
    hand_pairs, object_pairs = [], []
    uniform_object, per_noun = [], {}
    examples = []
    for i, (pred, gt, noun) in enumerate(zip(predicted, truth, nouns)):
        gt_hand, gt_obj = hand_of(gt), object_of(gt, names)
        pr_hand, pr_obj = hand_of(pred), object_of(pred, names)
        if gt_hand:
            hand_pairs.append((gt_hand, pr_hand))
        if gt_obj:
            object_pairs.append((gt_obj, pr_obj))
            head = normalise_label(noun).split()[-1:] or [""]
            same_noun = [n for n in names if n.split()[-1] == head[0]] or names
            uniform_object.append(1 / len(same_noun))
            per_noun.setdefault(head[0], Counter())[gt_obj] += 1
        examples.append({"id": ids[i] if ids else str(i), "truth": gt, "predicted": pred})
    hands = Counter(h for h, _ in hand_pairs)
    return DescriptionAccuracy(
        n=len(truth), hand_n=len(hand_pairs), hand_correct=sum(g == p for g, p in hand_pairs),
        object_n=len(object_pairs), object_correct=sum(g == p for g, p in object_pairs),
        hand_chance_uniform=1 / max(1, len({"left", "right"} | set(hands))),
        hand_chance_majority=max(hands.values()) / len(hand_pairs) if hand_pairs else float("nan"),
        object_chance_uniform=sum(uniform_object) / len(uniform_object) if uniform_object else float("nan"),
        object_chance_majority=(sum(max(c.values()) for c in per_noun.values()) / len(object_pairs)
                                if object_pairs else float("nan")),
        examples=examples)


def evaluate_descriptions(vllm: "Vllm", data_dir: str, *, splits: Sequence[str] = ("test",),
                          config: "ExtractionConfig | None" = None, batch_size: int = 16, limit: int | None = None,
                          progress: bool = True) -> DescriptionAccuracy:
    """Describe every held-out frame of ``data_dir`` with ``vllm`` and score it against the enriched descriptions."""
    config = config or ExtractionConfig()
    examples = load_instruction_examples(data_dir, splits=splits)
    if limit is not None:
        examples = examples[:limit]
    records = load_records(data_dir)
    by_id = {r.id: r for r in records}
    object_names = {b.label for r in records for b in r.boxes
                    if b.role not in ("left_hand", "right_hand") and b.label not in ("left_hand", "right_hand")}
    bar = ProgressBar(progress, "vllm evaluate", len(examples)).start()
    predicted: list[str] = []
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start:start + batch_size]
            predicted += describe_frames(vllm, [to_pil(e.image_path) for e in chunk], [e.action for e in chunk],
                                         config)
            bar.advance(len(chunk))
    finally:
        bar.close()
    nouns = [by_id[e.id].noun or " ".join(e.action.split()[1:]) for e in examples]
    return score_descriptions(predicted, [e.description for e in examples], nouns, sorted(object_names),
                              ids=[e.id for e in examples])


@dataclass
class ImageReliance:
    """Teacher-forced answer loss on held-out examples with their own frames, with the frames shuffled among
    them and with blank (mid-grey) frames: a model that reads the image has real < shuffled."""
    n: int
    real: float
    shuffled: float
    blank: float

    @property
    def gap(self) -> float:
        return self.shuffled - self.real

    def lines(self) -> list[str]:
        return [f"teacher-forced answer loss on {self.n} held-out pairs: real frames {self.real:.4f}, shuffled "
                f"{self.shuffled:.4f}, blank {self.blank:.4f} (shuffled - real = {self.gap:+.4f})"]


def image_reliance(vllm: "Vllm", data_dir: str, *, splits: Sequence[str] = ("test",), limit: int | None = 96,
                   batch_size: int = 16, seed: int = 0) -> ImageReliance:
    """How much the VLLM's answers depend on the frame (see :class:`ImageReliance`); question template 0."""
    import random

    import numpy as np
    import torch

    examples = load_instruction_examples(data_dir, splits=splits)[:limit]
    if len(examples) < 2:
        raise InputError("image_reliance needs at least 2 held-out examples")
    frames = [to_pil(e.image_path) for e in examples]
    perm = list(range(len(examples)))
    rng = random.Random(seed)
    while any(i == p for i, p in enumerate(perm)):  # a derangement: no frame stays with its own pair
        rng.shuffle(perm)
    blank = to_pil(np.full((frames[0].height, frames[0].width, 3), 128, dtype=np.uint8))
    variants = {"real": frames, "shuffled": [frames[p] for p in perm], "blank": [blank] * len(frames)}
    out = {}
    model = vllm.model.eval()
    with torch.no_grad():
        for name, ims in variants.items():
            total, count = 0.0, 0
            for s in range(0, len(examples), batch_size):
                chunk = examples[s:s + batch_size]
                batch = encode_instruction_batch(vllm, ims[s:s + batch_size], [e.action for e in chunk],
                                                 [e.description for e in chunk], [0] * len(chunk))
                batch = {k: v.to(vllm.device) for k, v in batch.items()}
                batch["pixel_values"] = batch["pixel_values"].to(vllm.dtype)
                n_tokens = int((batch["labels"][:, 1:] != -100).sum())
                total += float(model(**batch).loss) * n_tokens
                count += n_tokens
            out[name] = total / count
    return ImageReliance(n=len(examples), **out)
