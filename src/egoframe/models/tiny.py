"""Tiny LEGO configurations built in code (a few million parameters, 32-128 px).

Used by the tests and, until trained weights ship, as the embedded default. Every part has the
class and file layout of its Stable Diffusion 1.5 counterpart, so tiny and real models share one
code path: only the sizes differ.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from egoframe.models.text import build_tiny_clip_tokenizer


@dataclass
class TinyConfig:
    resolution: int = 64  # pixels; the VAE halves it, so the UNet works on resolution/2 latents
    vae_channels: tuple[int, ...] = (16, 32)
    # "kl": a random AutoencoderKL of vae_channels (trained by `egoframe vae train`); "patch": the lossless
    # PatchAutoencoder of vae_patch x vae_patch pixels (models/autoencoder.py), e.g. 4: 128 px -> 48 x 32 x 32
    vae_kind: str = "kl"
    vae_patch: int = 4
    vae_latent_channels: int = 4  # channels of the KL VAE's latent (Stable Diffusion's: 4)
    unet_channels: tuple[int, ...] = (16, 32, 64)
    # Cross-attention only at the coarsest level (and the middle block): the measured 2-core budget
    # (shared/EMBEDDED-DEFAULT-FINDINGS.md) allows ~0.4 s per batch of 32, which attention at the
    # finer levels would triple.
    attention_levels: int = 1
    cross_attention_dim: int = 64
    attention_head_dim: int = 8
    # GroupNorm groups of the UNet (None: min(16, narrowest width)). With 16 channels in 16 groups every
    # channel is normalised alone, which removes its mean: the absolute colour a frame's latent carries.
    # Measured on the embedded world (600 steps, 32 held-out pairs, oracle state accuracy): 16 groups 0.53,
    # 4 groups 0.69 (and 0.89 with v-prediction): docs/embedded.
    unet_norm_groups: int | None = 4
    text_layers: int = 2
    text_heads: int = 4
    conditioning: dict = field(
        default_factory=lambda: dict(d_llm=64, num_image_tokens=16, num_text_tokens=77, text_transformer_heads=4)
    )

    def to_dict(self) -> dict:
        return asdict(self)


def tiny_components(config: TinyConfig | None = None, ablation: str = "lego", seed: int = 0, vae=None,
                    **conditioning):
    """Random-weight components of a tiny LEGO pipeline, deterministic for a seed.

    ``vae``: an autoencoder to use instead of the one ``config`` describes (a trained or fitted one); the UNet's
    channels and latent size follow it.
    """
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from egoframe.models.autoencoder import PatchAutoencoder, downsampling_factor  # lazy: pulls diffusers
    from egoframe.models.conditioning import ABLATIONS, LegoConditioning  # lazy: pulls diffusers

    config = config or TinyConfig()
    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; choose from {sorted(ABLATIONS)}")
    if config.vae_kind not in ("kl", "patch"):
        raise ValueError(f"vae_kind must be 'kl' or 'patch', got {config.vae_kind!r}")
    if vae is not None:
        factor = downsampling_factor(vae)
    else:
        factor = config.vae_patch if config.vae_kind == "patch" else 2 ** (len(config.vae_channels) - 1)
    if config.resolution % (factor * 2 ** (len(config.unet_channels) - 1)):
        raise ValueError(f"resolution {config.resolution} must be divisible by the VAE and UNet downsampling")
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        groups = min(16, min(config.vae_channels))
        # The config's own autoencoder is always built, so the UNet's seeded weights do not depend on ``vae``.
        if config.vae_kind == "patch":
            own = PatchAutoencoder(patch_size=config.vae_patch, sample_size=config.resolution)
        else:
            own = AutoencoderKL(
                in_channels=3,
                out_channels=3,
                down_block_types=("DownEncoderBlock2D",) * len(config.vae_channels),
                up_block_types=("UpDecoderBlock2D",) * len(config.vae_channels),
                block_out_channels=config.vae_channels,
                layers_per_block=1,
                latent_channels=config.vae_latent_channels,
                norm_num_groups=groups,
                sample_size=config.resolution,
                # Self-attention over all 32x32 latent positions costs more than the rest of this VAE.
                mid_block_add_attention=False,
            )
        n = len(config.unet_channels)
        attn = max(1, min(config.attention_levels, n))
        vae = vae if vae is not None else own
        latent = int(vae.config.latent_channels)
        unet = UNet2DConditionModel(
            sample_size=config.resolution // factor,
            in_channels=2 * latent,  # concat(noisy latent, input-frame latent), as InstructPix2Pix
            out_channels=latent,
            down_block_types=("DownBlock2D",) * (n - attn) + ("CrossAttnDownBlock2D",) * attn,
            up_block_types=("CrossAttnUpBlock2D",) * attn + ("UpBlock2D",) * (n - attn),
            block_out_channels=config.unet_channels,
            layers_per_block=1,
            cross_attention_dim=config.cross_attention_dim,
            attention_head_dim=config.attention_head_dim,
            norm_num_groups=config.unet_norm_groups or min(16, min(config.unet_channels)),
        )
        tokenizer = build_tiny_clip_tokenizer()
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=len(tokenizer),
                hidden_size=config.cross_attention_dim,
                intermediate_size=2 * config.cross_attention_dim,
                num_hidden_layers=config.text_layers,
                num_attention_heads=config.text_heads,
                max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        cond_kwargs = {**config.conditioning, **ABLATIONS[ablation], **conditioning}
        cond = LegoConditioning(cross_attention_dim=config.cross_attention_dim, **cond_kwargs)
    finally:
        torch.random.set_rng_state(generator_state)
    scheduler = EulerAncestralDiscreteScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    return dict(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler, conditioning=cond
    )

