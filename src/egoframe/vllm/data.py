"""Visual instruction-tuning data: (input frame, question about the action, enriched description).

Built from a curated data set directory: ``pairs.parquet`` (ActionRecords; image paths relative to the
directory) and, when ``egoframe enrich`` has run, ``descriptions.parquet`` (id, description, status, ...),
whose descriptions take precedence over the records' own ``description`` field.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from egoframe.data.records import load_records
from egoframe.errors import InputError
from egoframe.vllm.embeddings import to_pil
from egoframe.vllm.model import Vllm
from egoframe.vllm.templates import QUESTION_TEMPLATES, prompt_for

if TYPE_CHECKING:
    import torch

DESCRIPTIONS_FILE = "descriptions.parquet"
_FINISHED_STATUSES = {"done", "ok", ""}  # "" for files without a status column


@dataclass(frozen=True)
class InstructionExample:
    id: str
    image_path: str  # absolute
    action: str
    description: str  # the answer: the enriched description
    split: str = ""


def read_descriptions(data_dir: str) -> dict[str, str]:
    """id -> enriched description from ``descriptions.parquet`` (only finished, non-empty rows)."""
    path = os.path.join(data_dir, DESCRIPTIONS_FILE)
    if not os.path.exists(path):
        return {}
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise InputError(f"cannot read {path}: {exc}") from None
    out = {}
    for row in rows:
        text = (row.get("description") or "").strip()
        status = str(row.get("status") or "").lower()
        if row.get("id") is not None and text and status in _FINISHED_STATUSES:
            out[str(row["id"])] = text
    return out


def load_instruction_examples(data_dir: str, splits: Sequence[str] | None = None,
                              require_description: bool = True) -> list[InstructionExample]:
    """The instruction examples of a curated data set, optionally only those of ``splits``
    (see :func:`effective_split` for records that have none).

    Records without a description are skipped when ``require_description`` (training needs an answer);
    if none has one, the error says to run ``egoframe enrich`` first.
    """
    records = load_records(data_dir)
    enriched = read_descriptions(data_dir)
    examples = []
    for rec in records:
        if splits is not None and effective_split(rec.id, rec.split) not in splits:
            continue
        description = enriched.get(rec.id, rec.description or "").strip()
        if require_description and not description:
            continue
        if not rec.input_path:
            raise InputError(f"record {rec.id} in {data_dir} has no input_path")
        examples.append(InstructionExample(id=rec.id, image_path=os.path.join(data_dir, rec.input_path),
                                           action=rec.action, description=description, split=rec.split))
    if not examples:
        which = f" in split(s) {', '.join(splits)}" if splits is not None else ""
        hint = " with an enriched description: run `egoframe enrich` first" if require_description else ""
        raise InputError(f"no usable records{which} in {data_dir}{hint}")
    return examples


def template_choices(n_examples: int, seed: int, epoch: int) -> list[int]:
    """The question template of every example in one epoch: random, but a pure function of (seed, epoch)
    so that a resumed run asks the same questions."""
    rng = random.Random(f"templates-{seed}-{epoch}")
    return [rng.randrange(len(QUESTION_TEMPLATES)) for _ in range(n_examples)]


def epoch_order(n_examples: int, seed: int, epoch: int) -> list[int]:
    """The example order of one epoch, a pure function of (seed, epoch)."""
    order = list(range(n_examples))
    random.Random(f"order-{seed}-{epoch}").shuffle(order)
    return order


def encode_instruction_batch(vllm: "Vllm", images: Sequence, actions: Sequence[str], answers: Sequence[str],
                             templates: Sequence[int]) -> dict[str, "torch.Tensor"]:
    """Model inputs for teacher forcing: prompt + answer + EOS, right-padded; labels are -100 except on the
    answer tokens and the EOS, so the loss is on the answer only."""
    import torch

    tokenizer = vllm.tokenizer
    prompts = [prompt_for(a, t, vllm.processor.image_token) for a, t in zip(actions, templates)]
    pil = [to_pil(im) for im in images]
    enc = vllm.processor(images=pil, text=prompts, return_tensors="pt", padding=True)
    prompt_rows = [ids[mask.bool()].tolist() for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    # The leading space matches how the answer follows "ASSISTANT:" in one string for sentencepiece tokenizers.
    answer_rows = tokenizer([" " + a.strip() for a in answers], add_special_tokens=False)["input_ids"]
    rows = [(list(p), list(a) + [eos]) for p, a in zip(prompt_rows, answer_rows)]
    length = max(len(p) + len(a) for p, a in rows)
    input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
    labels = torch.full((len(rows), length), -100, dtype=torch.long)
    attention = torch.zeros((len(rows), length), dtype=torch.long)
    for i, (p, a) in enumerate(rows):
        input_ids[i, :len(p) + len(a)] = torch.tensor(p + a)
        labels[i, len(p):len(p) + len(a)] = torch.tensor(a)
        attention[i, :len(p) + len(a)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels,
            "pixel_values": enc["pixel_values"]}


HELD_OUT_FRACTION = 0.1


def effective_split(example_id: str, split: str) -> str:
    """The record's split, or for records without one a stable hash-based train/test assignment (10% test)."""
    if split:
        return split
    import hashlib

    bucket = int(hashlib.sha256(example_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if bucket < HELD_OUT_FRACTION else "train"


def select_split(examples: Sequence[InstructionExample], splits: Sequence[str]) -> list[InstructionExample]:
    return [ex for ex in examples if effective_split(ex.id, ex.split) in splits]
