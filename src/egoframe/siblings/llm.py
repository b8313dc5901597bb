"""What the sibling systems read from the multimodal LLM (a LLaVA loaded by egoframe.vllm.model.load_vllm).

- SmartEdit and MGIE append added tokens (<img_0>..<img_31> / [IMG0]..[IMG7]) after the answer; the last
  hidden states at those positions feed the connector, and the LM loss (CE) covers answer + added tokens,
  so the model learns to emit them (MGIE Sec. 3.1; SmartEdit Sec. 3.2).
- SmartEdit's Bidirectional Interaction Module also reads the image features v: the vision tower's
  penultimate-layer patch tokens (no CLS), the features LLaVA-1.5 itself projects.
- ReasonPix2Pix reads h = F(x, I): the last hidden states of the image + instruction prompt.

The prompt is LLaVA-1.5's single-turn format (egoframe.vllm.templates.PROMPT_FORMAT) with the
instruction as the question.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from egoframe.errors import InputError, ModelLoadError
from egoframe.vllm.embeddings import to_pil
from egoframe.vllm.model import Vllm
from egoframe.vllm.templates import PROMPT_FORMAT

TOKEN_FORMATS = {"smartedit": "<img_{}>", "mgie": "[IMG{}]"}


def edit_token_names(system: str, n: int) -> list[str]:
    if system not in TOKEN_FORMATS:
        raise ValueError(f"system {system!r} adds no LLM tokens; choose from {sorted(TOKEN_FORMATS)}")
    return [TOKEN_FORMATS[system].format(i) for i in range(n)]


def add_edit_tokens(vllm: "Vllm", names: Sequence[str]) -> list[int]:
    """Add ``names`` to the tokenizer (special, so never split) and grow the embeddings; idempotent."""
    tokenizer = vllm.tokenizer
    missing = [n for n in names if n not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
        vllm.model.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        vllm.forget_identity()
    ids = tokenizer.convert_tokens_to_ids(list(names))
    if len(set(ids)) != len(names):
        raise ModelLoadError("the tokenizer maps the added edit tokens to shared ids")
    return ids


def prompt(instruction: str, image_token: str) -> str:
    instruction = " ".join(str(instruction).split())
    if not instruction:
        raise InputError("instruction is empty: give the edit to make, e.g. 'take cup'")
    return PROMPT_FORMAT.replace("<image>", image_token).format(question=instruction)


def _pil(images):
    return [to_pil(im) for im in images]


def edit_token_batch(vllm: "Vllm", images: Sequence, instructions: Sequence[str], answers: Sequence[str],
                     edit_token_ids: Sequence[int]) -> dict[str, torch.Tensor]:
    """Teacher-forcing inputs: prompt + answer + edit tokens + EOS, right-padded; labels only on what follows
    the prompt. ``answers`` may be empty strings (SmartEdit's LLM then only has to emit the tokens)."""
    tokenizer = vllm.tokenizer
    enc = vllm.processor(images=_pil(images), text=[prompt(i, vllm.processor.image_token) for i in instructions],
                         return_tensors="pt", padding=True)
    prompts = [ids[m.bool()].tolist() for ids, m in zip(enc["input_ids"], enc["attention_mask"])]
    answer_ids = tokenizer([" " + a.strip() if a.strip() else "" for a in answers],
                           add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    rows = [(p, list(a) + list(edit_token_ids) + [eos]) for p, a in zip(prompts, answer_ids)]
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


def edit_token_forward(vllm: "Vllm", model, batch: dict[str, torch.Tensor],
                       edit_token_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE loss, hidden states at the edit tokens (B, n_tokens, d_llm)) under teacher forcing.

    ``model`` is ``vllm.model`` or a peft wrapper around it (LoRA training).
    """
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in batch.items()}
    out = model(**batch, output_hidden_states=True)
    hidden = out.hidden_states[-1]  # (B, T, d_llm)
    ids = torch.tensor(list(edit_token_ids), device=device)
    positions = []
    for row in batch["input_ids"]:
        where = torch.stack([(row == t).nonzero()[-1, 0] for t in ids])  # the tokens after the answer
        positions.append(where)
    index = torch.stack(positions)  # (B, n_tokens)
    states = torch.gather(hidden, 1, index[..., None].expand(-1, -1, hidden.shape[-1]))
    return out.loss, states


def _vision_tower(model):
    base = getattr(model, "model", model)
    tower = getattr(base, "vision_tower", None)
    if tower is None:
        raise ModelLoadError("the LLaVA has no vision_tower")
    return tower


def vision_features(vllm: "Vllm", images: Sequence) -> torch.Tensor:
    """CLIP penultimate-layer patch tokens (B, n_patches, vision_dim), CLS dropped (LLaVA-1.5's 'default').

    LoRA never touches the vision tower (LANGUAGE_QV), so this reads ``vllm.model`` even while a peft
    wrapper trains the language model."""
    pixels = vllm.processor.image_processor(images=_pil(images), return_tensors="pt")["pixel_values"]
    tower = _vision_tower(vllm.model)
    pixels = pixels.to(device=next(tower.parameters()).device, dtype=next(tower.parameters()).dtype)
    layer = vllm.model.config.vision_feature_layer
    hidden = tower(pixels, output_hidden_states=True).hidden_states[layer]
    return hidden[:, 1:]


@torch.no_grad()
def instruction_states(vllm: "Vllm", images: Sequence, instructions: Sequence[str],
                       num_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ReasonPix2Pix's h: the last ``num_tokens`` last-layer states of image + instruction (B, N, d_llm), left-
    padded with zeros, and their mask (B, N). The end is kept so that the instruction, which follows the
    image tokens, is never cut."""
    enc = vllm.processor(images=_pil(images), text=[prompt(i, vllm.processor.image_token) for i in instructions],
                         return_tensors="pt", padding=True)
    device = vllm.device
    out = vllm.model(**{k: v.to(device) for k, v in enc.items()}, output_hidden_states=True)
    hidden = out.hidden_states[-1]  # (B, T, d_llm)
    b, d = hidden.shape[0], hidden.shape[-1]
    states = hidden.new_zeros(b, num_tokens, d)
    mask = hidden.new_zeros(b, num_tokens)
    for i, valid in enumerate(enc["attention_mask"].bool()):
        rows = hidden[i, valid.to(device)][-num_tokens:]
        states[i, num_tokens - len(rows):] = rows
        mask[i, num_tokens - len(rows):] = 1
    return states, mask


LANGUAGE_QV = r".*language_model.*\.(q_proj|v_proj)$"


def apply_lora(vllm: "Vllm", r: int, alpha: int, trainable_token_ids: Sequence[int] = ()):
    """LoRA (r, α) on the language model's q/v projections (SmartEdit stage 2: r 8, α 16); the added edit-
    token rows of the embedding stay trainable. Returns the peft model; ``merge_lora`` folds it back."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=0.0, target_modules=LANGUAGE_QV,
                        trainable_token_indices=list(trainable_token_ids) or None)
    return get_peft_model(vllm.model, config)


def merge_lora(vllm: "Vllm", peft_model) -> None:
    """Fold the LoRA weights into ``vllm.model`` so it saves as a plain llava-hf checkpoint."""
    vllm.model = peft_model.merge_and_unload()
    vllm.forget_identity()


@torch.no_grad()
def generate_answers(vllm: "Vllm", images: Sequence, instructions: Sequence[str], edit_token_ids: Sequence[int],
                     max_new_tokens: int = 24) -> list[str]:
    """Greedy answers to the instructions, cut at EOS or at the first edit token (the tokens are appended
    by edit_token_batch, so the model's own copies are not kept)."""
    enc = vllm.processor(images=_pil(images), text=[prompt(i, vllm.processor.image_token) for i in instructions],
                         return_tensors="pt", padding=True)
    # Left padding so that every row continues right after its own prompt.
    lengths = enc["attention_mask"].sum(1)
    width = enc["input_ids"].shape[1]
    pad = vllm.tokenizer.pad_token_id if vllm.tokenizer.pad_token_id is not None else vllm.tokenizer.eos_token_id
    ids = torch.full_like(enc["input_ids"], pad)
    attention = torch.zeros_like(enc["attention_mask"])
    for i, n in enumerate(lengths.tolist()):
        ids[i, width - n:] = enc["input_ids"][i, :n]
        attention[i, width - n:] = 1
    device = vllm.device
    out = vllm.model.generate(input_ids=ids.to(device), attention_mask=attention.to(device),
                              pixel_values=enc["pixel_values"].to(device, vllm.dtype), max_new_tokens=max_new_tokens,
                              do_sample=False)
    stops = set(edit_token_ids) | {vllm.tokenizer.eos_token_id}
    answers = []
    for row in out[:, width:].tolist():
        kept = []
        for token in row:
            if token in stops:
                break
            kept.append(token)
        answers.append(vllm.tokenizer.decode(kept, skip_special_tokens=True).strip())
    return answers
