"""Loading LEGO pipelines from disk: egoframe model directories and Stable Diffusion 1.5 directories.

Both are diffusers layouts (model_index.json + one folder per component). An egoframe directory is
loaded as saved; a Stable Diffusion 1.5 directory (unet/, vae/, text_encoder/, tokenizer/, scheduler/)
gets its UNet grown to 8 input channels and a freshly initialised conditioning module. Every way a
directory can be wrong ends in a one-line :class:`ModelLoadError`. Weights are safetensors only; a trusted
``.bin`` checkpoint loads with ``allow_pickle=True`` or ``EGOFRAME_ALLOW_PICKLE=1``
(:mod:`egoframe.utils.safe_loading`).
"""

from __future__ import annotations

import json
import logging
import os

from egoframe.errors import EgoframeError, ModelLoadError
from egoframe.utils.safe_loading import pipeline_folders, weights_kwargs
from egoframe.vllm.embeddings import ExtractionConfig
from egoframe.vllm.model import load_vllm

logger = logging.getLogger(__name__)

SD_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")


def load_pipeline(path: str | os.PathLike, device: str | None = None, dtype=None, conditioning=None,
                  allow_pickle: bool | None = None):
    """Load an egoframe model directory, or build a LEGO pipeline from a Stable Diffusion directory.

    conditioning: a :class:`LegoConditioningConfig` for the Stable Diffusion case (default: descriptions
    only, no VLLM tokens, since a bare SD directory comes with no VLLM).
    allow_pickle: also load ``.bin`` (pickle) weights; None reads ``EGOFRAME_ALLOW_PICKLE``.
    """
    path = os.fspath(path)
    index = _read_index(path)
    kind = index.get("_class_name", "")
    if kind in ("LegoPipeline", "SDEditPipeline"):
        pipe = _load_egoframe(path, kind, allow_pickle=allow_pickle)
    elif kind in ("StableDiffusionPipeline", "StableDiffusionInstructPix2PixPipeline") or _has_sd_folders(path):
        pipe = from_stable_diffusion(path, conditioning=conditioning, allow_pickle=allow_pickle)
    else:
        raise ModelLoadError(
            f"{path} is a {kind or 'unknown'} directory; expected an egoframe model or a Stable Diffusion 1.5 "
            "directory (model_index.json with unet/, vae/, text_encoder/, tokenizer/, scheduler/)"
        )
    check_consistency(pipe, path)
    if device is not None or dtype is not None:
        pipe.to(device=device, dtype=dtype)
    return pipe


def from_stable_diffusion(path: str, conditioning=None, in_channels: int = 8, allow_pickle: bool | None = None):
    """A LEGO pipeline from a local Stable Diffusion 1.5 directory in the diffusers layout."""
    from diffusers import AutoencoderKL, EulerAncestralDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from egoframe.models.conditioning import LegoConditioning, LegoConditioningConfig  # lazy: pulls diffusers
    from egoframe.models.unet import grow_conv_in  # lazy: pulls diffusers
    from egoframe.pipelines.lego import LegoPipeline  # lazy: pulls diffusers

    missing = [c for c in SD_COMPONENTS if not os.path.isdir(os.path.join(path, c))]
    if missing:
        raise ModelLoadError(f"{path} is not a Stable Diffusion directory: missing {', '.join(missing)}/")
    weights = weights_kwargs(*(os.path.join(path, c) for c in ("unet", "vae", "text_encoder")),
                             allow_pickle=allow_pickle)
    try:
        unet = UNet2DConditionModel.from_pretrained(path, subfolder="unet", **weights)
        vae = AutoencoderKL.from_pretrained(path, subfolder="vae", **weights)
        text_encoder = CLIPTextModel.from_pretrained(path, subfolder="text_encoder", **weights)
        # tokenizer and scheduler: JSON / text files, no weights
        tokenizer = CLIPTokenizer.from_pretrained(path, subfolder="tokenizer")
        # LEGO samples with Euler ancestral (papers/001 Sec. 4); keep the checkpoint's beta schedule.
        scheduler = EulerAncestralDiscreteScheduler.from_pretrained(path, subfolder="scheduler")
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise ModelLoadError(f"cannot load Stable Diffusion components from {path}: {_first_line(exc)}") from None
    grow_conv_in(unet, in_channels)
    if conditioning is None:
        conditioning = LegoConditioningConfig(use_image_tokens=False, use_text_tokens=False)
    conditioning.cross_attention_dim = unet.config.cross_attention_dim
    conditioning.num_text_encoder_tokens = tokenizer.model_max_length
    logger.warning("conditioning module freshly initialised: train it before trusting the outputs")
    return LegoPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        conditioning=LegoConditioning.from_typed_config(conditioning),
    )


def check_consistency(pipe, path: str = "model") -> None:
    """Shapes that must agree across components; checked once at load so errors name the cause."""
    unet, vae, cond = pipe.unet.config, pipe.vae.config, pipe.conditioning.config
    problems = []
    # Edit models see concat(noisy, input latent); a text-to-image (SDEdit) model sees the noisy latent only.
    factor = 2 if getattr(pipe, "conditions_on_image", True) else 1
    if unet.in_channels != factor * vae.latent_channels:
        problems.append(f"unet takes {unet.in_channels} channels, expected {factor} x {vae.latent_channels} latent channels")
    if unet.out_channels != vae.latent_channels:
        problems.append(f"unet outputs {unet.out_channels} channels, the vae has {vae.latent_channels}")
    if cond.cross_attention_dim != unet.cross_attention_dim:
        problems.append(
            f"conditioning width {cond.cross_attention_dim} != unet cross_attention_dim {unet.cross_attention_dim}"
        )
    if pipe.text_encoder.config.hidden_size != cond.cross_attention_dim:
        problems.append(
            f"text encoder width {pipe.text_encoder.config.hidden_size} != conditioning width {cond.cross_attention_dim}"
        )
    if pipe.tokenizer.model_max_length != cond.num_text_encoder_tokens:
        problems.append(
            f"tokenizer window {pipe.tokenizer.model_max_length} != conditioning's {cond.num_text_encoder_tokens} tokens"
        )
    if problems:
        raise ModelLoadError(f"{path}: mismatched components: " + "; ".join(problems))


def _load_egoframe(path: str, kind: str = "LegoPipeline", allow_pickle: bool | None = None):
    from egoframe.pipelines.lego import (  # lazy: pulls diffusers
        PAPER_SAMPLING,
        SAMPLING_FILE,
        VLLM_EXTRACTION_FILE,
        VLLM_SUBFOLDER,
        LegoPipeline,
    )

    pipeline_class = LegoPipeline
    if kind == "SDEditPipeline":
        from egoframe.pipelines.baselines import SDEditPipeline  # lazy: pulls diffusers

        pipeline_class = SDEditPipeline  # same parts, a 4-channel (text-to-image) UNet

    index = _read_index(path)
    missing = [n for n in ("unet", "vae", "text_encoder", "tokenizer", "scheduler", "conditioning")
               if n not in index or not os.path.isdir(os.path.join(path, n))]
    if missing:
        raise ModelLoadError(f"{path} is an incomplete egoframe model: missing {', '.join(missing)}")
    # The VLLM subfolder is loaded (and checked) by load_vllm below.
    weights = weights_kwargs(*pipeline_folders(path, skip=(VLLM_SUBFOLDER,)), allow_pickle=allow_pickle)
    try:
        pipe = pipeline_class.from_pretrained(path, **weights)
    except (OSError, ValueError, RuntimeError, KeyError, AttributeError) as exc:
        raise ModelLoadError(f"cannot load egoframe model {path}: {_first_line(exc)}") from None
    sampling_file = os.path.join(path, SAMPLING_FILE)
    if os.path.exists(sampling_file):
        with open(sampling_file) as fh:
            recommended = json.load(fh)
        unknown = set(recommended) - set(PAPER_SAMPLING)
        if unknown or not isinstance(recommended, dict):
            raise ModelLoadError(f"{sampling_file}: unknown keys {sorted(unknown)}; allowed: {sorted(PAPER_SAMPLING)}")
        pipe.sampling_defaults = recommended
    vllm_dir = os.path.join(path, VLLM_SUBFOLDER)
    if os.path.isdir(vllm_dir):
        extraction = None
        extraction_file = os.path.join(vllm_dir, VLLM_EXTRACTION_FILE)
        if os.path.exists(extraction_file):
            with open(extraction_file) as fh:
                extraction = ExtractionConfig(**json.load(fh))
        try:
            pipe.attach_vllm(load_vllm(vllm_dir, allow_pickle=allow_pickle), extraction)
        except EgoframeError as exc:
            raise ModelLoadError(f"{path}: its VLLM does not fit: {exc}") from None
    return pipe


def _read_index(path: str) -> dict:
    if not os.path.exists(path):
        raise ModelLoadError(f"model directory not found: {path}")
    if not os.path.isdir(path):
        raise ModelLoadError(f"expected a model directory, got a file: {path}")
    index_file = os.path.join(path, "model_index.json")
    if not os.path.exists(index_file):
        if _has_sd_folders(path):
            return {}
        raise ModelLoadError(f"{path} has no model_index.json: not a diffusers/egoframe model directory")
    try:
        with open(index_file) as fh:
            index = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{index_file} is not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})") from None
    if not isinstance(index, dict):
        raise ModelLoadError(f"{index_file} must hold a JSON object")
    return index


def _has_sd_folders(path: str) -> bool:
    return all(os.path.isdir(os.path.join(path, c)) for c in SD_COMPONENTS)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else exc.__class__.__name__
