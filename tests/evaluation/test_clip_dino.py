"""CLIP-I, CLIP-T (with the 77-token window handled on purpose) and DINO on tiny random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from egoframe.errors import MissingWeightsError
from egoframe.evaluation.clip_dino import ClipScorer, DinoScorer

from .tiny_models import save_tiny_clip, save_tiny_dinov2, save_tiny_vit


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("clip"))


def _images(seed, n=3, size=(40, 52)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=size + (3,), dtype=np.uint8) for _ in range(n)]


def test_clip_image_image(clip_dir):
    scorer = ClipScorer(clip_dir)
    a, b = _images(0), _images(1)
    same = scorer.image_image(a, a)
    assert np.allclose(same, 1.0)
    scores = scorer.image_image(a, b)
    assert scores.shape == (3,) and np.all(np.abs(scores) <= 1.0) and not np.allclose(scores, 1.0)
    # independent route: the model's own projected embeddings of the preprocessed pixels
    with torch.no_grad():
        fa = scorer.model.get_image_features(pixel_values=scorer.preprocess(a)).pooler_output
        fb = scorer.model.get_image_features(pixel_values=scorer.preprocess(b)).pooler_output
    assert np.allclose(scores, torch.nn.functional.cosine_similarity(fa, fb).numpy(), atol=1e-5)


def test_clip_text_short_and_long(clip_dir):
    scorer = ClipScorer(clip_dir, needs_text=True)
    eos = scorer.tokenizer.eos_token_id
    short = scorer.text_token_windows("cut tomato")
    assert len(short) == 1 and short[0][0] == scorer.tokenizer.bos_token_id and short[0][-1] == eos
    long_text = "the person holds the knife in the right hand and cuts the tomato on the board " * 2  # > 75 tokens
    windows = scorer.text_token_windows(long_text)
    assert len(windows) == 1 and len(windows[0]) == 77 and windows[0][-1] == eos  # EOT kept
    kept = scorer.encode_windows(windows)
    # what a naive cut to 77 positions does: the EOT token is lost and another token is pooled instead
    naive = scorer.tokenizer(long_text)["input_ids"][:77]
    assert eos not in naive[1:]
    assert not torch.allclose(kept, scorer.encode_windows([naive]), atol=1e-4)
    scores = scorer.image_text(_images(2, n=2), ["cut tomato", long_text])
    assert scores.shape == (2,) and np.all(np.abs(scores) <= 1.0)


def test_clip_text_chunks_average_windows(clip_dir):
    scorer = ClipScorer(clip_dir, needs_text=True, long_text="chunks")
    long_text = "open the drawer with the left hand " * 4
    windows = scorer.text_token_windows(long_text)
    assert len(windows) >= 2 and all(w[-1] == scorer.tokenizer.eos_token_id and len(w) <= 77 for w in windows)
    content = sum(len(w) - 2 for w in windows)
    assert content == len(scorer.tokenizer(long_text, add_special_tokens=False)["input_ids"])  # nothing dropped
    each = torch.nn.functional.normalize(scorer.encode_windows(windows).double(), dim=-1)
    expected = torch.nn.functional.normalize(each.mean(0), dim=-1)
    assert torch.allclose(scorer.text_features([long_text])[0], expected, atol=1e-6)


@pytest.mark.parametrize("builder", [save_tiny_dinov2, save_tiny_vit])
def test_dino_cosine(tmp_path, builder):
    scorer = DinoScorer(builder(tmp_path))
    a, b = _images(3), _images(4)
    assert np.allclose(scorer.image_image(a, a), 1.0)
    scores = scorer.image_image(a, b)
    with torch.no_grad():
        fa = scorer.model(pixel_values=scorer.preprocess(a)).last_hidden_state[:, 0]
        fb = scorer.model(pixel_values=scorer.preprocess(b)).last_hidden_state[:, 0]
    assert np.allclose(scores, torch.nn.functional.cosine_similarity(fa, fb).numpy(), atol=1e-5)


def test_missing_clip_and_dino_weights(tmp_path, clip_dir):
    with pytest.raises(MissingWeightsError, match="CLIP.*--clip DIR"):
        ClipScorer(None)
    with pytest.raises(MissingWeightsError, match="lacks config.json, model.safetensors"):
        ClipScorer(tmp_path)
    with pytest.raises(MissingWeightsError, match="DINO.*--dino DIR"):
        DinoScorer(tmp_path / "absent")
    (tmp_path / "config.json").write_text((clip_dir / "config.json").read_text())
    (tmp_path / "model.safetensors").write_bytes((clip_dir / "model.safetensors").read_bytes())
    with pytest.raises(MissingWeightsError, match="preprocessor_config.json"):
        ClipScorer(tmp_path)
