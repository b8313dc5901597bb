"""Shared fixtures: tiny random models built in code, saved to temp dirs like real checkpoints."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may reach a model hub, here or in CI
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@pytest.fixture(scope="session")
def tiny_config():
    from egoframe.models.tiny import TinyConfig

    # 32 px keeps every test fast; the layout is that of the 64 px embedded default.
    return TinyConfig(resolution=32, vae_channels=(16, 32), unet_channels=(16, 32), cross_attention_dim=32,
                      attention_head_dim=8, conditioning=dict(d_llm=24, num_image_tokens=4, num_text_tokens=77,
                                                              text_transformer_heads=4))


@pytest.fixture(scope="session")
def tiny_lego_dir(tmp_path_factory, tiny_config):
    """A saved tiny egoframe model (the full LEGO variant: description + image + text VLLM tokens)."""
    from egoframe.pipelines.lego import tiny_pipeline

    path = tmp_path_factory.mktemp("tiny-lego")
    tiny_pipeline(tiny_config, ablation="lego", seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_desc_dir(tmp_path_factory, tiny_config):
    """A saved tiny egoframe model conditioned on descriptions only (needs no VLLM embeddings)."""
    from egoframe.pipelines.lego import tiny_pipeline

    path = tmp_path_factory.mktemp("tiny-desc")
    tiny_pipeline(tiny_config, ablation="descriptions", seed=0).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory, tiny_config):
    """A tiny random Stable Diffusion 1.5-layout directory (4-channel UNet), as `save_pretrained` writes it."""
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    from egoframe.models.tiny import tiny_components

    parts = tiny_components(tiny_config, ablation="descriptions", seed=1)
    unet = parts["unet"]
    # Rebuild the UNet with SD's 4 input channels: a text-to-image checkpoint, before LEGO's growth.
    from diffusers import UNet2DConditionModel

    config = dict(unet.config)
    config["in_channels"] = 4
    sd_unet = UNet2DConditionModel.from_config(config)
    path = tmp_path_factory.mktemp("tiny-sd15")
    StableDiffusionPipeline(
        vae=parts["vae"],
        text_encoder=parts["text_encoder"],
        tokenizer=parts["tokenizer"],
        unet=sd_unet,
        scheduler=PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                skip_prk_steps=True),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    ).save_pretrained(path)
    return path


def vllm_inputs(pipe, batch: int = 1, seed: int = 0, answer_tokens: int = 12):
    """Random VLLM embeddings of the right shapes for a pipeline's conditioning config."""
    import torch

    c = pipe.conditioning.config
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, c.num_text_tokens)
    mask[:, :answer_tokens] = 1
    return dict(
        vllm_image_tokens=torch.randn(batch, c.num_image_tokens, c.d_llm, generator=g),
        vllm_text_tokens=torch.randn(batch, c.num_text_tokens, c.d_llm, generator=g) * mask[..., None],
        vllm_text_mask=mask,
    )
