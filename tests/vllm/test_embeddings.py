"""H_i / H_t extraction: shapes, dtype, mask, batch independence, and that they are what REFERENCE.md says."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from egoframe.errors import InputError
from egoframe.vllm.embeddings import ExtractionConfig, describe_frames, extract_vllm_embeddings, generate_answers
from tests.vllm.vllm_testdata import synthetic_frame


@pytest.fixture(scope="module")
def frames():
    return [synthetic_frame("red", "left"), synthetic_frame("blue", "right"), synthetic_frame("green", "left")]


def test_shapes_dtype_and_mask(tiny_vllm, frames):
    config = ExtractionConfig(max_new_tokens=6)
    emb = extract_vllm_embeddings(tiny_vllm, frames, ["take cup"] * 3, config)
    assert emb.image_tokens.shape == (3, 16, 32)  # 32 px / patch 8 -> 16 patches, CLS dropped
    assert emb.text_tokens.shape == (3, 77, 32)
    assert emb.text_mask.shape == (3, 77) and emb.text_mask.dtype == torch.long
    assert emb.image_tokens.dtype == emb.text_tokens.dtype == torch.float32
    lengths = emb.text_mask.sum(1)
    assert ((lengths >= 1) & (lengths <= 6)).all()
    for row, n in enumerate(lengths.tolist()):
        assert emb.text_mask[row, :n].all() and not emb.text_mask[row, n:].any()  # real tokens first
        assert torch.count_nonzero(emb.text_tokens[row, n:]) == 0  # padding is zeros
        assert torch.count_nonzero(emb.text_tokens[row, :n].abs().sum(-1)) == n
    assert len(emb.description) == 3


def test_truncates_to_n(tiny_vllm, frames):
    emb = extract_vllm_embeddings(tiny_vllm, frames[:1], ["take cup"], ExtractionConfig(n_text_tokens=3,
                                                                                        max_new_tokens=8))
    assert emb.text_tokens.shape == (1, 3, 32)


def test_image_tokens_are_projected_penultimate_patch_tokens(tiny_vllm, frames):
    """H_i recomputed by hand from the vision tower: hidden_states[-2] without CLS, through the projector."""
    emb = extract_vllm_embeddings(tiny_vllm, frames[:1], ["take cup"], ExtractionConfig(max_new_tokens=2))
    pixels = tiny_vllm.processor.image_processor(images=[frames[0]], return_tensors="pt")["pixel_values"]
    inner = tiny_vllm.model.model
    with torch.no_grad():
        hidden = inner.vision_tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        expected = inner.multi_modal_projector(hidden)
    torch.testing.assert_close(emb.image_tokens, expected, rtol=1e-5, atol=1e-6)


def test_text_tokens_are_last_layer_states_of_the_generated_answer(tiny_vllm, frames):
    config = ExtractionConfig(max_new_tokens=5)
    prompt_ids, answers, pixels = generate_answers(tiny_vllm, frames[:1], ["take cup"], config)
    ids = torch.tensor([prompt_ids[0] + answers[0]])
    with torch.no_grad():
        out = tiny_vllm.model(input_ids=ids, pixel_values=pixels, output_hidden_states=True)
    expected = out.hidden_states[-1][0, len(prompt_ids[0]):]
    emb = extract_vllm_embeddings(tiny_vllm, frames[:1], ["take cup"], config)
    n = len(answers[0])
    torch.testing.assert_close(emb.text_tokens[0, :n], expected, rtol=1e-5, atol=1e-6)
    # and the greedy answer is what the LM head predicts from those states
    logits = tiny_vllm.model.lm_head(out.hidden_states[-1][0, len(prompt_ids[0]) - 1:-1])
    assert logits.argmax(-1).tolist() == answers[0]


def test_a_sample_does_not_depend_on_its_batch(tiny_vllm, frames):
    config = ExtractionConfig(max_new_tokens=6)
    batch = extract_vllm_embeddings(tiny_vllm, frames, ["take cup", "take the cup now", "take cup"], config)
    alone = extract_vllm_embeddings(tiny_vllm, frames[1:2], ["take the cup now"], config)
    assert torch.equal(batch.image_tokens[1:2], alone.image_tokens)
    assert torch.equal(batch.text_tokens[1:2], alone.text_tokens)
    assert torch.equal(batch.text_mask[1:2], alone.text_mask)
    assert batch.description[1] == alone.description[0]


def test_describe_is_greedy_and_deterministic(tiny_vllm, frames):
    config = ExtractionConfig(max_new_tokens=6)
    assert describe_frames(tiny_vllm, frames, ["take cup"] * 3, config) == \
        describe_frames(tiny_vllm, frames, ["take cup"] * 3, config)


def test_bad_inputs(tiny_vllm, frames):
    with pytest.raises(InputError, match="2 images but 1 actions"):
        extract_vllm_embeddings(tiny_vllm, frames[:2], ["take cup"])
    with pytest.raises(InputError, match="uint8"):
        extract_vllm_embeddings(tiny_vllm, [np.zeros((32, 32, 3), dtype=np.float32)], ["take cup"])
    with pytest.raises(InputError, match="empty action"):
        extract_vllm_embeddings(tiny_vllm, frames[:1], ["  "])
