"""Inference for the sibling systems: one pipeline with a connector slot (SmartEdit, MGIE or ReasonPix2Pix).

The parts are LEGO's (VAE, 8-channel UNet, CLIP text encoder for the null condition, any scheduler, a
LLaVA saved in ``vllm/``); only the connector differs. Guidance is the dual classifier-free guidance of
InstructPix2Pix (Brooks et al. 2023, Eq. 3) that LEGO uses, with the three branches as one batch like
``LegoPipeline.predict_noise`` (re-stated in :func:`guided_noise` because SmartEdit adds a per-branch
conv_in residual that LEGO's method has no slot for):

    ε = ε(∅,∅) + s_x·(ε(x,∅) − ε(∅,∅)) + s_c·(ε(x,c) − ε(x,∅))

The null text condition ∅ is the CLIP embedding of the empty prompt, as in IP2P training; SmartEdit's
image residual v' comes out of the text-image interaction, so it is present only in the (x, c) branch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import torch
from diffusers import DiffusionPipeline

from egoframe.diffusion import FrameInputs, dual_cfg, encode_image_latents, randn_latents, step_kwargs
from egoframe.errors import InputError, ModelLoadError
from egoframe.models.kv_cache import cached_cross_attention
from egoframe.models.text import encode_text
from egoframe.pipelines.lego import LegoPipelineOutput, generation_mode, per_image
from egoframe.siblings import llm
from egoframe.siblings.connectors import (
    MgieConnector,
    Rp2pConnector,
    SiblingCondition,
    SmartEditConnector,
    connector_class,
    conv_in_residual,
)
from egoframe.siblings.llm import generate_answers
from egoframe.utils.images import tensor_to_pil
from egoframe.utils.safe_loading import weights_kwargs
from egoframe.vllm.model import load_vllm

VLLM_SUBFOLDER = "vllm"
SIBLING_FILE = "sibling.json"  # system name, the added tokens, and the answer policy, next to the weights


def system_of(connector) -> str:
    for name, cls in (("smartedit", SmartEditConnector), ("mgie", MgieConnector), ("rp2p", Rp2pConnector)):
        if isinstance(connector, cls):
            return name
    raise ModelLoadError(f"unknown connector type {type(connector).__name__}")


def frames_uint8(pixels: torch.Tensor) -> list[torch.Tensor]:
    """(B, 3, R, R) in [-1, 1] -> uint8 frames for the LLaVA processor."""
    return list(((pixels.float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8))


def connector_condition(connector, vllm, llm_model, frames: Sequence, instructions: Sequence[str],
                        answers: Sequence[str] | None, edit_token_ids: Sequence[int]
                        ) -> tuple[SiblingCondition, torch.Tensor | None, torch.Tensor | None]:
    """The connector's condition for frames + instructions, with the LM loss and the edit-token states.

    Shared by training (answers = the target descriptions, teacher-forced) and inference (answers written
    by the LLM, or empty). ReasonPix2Pix's LLaVA is frozen and has neither loss nor edit tokens.
    """
    system = system_of(connector)
    if system == "rp2p":
        states, mask = llm.instruction_states(vllm, frames, instructions, connector.config.num_tokens)
        dtype = connector.proj.weight.dtype
        return connector(states.to(dtype), mask), None, None
    batch = llm.edit_token_batch(vllm, frames, instructions, answers or [""] * len(instructions), edit_token_ids)
    loss, token_states = llm.edit_token_forward(vllm, llm_model, batch, edit_token_ids)
    token_states = token_states.to(next(connector.parameters()).dtype)
    if system == "mgie":
        return connector(token_states), loss, token_states
    features = llm.vision_features(vllm, frames).to(token_states.dtype)
    return connector(token_states, features), loss, token_states


class SiblingPipeline(FrameInputs, DiffusionPipeline):
    """Frame editing by SmartEdit, MGIE or ReasonPix2Pix, depending on the connector it holds."""

    model_cpu_offload_seq = "connector->unet->vae"
    vllm = None
    edit_token_ids: list[int] = []
    generate_answers = False
    # As LegoPipeline: cross-attention K/V once per call, sampling under inference_mode.
    cache_cross_attention = True
    use_inference_mode = True

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, connector):
        super().__init__()
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                              scheduler=scheduler, connector=connector)

    @property
    def system(self) -> str:
        return system_of(self.connector)

    def attach_vllm(self, vllm, generate_answers: bool = False) -> "SiblingPipeline":
        """Use ``vllm`` (its tokenizer must already hold the system's added tokens, see llm.add_edit_tokens)."""
        c = self.connector.config
        if vllm.d_llm != c.d_llm:
            raise InputError(f"the LLM's hidden size {vllm.d_llm} does not match the connector's d_llm {c.d_llm}")
        if self.system != "rp2p":
            names = llm.edit_token_names(self.system, c.num_llm_tokens)
            missing = [n for n in names if n not in vllm.tokenizer.get_vocab()]
            if missing:
                raise ModelLoadError(f"the LLM's tokenizer lacks the {self.system} tokens (e.g. {missing[0]}): "
                                     "it was not trained for this connector")
            self.edit_token_ids = vllm.tokenizer.convert_tokens_to_ids(names)
        self.vllm = vllm
        self.generate_answers = generate_answers
        return self

    def save_pretrained(self, save_directory, **kwargs):
        super().save_pretrained(save_directory, **kwargs)
        if self.vllm is not None:
            self.vllm.save_pretrained(os.path.join(save_directory, VLLM_SUBFOLDER))
        with open(os.path.join(save_directory, SIBLING_FILE), "w") as fh:
            json.dump({"system": self.system, "generate_answers": self.generate_answers}, fh, indent=2)

    def null_condition(self, batch: int, like: SiblingCondition) -> SiblingCondition:
        states = encode_text(self.tokenizer, self.text_encoder, [""]).to(like.states)  # (1, 77, D)
        if states.shape[1:] != like.states.shape[1:]:
            raise ModelLoadError(f"the connector yields {tuple(like.states.shape[1:])} states but the text encoder "
                                 f"{tuple(states.shape[1:])}: the null condition must have the same layout")
        mask = None if like.mask is None else torch.ones_like(like.mask)
        return SiblingCondition(states=states.expand(batch, -1, -1), mask=mask)

    def write_answers(self, frames, instructions: Sequence[str], max_new_tokens: int = 24) -> list[str]:
        """The LLM's own answer before the edit tokens (MGIE's expressive instruction), greedy."""
        return generate_answers(self.vllm, frames, instructions, self.edit_token_ids, max_new_tokens)

    @generation_mode
    def __call__(self, image, instruction: str | Sequence[str], num_inference_steps: int = 100,
                 image_guidance_scale: float = 1.5, guidance_scale: float = 7.5,
                 generator: torch.Generator | None = None, output_type: str = "pil",
                 progress: bool = True) -> LegoPipelineOutput:
        """Edit ``image`` (PIL, list, or (B, 3, H, W) in [-1, 1]) as ``instruction`` says."""
        if self.vllm is None:
            raise InputError(f"this {self.system} pipeline has no LLM attached (attach_vllm or a saved vllm/)")
        if num_inference_steps < 1:
            raise InputError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if output_type not in ("pil", "pt"):
            raise InputError(f"output_type must be 'pil' or 'pt', got {output_type!r}")
        notes: list[str] = []
        pixels = self.prepare_images(image, notes)
        batch = pixels.shape[0]
        instructions = per_image(instruction, batch, "instruction")
        frames = frames_uint8(pixels)
        answers = None
        if self.generate_answers and self.system != "rp2p":
            answers = self.write_answers(frames, instructions)
            notes.extend(f"LLM answer {i}: {a}" for i, a in enumerate(answers))
        cond, _, _ = connector_condition(self.connector, self.vllm, self.vllm.model, frames, instructions, answers,
                                         self.edit_token_ids)
        device, dtype = self._execution_device, self.unet.dtype
        null = self.null_condition(batch, cond)
        image_latents = encode_image_latents(self.vae, pixels.to(device)).to(dtype)  # (B, 4, h, w)
        cond = SiblingCondition(cond.states.to(device, dtype), _on(cond.mask, device),
                                _on(cond.conv_in_residual, device))
        null = SiblingCondition(null.states.to(device, dtype), _on(null.mask, device))
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (batch, self.unet.config.out_channels, *image_latents.shape[-2:])
        latents = randn_latents(shape, generator, device, dtype) * self.scheduler.init_noise_sigma
        timesteps = self.scheduler.timesteps
        batch_parts = guidance_batch(image_latents, cond, null)
        with cached_cross_attention(self.unet, enabled=self.cache_cross_attention):
            for t in self.progress_bar(timesteps) if progress else timesteps:
                eps = guided_noise(self.unet, self.scheduler, latents, t, image_latents, cond, null,
                                   image_guidance_scale, guidance_scale, batch=batch_parts)
                latents = self.scheduler.step(eps, t, latents, **step_kwargs(self.scheduler, generator)).prev_sample
        decoded = self.vae.decode(latents / self.vae.config.scaling_factor).sample
        images = decoded if output_type == "pt" else tensor_to_pil(decoded)
        return LegoPipelineOutput(images=images, notes=notes)


def guidance_batch(image_latents, cond: SiblingCondition, null: SiblingCondition) -> tuple:
    """The step-invariant halves of the 3B guidance batch: image latents [x, x, 0], states [c, ∅, ∅], mask and
    SmartEdit's conv_in residual. Built once per call, so the same C tensor reaches every step (and the
    cross-attention K/V cache, egoframe.models.kv_cache)."""
    images = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])
    states = torch.cat([cond.states, null.states, null.states])  # (3B, L, D)
    mask = None if cond.mask is None else torch.cat([cond.mask, null.mask, null.mask])
    residual = None
    if cond.conv_in_residual is not None:
        zeros = torch.zeros_like(cond.conv_in_residual)
        residual = torch.cat([cond.conv_in_residual, zeros, zeros])  # v' only where the text is kept
    return images, states, mask, residual


def guided_noise(unet, scheduler, latents, t, image_latents, cond: SiblingCondition, null: SiblingCondition,
                 image_guidance_scale: float, guidance_scale: float, batch: tuple | None = None) -> torch.Tensor:
    """Dual-CFG ε for one step; branches (x,c), (x,∅), (∅,∅) in one batch of 3B. ``batch``: :func:`guidance_batch`.

    ε = ε(∅,∅) + s_x·(ε(x,∅) − ε(∅,∅)) + s_c·(ε(x,c) − ε(x,∅))   (Brooks et al. 2023, Eq. 3)
    """
    images, states, mask, residual = batch or guidance_batch(image_latents, cond, null)
    scaled = scheduler.scale_model_input(torch.cat([latents] * 3), t)
    model_in = torch.cat([scaled, images], dim=1)  # (3B, 8, h, w)
    with conv_in_residual(unet, residual):
        eps = unet(model_in, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
    eps_text, eps_image, eps_uncond = eps.chunk(3)
    return dual_cfg(eps_text, eps_image, eps_uncond, image_guidance_scale, guidance_scale)


def _on(tensor, device):
    return None if tensor is None else tensor.to(device)


def load_sibling_pipeline(path: str, device: str | None = None) -> SiblingPipeline:
    """A saved sibling model directory (``egoframe sibling train`` output) with its LLM."""
    info_file = os.path.join(path, SIBLING_FILE)
    if not os.path.isfile(info_file):
        raise ModelLoadError(f"{path} has no {SIBLING_FILE}: not a sibling model (SmartEdit/MGIE/ReasonPix2Pix)")
    with open(info_file) as fh:
        info = json.load(fh)
    pipe = SiblingPipeline(**_load_components(path, info.get("system", "")))
    pipe.attach_vllm(load_vllm(os.path.join(path, VLLM_SUBFOLDER)), info.get("generate_answers", False))
    if device:
        pipe.to(device)
        pipe.vllm.model.to(device)
    return pipe


def _load_components(path: str, system: str) -> dict:
    """Each component from its subfolder, by the class model_index.json names.

    Not DiffusionPipeline.from_pretrained: diffusers resolves a custom component class as an attribute of
    the top-level package ("egoframe"), which exports LEGO's classes only; here the connector class comes
    from the recorded system name instead. Weights are safetensors only (unless EGOFRAME_ALLOW_PICKLE=1).
    """
    import importlib

    index_file = os.path.join(path, "model_index.json")
    if not os.path.isfile(index_file):
        raise ModelLoadError(f"{path} has no model_index.json")
    with open(index_file) as fh:
        index = json.load(fh)
    weighted = ("connector", "vae", "text_encoder", "unet")
    weights = weights_kwargs(*(os.path.join(path, name) for name in weighted))
    try:
        parts = {"connector": connector_class(system).from_pretrained(os.path.join(path, "connector"), **weights)}
        for name in ("vae", "text_encoder", "tokenizer", "unet", "scheduler"):
            library, class_name = index[name]
            if library not in ("diffusers", "transformers"):
                raise ModelLoadError(f"{path}: component {name} is a {library}.{class_name}, not diffusers/transformers")
            cls = getattr(importlib.import_module(library), class_name)
            kwargs = weights if name in weighted else {}  # tokenizer, scheduler: no weights
            parts[name] = cls.from_pretrained(os.path.join(path, name), **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"cannot load sibling model {path}: {first}") from None
    return parts
