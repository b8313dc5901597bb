"""EgoVLP / EgoVLP+ on a tiny Frozen-in-Time checkpoint in the public layout: conversion, loading, scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from egoframe.errors import InputError, MissingWeightsError, ModelLoadError
from egoframe.evaluation.egovlp import EgoVlpScorer, build_frozen_in_time, convert_egovlp_checkpoint

from .tiny_models import save_tiny_egovlp_pth


class PickledConfig:
    """Stands for the training-config object the public egovlp.pth pickles."""


@pytest.fixture(scope="module")
def egovlp_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("egovlp")
    pth = save_tiny_egovlp_pth(folder)
    return convert_egovlp_checkpoint(pth, folder / "egovlp.safetensors", num_heads=4, text_num_heads=4)


def _images(seed, n=2):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(36, 48, 3), dtype=np.uint8) for _ in range(n)]


def test_egovlp_scores(egovlp_file):
    scorer = EgoVlpScorer.from_file(egovlp_file, clip_frames=4)
    a, b = _images(0), _images(1)
    clip = scorer.clips(a)
    assert tuple(clip.shape) == (2, 4, 3, 32, 32) and torch.equal(clip[:, 0], clip[:, 3])  # frame repeated
    plus = scorer.egovlp_plus(a, b)
    assert plus.shape == (2,) and np.all(np.abs(plus) <= 1) and not np.allclose(plus, 1.0)
    assert np.allclose(scorer.egovlp_plus(a, a), 1.0)
    text = scorer.egovlp(a, ["cut tomato", "open drawer"])
    with torch.no_grad():
        video = scorer.model.vid_proj(scorer.model.video_model(clip))
        tokens = scorer.tokenizer(["cut tomato", "open drawer"], return_tensors="pt", padding=True)
        hidden = scorer.model.text_model(**tokens).last_hidden_state[:, 0]
        words = scorer.model.txt_proj[1](torch.relu(hidden))
    assert np.allclose(text, torch.nn.functional.cosine_similarity(video, words).numpy(), atol=1e-5)


def test_epic_clips_inflate_temporal_embedding(egovlp_file):
    scorer = EgoVlpScorer.from_file(egovlp_file, clip_frames=16)
    embed = scorer.model.video_model.temporal_embed
    assert embed.shape[1] == 16 and torch.all(embed[:, 4:] == 0)  # load_temporal_fix='zeros'
    assert scorer.egovlp_plus(_images(2), _images(3)).shape == (2,)


def test_divided_attention_against_loop_reference():
    """Each patch token attends to [CLS] + its own frame (space) or its own position (time); CLS to all."""
    from egoframe.evaluation.egovlp import EgoVlpConfig

    torch.manual_seed(0)
    model = build_frozen_in_time(EgoVlpConfig(image_size=32, patch_size=16, embed_dim=8, depth=1, num_heads=2,
                                              mlp_hidden=16, num_frames=3, text_vocab_size=20, text_dim=8,
                                              text_layers=1, text_heads=2, text_hidden=16, text_max_positions=8))
    attention = model.video_model.blocks[0].attn
    frames, patches, dim, heads = 3, 4, 8, 2
    x = torch.randn(1, 1 + frames * patches, dim)
    qkv = attention.qkv(x)[0]
    q, k, v = qkv[:, :dim], qkv[:, dim:2 * dim], qkv[:, 2 * dim:]
    for over in ("space", "time"):
        expected = torch.zeros(1 + frames * patches, dim)
        for token in range(1 + frames * patches):
            if token == 0:
                keys = list(range(1 + frames * patches))
            else:
                f, n = divmod(token - 1, patches)
                group = ([1 + f * patches + m for m in range(patches)] if over == "space"
                         else [1 + g * patches + n for g in range(frames)])
                keys = [0] + group
            for h in range(heads):
                sl = slice(h * dim // heads, (h + 1) * dim // heads)
                weights = torch.softmax(q[token, sl] @ k[keys, sl].T * (dim // heads) ** -0.5, dim=0)
                expected[token, sl] = weights @ v[keys, sl]
        got = attention(x, frames, patches, over)[0]
        assert torch.allclose(got, attention.proj(expected), atol=1e-5), over


def test_converter_refuses_pickled_objects_clearly(tmp_path):
    pth = save_tiny_egovlp_pth(tmp_path / "src")
    loaded = torch.load(pth, weights_only=True)
    loaded["config"] = PickledConfig()
    torch.save(loaded, tmp_path / "public.pth")
    with pytest.raises(ModelLoadError, match=r"weights_only=True.*PickledConfig.*re-save only the weights"):
        convert_egovlp_checkpoint(tmp_path / "public.pth", tmp_path / "out.safetensors")
    torch.save({"state_dict": {"some.weight": torch.ones(2)}}, tmp_path / "other.pth")
    with pytest.raises(ModelLoadError, match="not an EgoVLP"):
        convert_egovlp_checkpoint(tmp_path / "other.pth", tmp_path / "out.safetensors")


def test_egovlp_missing_weights(tmp_path, egovlp_file):
    with pytest.raises(MissingWeightsError, match=r"egovlp.safetensors.*convert-egovlp.*--egovlp FILE"):
        EgoVlpScorer.from_file(None)
    with pytest.raises(MissingWeightsError, match="egovlp.safetensors"):
        EgoVlpScorer.from_file(tmp_path)
    (tmp_path / "egovlp.safetensors").write_bytes(egovlp_file.read_bytes())
    with pytest.raises(MissingWeightsError, match="distilbert-base-uncased tokenizer"):
        EgoVlpScorer.from_file(tmp_path / "egovlp.safetensors")
    with pytest.raises(InputError, match="convert-egovlp"):
        EgoVlpScorer.from_file(egovlp_file.with_name("egovlp.pth"))
