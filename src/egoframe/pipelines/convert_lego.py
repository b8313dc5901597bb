"""The published LEGO LDM checkpoint (BolinLai/LEGO, a PyTorch Lightning ``.ckpt``) -> an egoframe model directory.

The checkpoint (../shared/LEGO-FORMATS.md) holds ``model.diffusion_model.*`` (the 8-channel UNetModel),
``model_ema.*`` (its EMA, LitEma's dot-less names), ``first_stage_model.*`` (AutoencoderKL f8),
``cond_stage_model.transformer.*`` (the CLIP ViT-L/14 text encoder), ``projection_img`` / ``projection_txt``
(σ, μ: Linear d_llm -> 768) and ``self_attn_mix`` (π: a 2-layer pre-norm TransformerEncoder).

- The file is read with :func:`egoframe.utils.safe_loading.read_pickle_tensors`: tensors only, no code from
  the pickle runs.
- UNet, VAE and CLIP text encoder are mapped by diffusers' own LDM conversion functions
  (``diffusers.loaders.single_file_utils``), not a key table of ours; the EMA weights replace the UNet's
  when present (``use_ema: true, load_ema: true`` in the public configs).
- σ, μ, π become :class:`~egoframe.models.conditioning.LegoConditioning` with the public code's semantics:
  the null VLLM condition is zeros after projection (``null_vllm="outputs"``), no padding mask, π with
  torch's default feed-forward (2048, ReLU, read from the weights).
- The tokenizer is not in the checkpoint: ``clip_dir`` names a local CLIP ViT-L/14 directory
  (``openai/clip-vit-large-patch14`` layout) for it and the text encoder's config.
- Sampling: the public code's, 100 Euler-ancestral steps, text 7.5, image 1.5 (``PAPER_SAMPLING``).
"""

from __future__ import annotations

import copy
import os

from egoframe.errors import InputError, ModelLoadError
from egoframe.utils.safe_loading import read_pickle_tensors

# configs/train_ego4d.yaml of the public code (the LDM part); a checkpoint of another size needs its own
# config (``original_config``: the YAML's dict, or its path).
LEGO_LDM_CONFIG: dict = {"model": {"params": {
    "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000, "scale_factor": 0.18215,
    "unet_config": {"params": {
        "image_size": 32, "in_channels": 8, "out_channels": 4, "model_channels": 320,
        "attention_resolutions": [4, 2, 1], "num_res_blocks": 2, "channel_mult": [1, 2, 4, 4], "num_heads": 8,
        "use_spatial_transformer": True, "transformer_depth": 1, "context_dim": 768, "legacy": False}},
    "first_stage_config": {"params": {"embed_dim": 4, "ddconfig": {
        "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
        "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}}},
}}}

UNET_PREFIX = "model.diffusion_model."
EMA_PREFIX = "model_ema."


def _original_config(original_config) -> dict:
    if original_config is None:
        return copy.deepcopy(LEGO_LDM_CONFIG)
    if isinstance(original_config, dict):
        return original_config
    import yaml

    try:
        with open(original_config, encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"cannot read the LDM config {original_config}: {exc}") from None


def with_ema(state: dict) -> tuple[dict, bool]:
    """``state`` with every UNet weight replaced by its EMA copy (LitEma names drop the dots after
    ``model.``: ``model.diffusion_model.out.2.weight`` -> ``model_ema.diffusion_modelout2weight``)."""
    ema_keys = [k for k in state if k.startswith(EMA_PREFIX)]
    if not ema_keys:
        return state, False
    out = dict(state)
    missing = []
    for key in state:
        if key.startswith(UNET_PREFIX):
            flat = EMA_PREFIX + key[len("model."):].replace(".", "")
            if flat in state:
                out[key] = state[flat]
            else:
                missing.append(key)
    if missing:
        raise ModelLoadError(f"the checkpoint's EMA lacks {len(missing)} UNet weights (e.g. {missing[0]}): "
                             "convert without EMA (use_ema=False)")
    return out, True


def convert_lego_checkpoint(ckpt: str | os.PathLike, out: str | os.PathLike, clip_dir: str | os.PathLike, *,
                            original_config=None, use_ema: bool = True, num_image_tokens: int = 256,
                            num_text_tokens: int = 77) -> dict:
    """Write ``out`` (diffusers layout, safetensors) from LEGO's ``ckpt``; returns a summary dict."""
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
        create_unet_diffusers_config_from_ldm, create_vae_diffusers_config_from_ldm,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from egoframe.pipelines.lego import PAPER_SAMPLING, LegoPipeline  # lazy: pulls diffusers

    state = read_pickle_tensors(ckpt)
    if not any(k.startswith(UNET_PREFIX) for k in state):
        raise ModelLoadError(f"{ckpt} has no {UNET_PREFIX}* weights: not a LEGO / LDM checkpoint")
    ema_used = False
    if use_ema:
        state, ema_used = with_ema(state)
    config = _original_config(original_config)
    try:
        unet_config = create_unet_diffusers_config_from_ldm(config, state)
        vae_config = create_vae_diffusers_config_from_ldm(config, state)
        # diffusers guesses the size from the checkpoint's type (512 px for an SD-1.x UNet); the LDM config's
        # unet image_size is the latent size LEGO trained at (32 -> 256 px through the f8 VAE).
        latent_size = int(config["model"]["params"]["unet_config"]["params"]["image_size"])
        unet_config["sample_size"] = latent_size
        vae_config["sample_size"] = latent_size * 2 ** (len(vae_config["block_out_channels"]) - 1)
    except (KeyError, TypeError) as exc:
        raise InputError(f"the LDM config lacks {exc}: pass the public code's configs/train_*.yaml") from None
    try:
        unet = UNet2DConditionModel(**unet_config)
        unet.load_state_dict(convert_ldm_unet_checkpoint(state, unet_config), strict=True)
        vae = AutoencoderKL(**vae_config)
        vae.load_state_dict(convert_ldm_vae_checkpoint(state, vae_config), strict=True)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise ModelLoadError(f"{ckpt} does not fit the LDM config (UNet/VAE): {str(exc).splitlines()[0][:300]}") from None

    clip_dir = os.fspath(clip_dir)
    if not os.path.isdir(clip_dir):
        raise InputError(f"--clip {clip_dir}: not a directory (a local CLIP ViT-L/14 text model with its tokenizer)")
    def part(name: str) -> str:  # a Stable Diffusion folder has tokenizer/ and text_encoder/; a CLIP folder not
        folder = os.path.join(clip_dir, name)
        return folder if os.path.isdir(folder) else clip_dir

    try:
        tokenizer = CLIPTokenizer.from_pretrained(part("tokenizer"))
        text_config = CLIPTextConfig.from_pretrained(part("text_encoder"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the CLIP tokenizer / config in {clip_dir}: {exc}") from None
    text_encoder = CLIPTextModel(text_config)
    clip_state = convert_ldm_clip_checkpoint(state)
    clip_state.pop("text_model.embeddings.position_ids", None)  # a buffer in older transformers, not a weight
    try:
        text_encoder.load_state_dict(clip_state, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(f"{ckpt}'s text encoder does not fit {clip_dir}'s config: "
                             f"{str(exc).splitlines()[0][:300]}") from None

    conditioning = _conditioning(state, unet.config.cross_attention_dim, tokenizer.model_max_length,
                                 num_image_tokens, num_text_tokens)
    params = config["model"]["params"]
    # The LDM's "linear" schedule is linear in sqrt(beta): diffusers' scaled_linear.
    scheduler = EulerAncestralDiscreteScheduler(
        num_train_timesteps=int(params.get("timesteps", 1000)), beta_start=float(params.get("linear_start", 0.00085)),
        beta_end=float(params.get("linear_end", 0.012)), beta_schedule="scaled_linear", prediction_type="epsilon")
    pipe = LegoPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                        conditioning=conditioning)
    pipe.sampling_defaults = {k: (list(v) if isinstance(v, tuple) else v) for k, v in PAPER_SAMPLING.items()}
    pipe.save_pretrained(os.fspath(out), safe_serialization=True)
    return {"out": os.fspath(out), "ema": ema_used, "unet_parameters": sum(p.numel() for p in unet.parameters()),
            "conditioning": {k: v for k, v in conditioning.config.items() if not k.startswith("_")}}


def _conditioning(state: dict, width: int, n_text_encoder: int, num_image_tokens: int, num_text_tokens: int):
    """σ, μ, π of the checkpoint as LegoConditioning (the public code's null condition and no mask)."""
    from egoframe.models.conditioning import LegoConditioning  # lazy: pulls diffusers

    has_image = "projection_img.weight" in state
    has_text = "projection_txt.weight" in state
    if not (has_image or has_text):
        raise ModelLoadError("the checkpoint has neither projection_img nor projection_txt: not a LEGO checkpoint")
    d_llm = state["projection_img.weight" if has_image else "projection_txt.weight"].shape[1]
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("self_attn_mix.layers.")})
    kwargs = dict(cross_attention_dim=width, d_llm=int(d_llm), num_text_encoder_tokens=n_text_encoder,
                  num_image_tokens=num_image_tokens, num_text_tokens=num_text_tokens, use_image_tokens=has_image,
                  use_text_tokens=has_text, text_source="description", use_text_mask=False, null_vllm="outputs")
    if has_text:
        if not layers:
            raise ModelLoadError("projection_txt without self_attn_mix: not a LEGO checkpoint")
        kwargs.update(text_transformer_layers=len(layers), text_transformer_heads=8,
                      text_transformer_ff=int(state["self_attn_mix.layers.0.linear1.weight"].shape[0]),
                      text_transformer_activation="relu")
    module = LegoConditioning(**kwargs)
    mapped = {}
    for key, value in state.items():
        for source, target in (("projection_img.", "image_proj."), ("projection_txt.", "text_proj."),
                               ("self_attn_mix.", "text_transformer.")):
            if key.startswith(source):
                mapped[target + key[len(source):]] = value
    missing, unexpected = module.load_state_dict(mapped, strict=False)
    missing = [k for k in missing if k != "_anchor"]
    if missing or unexpected:
        raise ModelLoadError(f"σ/μ/π do not fit (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return module
