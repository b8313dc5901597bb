"""Tiny sibling parts: a random LLaVA (16-d), tiny connectors and the 32 px curated pairs of tests/training."""

from __future__ import annotations

import pytest

from tests.training.conftest import make_pairs

WORDS = "the person takes the red blue green cup with left right hand take cup i am thirsty make room"


def tiny_vllm(seed: int = 0):
    from egoframe.vllm.tiny import TinyVllmConfig, build_tiny_vllm, build_word_tokenizer

    return build_tiny_vllm(build_word_tokenizer([WORDS]), TinyVllmConfig(
        image_size=32, patch_size=8, vision_hidden_size=16, vision_layers=2, vision_heads=2, text_hidden_size=16,
        text_layers=1, text_heads=2, max_positions=160), seed=seed)


@pytest.fixture(scope="session")
def sibling_pairs(tmp_path_factory):
    return make_pairs(str(tmp_path_factory.mktemp("sibling-pairs")), n=8)


SMARTEDIT_TINY = dict(d_llm=16, num_llm_tokens=4, num_queries=77, qformer_hidden_size=32, qformer_layers=2,
                      qformer_heads=4, qformer_intermediate_size=64, cross_attention_dim=32, vision_dim=16,
                      vision_grid=4, bim_dim=32, bim_depth=2, bim_heads=4, bim_mlp_dim=64, conv_in_channels=16,
                      latent_grid=16)
MGIE_TINY = dict(d_llm=16, num_llm_tokens=4, hidden_size=32, encoder_layers=1, decoder_layers=1, heads=4,
                 feedforward=64, cross_attention_dim=32)
RP2P_TINY = dict(d_llm=16, num_tokens=77, cross_attention_dim=32)
TINY = {"smartedit": SMARTEDIT_TINY, "mgie": MGIE_TINY, "rp2p": RP2P_TINY}


@pytest.fixture(scope="session")
def tiny_parts():
    """VAE, CLIP text encoder, tokenizer, 8-channel UNet (conv_in -> 16 ch at 16x16) and scheduler."""
    from egoframe.models.tiny import TinyConfig, tiny_components

    config = TinyConfig(resolution=32, vae_channels=(16, 32), unet_channels=(16, 32), cross_attention_dim=32,
                        attention_head_dim=8)
    parts = tiny_components(config, ablation="descriptions", seed=0)
    parts.pop("conditioning")
    return parts
