"""The VLLM's outputs for the diffusion model: its description and the embeddings H_i, H_t (REFERENCE.md).

H_i (``image_tokens``): the vision tower's penultimate-layer patch tokens (CLS dropped) through the
multimodal projector, (B, n_image_tokens, d_llm); 256 x 4096 for llava-1.5-7b at 224 px.
H_t (``text_tokens``): last-layer (final-norm) hidden states of the LLM at the positions of the answer it
generated (greedy), padded with zeros / truncated to N = 77, (B, 77, d_llm), with ``text_mask`` (B, 77),
1 = real token. The generated end-of-sequence token counts as an answer token, so every row has at least one.

Both are computed one sample at a time after a batched greedy generation, so a sample's embeddings do not
depend on what else was in its batch: the cache written by ``egoframe vllm embed`` and an on-the-fly call
give bit-identical tensors.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

from egoframe.errors import ConfigError, InputError
from egoframe.vllm.model import Vllm
from egoframe.vllm.templates import QUESTION_TEMPLATES, prompt_for

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass(frozen=True)
class ExtractionConfig:
    """Everything besides the VLLM's weights that changes the extracted tensors (recorded in the cache index)."""

    question_template: int = 0  # which of the 10 questions is asked (see templates.py)
    n_text_tokens: int = 77  # N: H_t is padded/truncated to this many tokens
    max_new_tokens: int = 77  # greedy generation budget for the description

    def __post_init__(self) -> None:
        if not 0 <= self.question_template < len(QUESTION_TEMPLATES):
            raise ConfigError(f"question_template must be 0..{len(QUESTION_TEMPLATES) - 1}, got {self.question_template}")
        if self.n_text_tokens < 1 or self.max_new_tokens < 1:
            raise ConfigError("n_text_tokens and max_new_tokens must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class VllmEmbeddings:
    image_tokens: "torch.Tensor"  # (B, n_image_tokens, d_llm)  H_i
    text_tokens: "torch.Tensor"  # (B, N, d_llm)  H_t, zeros where text_mask == 0
    text_mask: "torch.Tensor"  # (B, N) int64, 1 = real token
    description: list[str]  # (B,) the generated answers

    def __len__(self) -> int:
        return len(self.description)

    def to(self, device=None, dtype=None) -> "VllmEmbeddings":
        """Moved/cast copy; ``dtype`` applies to the float tensors only."""
        return VllmEmbeddings(self.image_tokens.to(device=device, dtype=dtype),
                              self.text_tokens.to(device=device, dtype=dtype),
                              self.text_mask.to(device=device), list(self.description))

    @staticmethod
    def cat(parts: Sequence["VllmEmbeddings"]) -> "VllmEmbeddings":
        import torch

        return VllmEmbeddings(torch.cat([p.image_tokens for p in parts]), torch.cat([p.text_tokens for p in parts]),
                              torch.cat([p.text_mask for p in parts]), [d for p in parts for d in p.description])


ImageLike = Any  # PIL.Image, a path, an (H, W, 3) uint8 array or a (3, H, W) uint8 tensor


def to_pil(image: ImageLike) -> "Image.Image":
    """One frame as an RGB PIL image; only lossless, range-unambiguous inputs are accepted."""
    import numpy as np
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, (str, os.PathLike)):
        try:
            with Image.open(image) as im:
                return im.convert("RGB")
        except (OSError, ValueError) as exc:
            raise InputError(f"cannot read image {image}: {exc}") from None
    try:
        import torch

        if isinstance(image, torch.Tensor):
            if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
                raise InputError(f"image tensors must be uint8 (3, H, W), got {image.dtype} {tuple(image.shape)}")
            image = image.permute(1, 2, 0).cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"image arrays must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
        return Image.fromarray(image)
    raise InputError(f"unsupported image type {type(image).__name__}: pass a PIL image, a path or a uint8 array")


def _check_batch(images: Sequence[ImageLike], actions: Sequence[str]) -> list[str]:
    if len(images) != len(actions):
        raise InputError(f"got {len(images)} images but {len(actions)} actions")
    if not images:
        raise InputError("no images given")
    actions = [" ".join(str(a).split()) for a in actions]
    if any(not a for a in actions):
        raise InputError("empty action label")
    return actions


def generate_answers(vllm: "Vllm", images: Sequence[ImageLike], actions: Sequence[str],
                     config: ExtractionConfig | None = None) -> tuple[list[list[int]], list[list[int]], "torch.Tensor"]:
    """Greedy answers to the question about each action.

    Returns (prompt token ids per sample without padding, generated ids per sample up to and including the
    first EOS, pixel values (B, 3, H, W)).
    """
    import torch

    config = config or ExtractionConfig()
    actions = _check_batch(images, actions)
    tokenizer = vllm.tokenizer
    prompts = [prompt_for(a, config.question_template, vllm.processor.image_token) for a in actions]
    pil = [to_pil(im) for im in images]
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends on the right
    try:
        enc = vllm.processor(images=pil, text=prompts, return_tensors="pt", padding=True)
    finally:
        tokenizer.padding_side = old_side
    device = vllm.device
    pixel_values = enc["pixel_values"].to(device=device, dtype=vllm.dtype)
    eos = vllm.model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else tokenizer.eos_token_id])
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else next(iter(eos_ids))
    with torch.inference_mode():
        out = vllm.model.generate(
            input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device),
            pixel_values=pixel_values, do_sample=False, num_beams=1, max_new_tokens=config.max_new_tokens,
            pad_token_id=pad, eos_token_id=sorted(eos_ids), temperature=None, top_p=None, top_k=None)
    prompt_len = enc["input_ids"].shape[1]
    prompt_ids = [ids[mask.bool()].tolist() for ids, mask in zip(enc["input_ids"], enc["attention_mask"])]
    answers = []
    for row in out[:, prompt_len:].tolist():
        answer = []
        for token in row:
            answer.append(token)
            if token in eos_ids:
                break
        answers.append(answer)
    return prompt_ids, answers, pixel_values


def decode_answer(vllm: "Vllm", answer_ids: Sequence[int]) -> str:
    return vllm.tokenizer.decode(list(answer_ids), skip_special_tokens=True).strip()


def describe_frames(vllm: "Vllm", images: Sequence[ImageLike], actions: Sequence[str],
                    config: ExtractionConfig | None = None) -> list[str]:
    """The VLLM's (greedy) description of how each action is done in its frame."""
    _, answers, _ = generate_answers(vllm, images, actions, config)
    return [decode_answer(vllm, a) for a in answers]


def extract_vllm_embeddings(vllm: "Vllm", images: Sequence[ImageLike], actions: Sequence[str],
                            config: ExtractionConfig | None = None) -> VllmEmbeddings:
    """H_i, H_t (+ mask) and the description for each (frame, action), exactly as REFERENCE.md defines them.

    ``images``: PIL images, paths, (H, W, 3) uint8 arrays or (3, H, W) uint8 tensors; ``actions``: labels such
    as "take cup". Tensors come back on the VLLM's device in its dtype (mask: int64).
    """
    import torch

    config = config or ExtractionConfig()
    prompt_ids, answers, pixel_values = generate_answers(vllm, images, actions, config)
    n = config.n_text_tokens
    device = vllm.device
    image_rows, text_rows, mask_rows = [], [], []
    with torch.inference_mode():
        for i, (prompt, answer) in enumerate(zip(prompt_ids, answers)):
            ids = torch.tensor([prompt + answer], device=device)
            out = vllm.model.model(input_ids=ids, attention_mask=torch.ones_like(ids),
                                   pixel_values=pixel_values[i:i + 1], use_cache=False)
            image_rows.append(out.image_hidden_states.reshape(1, -1, vllm.d_llm))  # (1, n_image_tokens, d_llm)
            answer_states = out.last_hidden_state[0, len(prompt):len(prompt) + n]  # (<=N, d_llm)
            padded = answer_states.new_zeros((1, n, vllm.d_llm))
            padded[0, :answer_states.shape[0]] = answer_states
            mask = torch.zeros((1, n), dtype=torch.long, device=device)
            mask[0, :answer_states.shape[0]] = 1
            text_rows.append(padded)
            mask_rows.append(mask)
    return VllmEmbeddings(image_tokens=torch.cat(image_rows), text_tokens=torch.cat(text_rows),
                          text_mask=torch.cat(mask_rows), description=[decode_answer(vllm, a) for a in answers])
