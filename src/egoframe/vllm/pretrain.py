"""Stage 0 of the embedded recipe: pretrain the tiny vision tower before instruction tuning.

Why: a LLaVA trained end to end from scratch on a few thousand (frame, question, description) examples learns
the text prior and ignores the image tokens (measured: equal teacher-forced loss with real, shuffled and blank
frames) - the language model can lower its loss faster from the question than the random vision tower can
from pixels, and then the image gradient vanishes. LLaVA (Liu et al. 2023, "Visual Instruction Tuning")
never faces this: its vision tower is a *pretrained* CLIP ViT (Radford et al. 2021), kept frozen while the
projector and the LLM learn to read it. The tiny model gets the same treatment, on its own training split:

* the vision tower is pretrained with a supervised image -> text objective: from the frame alone, predict
  which words and word pairs ("left hand", "green cup", "centre of") the frame's enriched description
  contains (multi-label, binary cross-entropy) - the weakly supervised "predict the caption's words"
  pretraining of Joulin et al. 2016 / VirTex (Desai & Johnson 2021), the caption-supervised sibling of
  CLIP's contrastive image-text objective that needs no large batches to work;
* plus CLIP's symmetric contrastive loss (Radford et al. 2021, InfoNCE over the batch) between the pooled
  image feature and a bag-of-n-grams embedding of the description, with descriptions that are identical
  in a batch counted as positives of each other;
* the head reads exactly the features the projector will read (LLaVA's ``vision_feature_layer``, patch
  tokens without CLS), pooled by one learned attention query; it is thrown away afterwards;
* with ``actions`` (the pairs' action labels), the query is the learned one plus an embedding of the
  action's words: which cup a description names depends on the action ("take cup": the one the hand reaches
  for) as much as on the frame, so an image-only head is asked for something the image alone cannot say
  and the tower never learns the object cue (measured: object reading at chance). Conditioning the pooling
  on the instruction is how the reading ceiling (``ceiling.py``: CNN + label) and instruction-aware query
  poolers (BLIP-2's Q-Former with the instruction, InstructBLIP, Dai et al. 2023) read an image for a
  question. The LLM sees the action in its prompt either way; only the pretraining head changes;
* with ``reading_weight`` (and ``actions``), a reading head names the hand and the object the description
  names, cross-entropy, from *every patch token in place* (flattened: where the hand is relative to each cup
  survives) plus the action's words - the reading ceiling's head (``ceiling.py``) put on the tower. Measured:
  any pooled head lets the tower throw away the colour of the cup an action means (a probe on the tokens of a
  tower trained without it reads that colour at chance), and then no instruction tuning can name it.

Then (``train.py``) the tower is frozen and the projector + LLM are trained, LLaVA stage 1/2 style.
Every step is a pure function of the seed and the data, so the stage is deterministic.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

from egoframe.engine import run_steps
from egoframe.vllm.evaluate import hand_of, object_of
from egoframe.vllm.model import Vllm

if TYPE_CHECKING:
    import torch


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def ngram_vocabulary(descriptions: Sequence[str], min_count: int = 2, max_size: int = 2048) -> list[str]:
    """Unigrams and bigrams of the descriptions that occur in at least ``min_count`` of them and not in all
    of them (a word every description has carries no information about the frame)."""
    counts: Counter[str] = Counter()
    for text in descriptions:
        words = _words(text)
        counts.update(set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])})
    n = len(descriptions)
    grams = [g for g, c in counts.items() if min_count <= c < n]
    grams.sort(key=lambda g: (-counts[g], g))
    return sorted(grams[:max_size])


def ngram_targets(descriptions: Sequence[str], vocabulary: Sequence[str]) -> "torch.Tensor":
    """(len(descriptions), len(vocabulary)) multi-hot float targets."""
    import torch

    index = {g: i for i, g in enumerate(vocabulary)}
    out = torch.zeros(len(descriptions), len(vocabulary))
    for row, text in enumerate(descriptions):
        words = _words(text)
        for gram in set(words) | {f"{a} {b}" for a, b in zip(words, words[1:])}:
            if gram in index:
                out[row, index[gram]] = 1.0
    return out


@dataclass
class PretrainResult:
    steps: int
    final_loss: float
    seconds: float
    n_grams: int
    # the reading head's object accuracy on (up to 2048 of) the training frames at the end; None when off
    reading_accuracy: float | None = None


def _tower(vllm: "Vllm"):
    """The CLIP vision tower (``model.model.vision_tower`` in transformers 5, ``model.vision_tower`` before)."""
    inner = getattr(vllm.model, "model", None)
    return getattr(inner, "vision_tower", None) or vllm.model.vision_tower


def _vision_features(vllm: "Vllm", pixel_values: "torch.Tensor") -> "torch.Tensor":
    """The patch tokens that LLaVA hands to the projector (its feature layer, CLS dropped)."""
    config = vllm.model.config
    out = _tower(vllm)(pixel_values, output_hidden_states=True)
    layer = config.vision_feature_layer
    hidden = out.hidden_states[layer] if isinstance(layer, int) else out.hidden_states[layer[-1]]
    return hidden[:, 1:] if config.vision_feature_select_strategy == "default" else hidden


_NOT_NAMES = {"the", "a", "an", "of", "and", "from", "onto", "into", "to", "in", "on", "with", "at"}


def reading_targets(descriptions: Sequence[str], actions: Sequence[str]):
    """Per description: the hand it names (0 left, 1 right, -1 none) and the object it names first, as an index
    into the returned names (-1 none). The names are the actions' nouns and every "<word> <noun>" of the
    descriptions whose word is not a function word ("green cup", "left drawer"), so the object label keeps
    the colour or side that tells apart the objects an action label leaves open - the reading
    ``egoframe vllm evaluate`` scores (:func:`~egoframe.vllm.evaluate.object_of`)."""
    import torch

    nouns = {_words(a)[-1] for a in actions if _words(a)}
    names = set(nouns)
    for text in descriptions:
        words = _words(text)
        names.update(f"{a} {b}" for a, b in zip(words, words[1:]) if b in nouns and a not in _NOT_NAMES)
    names_sorted = sorted(names)
    index = {n: i for i, n in enumerate(names_sorted)}
    hands = torch.tensor([{"left": 0, "right": 1}.get(hand_of(t) or "", -1) for t in descriptions])
    objects = torch.tensor([index.get(object_of(t, names_sorted) or "", -1) for t in descriptions])
    return hands, objects, names_sorted


def _reading_head(n_features: int, n_action_words: int, n_out: int):
    """The reading head: every patch token in place (flattened, so where the hand is relative to each object
    survives, as in the reading ceiling's CNN head) plus the action's words -> hand and object logits."""
    from torch import nn

    class Reader(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = nn.LayerNorm(n_features)
            self.image = nn.Linear(n_features, 256)
            self.action = nn.Linear(max(1, n_action_words), 256, bias=False)
            self.out = nn.Sequential(nn.ReLU(), nn.Dropout(0.1), nn.Linear(256, n_out))

        def forward(self, tokens, action_bag):
            return self.out(self.image(self.norm(tokens.flatten(1))) + self.action(action_bag))

    return Reader()


def _named_ce(logits: "torch.Tensor", target: "torch.Tensor") -> "torch.Tensor":
    """Cross-entropy over the rows whose description names the thing (target >= 0); 0 when none does."""
    named = target >= 0
    if not bool(named.any()):
        return logits.sum() * 0.0
    from torch.nn.functional import cross_entropy

    return cross_entropy(logits[named], target[named])


def pretrain_vision_tower(vllm: "Vllm", pixel_values: "torch.Tensor", descriptions: Sequence[str], *,
                          steps: int, batch_size: int = 64, lr: float = 2e-3, warmup_steps: int = 20,
                          contrastive_weight: float = 0.5, seed: int = 0,
                          actions: Sequence[str] | None = None, pool_on_action: bool = True,
                          reading_weight: float = 0.0,
                          on_step: Callable[[int, float], None] | None = None) -> PretrainResult:
    """Train ``vllm``'s vision tower in place on (frame, description) pairs; see the module docstring.

    ``pixel_values`` are the processor's outputs for the frames, (N, 3, H, W), aligned with ``descriptions``
    (and ``actions``, when given: then the pooling query depends on the action label unless
    ``pool_on_action`` is false). ``reading_weight`` > 0 adds the reading head (:func:`reading_targets`;
    needs ``actions``).
    """
    import torch
    from torch import nn

    if steps < 1:
        return PretrainResult(0, float("nan"), 0.0, 0)
    started = time.monotonic()
    vocabulary = ngram_vocabulary(descriptions)
    targets = ngram_targets(descriptions, vocabulary)
    # Identical descriptions are positives of each other in the contrastive loss.
    first: dict[str, int] = {}
    desc_ids = torch.tensor([first.setdefault(d, len(first)) for d in descriptions])
    tower = _tower(vllm)
    device = next(tower.parameters()).device
    width = tower.config.hidden_size
    embed = 64
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        query = nn.Parameter(torch.randn(1, 1, width) * width ** -0.5)
        pool = nn.MultiheadAttention(width, num_heads=max(1, tower.config.num_attention_heads), batch_first=True)
        norm = nn.LayerNorm(width)
        head = nn.Linear(width, len(vocabulary))
        image_proj = nn.Linear(width, embed, bias=False)
        text_proj = nn.Linear(len(vocabulary), embed, bias=False)
        logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))  # CLIP's learned temperature
        action_vocabulary = sorted({w for a in actions for w in _words(a)}) if actions is not None else []
        action_proj = nn.Linear(max(1, len(action_vocabulary)), width, bias=False)
        if reading_weight:
            if actions is None:
                raise ValueError("the reading head needs the actions")
            hands, objects, object_names = reading_targets(descriptions, actions)
            reader = _reading_head(vllm.n_image_tokens * width, len(action_vocabulary), 2 + len(object_names))
    if actions is not None:
        if len(actions) != len(descriptions):
            raise ValueError(f"{len(actions)} actions for {len(descriptions)} descriptions")
        action_bags = ngram_targets(actions, action_vocabulary)
    modules = [pool, norm, head, image_proj, text_proj, action_proj] + ([reader] if reading_weight else [])
    extra = nn.ModuleList(modules).to(device)
    params = [p for p in tower.parameters()] + list(extra.parameters()) + [query, logit_scale]
    for p in tower.parameters():
        p.requires_grad = True
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    # More positives than negatives for rare n-grams: weight positives by sqrt of their rarity.
    freq = targets.mean(0).clamp(min=1.0 / len(descriptions))
    pos_weight = ((1 - freq) / freq).sqrt().to(device)
    tower.train()
    n = pixel_values.shape[0]
    order = torch.randperm(n, generator=generator)
    cursor = {"order": order, "position": 0}

    def step_fn(step: int) -> float:
        if cursor["position"] + batch_size > n:
            cursor["order"], cursor["position"] = torch.randperm(n, generator=generator), 0
        idx = cursor["order"][cursor["position"]:cursor["position"] + batch_size]
        cursor["position"] += batch_size
        scale = min(1.0, (step + 1) / max(1, warmup_steps)) * 0.5 * (1 + math.cos(math.pi * step / steps))
        for group in optimizer.param_groups:
            group["lr"] = lr * max(scale, 0.02)
        pixels = pixel_values[idx].to(device, dtype=next(tower.parameters()).dtype)
        tokens = _vision_features(vllm, pixels)
        queries = query.to(tokens.dtype).expand(tokens.shape[0], -1, -1)
        if actions is not None and pool_on_action:
            queries = queries + action_proj(action_bags[idx].to(device, tokens.dtype))[:, None]
        pooled, _ = pool(queries, tokens, tokens)
        pooled = norm(pooled[:, 0])
        y = targets[idx].to(device)
        loss = nn.functional.binary_cross_entropy_with_logits(head(pooled), y, pos_weight=pos_weight)
        if contrastive_weight:
            img = nn.functional.normalize(image_proj(pooled), dim=-1)
            txt = nn.functional.normalize(text_proj(y), dim=-1)
            logits = logit_scale.clamp(max=math.log(100.0)).exp() * img @ txt.T
            same = (desc_ids[idx][:, None] == desc_ids[idx][None, :]).float().to(device)
            soft = same / same.sum(1, keepdim=True)
            clip = 0.5 * (torch.sum(-soft * logits.log_softmax(1), 1).mean()
                          + torch.sum(-soft * logits.log_softmax(0).T, 1).mean())
            loss = loss + contrastive_weight * clip
        if reading_weight:
            logits = reader(tokens, action_bags[idx].to(device, tokens.dtype))
            read = _named_ce(logits[:, :2], hands[idx].to(device)) + _named_ce(logits[:, 2:], objects[idx].to(device))
            loss = loss + reading_weight * read
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        return float(loss.detach())

    loss_value = run_steps(step_fn, 0, steps, after_step=on_step, advice="lower pretrain_vision_lr")
    tower.eval()
    reading_accuracy = None
    if reading_weight:
        reader.eval()
        with torch.no_grad():
            rows = torch.arange(min(n, 2048))
            dtype = next(tower.parameters()).dtype
            logits = torch.cat([reader(_vision_features(vllm, pixel_values[c].to(device, dtype=dtype)),
                                       action_bags[c].to(device, dtype))[:, 2:] for c in rows.split(256)])
            named = objects[rows] >= 0
            hits = (logits.argmax(1).cpu() == objects[rows])[named]
            reading_accuracy = float(hits.float().mean()) if len(hits) else None
    return PretrainResult(steps=steps, final_loss=loss_value, seconds=time.monotonic() - started,
                          n_grams=len(vocabulary), reading_accuracy=reading_accuracy)
