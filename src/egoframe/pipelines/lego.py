"""LEGO inference: input frame + action (+ enriched description, + VLLM embeddings) -> action frame.

The pipeline only wires parts together (diffusers style): ψ is the CLIP text encoder, the conditioning
module builds C = [ψ(R); σ(H_i); π(μ(H_t))], the 8-channel UNet denoises concat(noisy latent, input
latent), any diffusers scheduler steps. Guidance is InstructPix2Pix's dual classifier-free guidance
(Brooks et al. 2023, Eq. 3), used unchanged by LEGO (papers/001 Sec. 3.3):

    ε = ε(∅,∅) + s_x·(ε(x,∅) − ε(∅,∅)) + s_c·(ε(x,c) − ε(x,∅))
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers import KarrasDiffusionSchedulers  # noqa: F401  (any diffusers scheduler works)
from diffusers.utils import BaseOutput
from PIL import Image

from egoframe.diffusion import (
    FrameInputs,
    check_interval,
    dual_cfg,
    encode_image_latents,
    is_guided,
    randn_latents,
    step_kwargs,
)
from egoframe.errors import InputError
from egoframe.models.conditioning import LegoConditioning
from egoframe.models.kv_cache import cached_cross_attention
from egoframe.models.text import encode_text
from egoframe.models.tiny import tiny_components
from egoframe.utils.images import tensor_to_pil
from egoframe.vllm.embeddings import ExtractionConfig, VllmEmbeddings, extract_vllm_embeddings

logger = logging.getLogger(__name__)

MAX_ACTION_CHARS = 2000


@dataclass
class LegoPipelineOutput(BaseOutput):
    images: list[Image.Image] | torch.Tensor
    notes: list[str]


def generation_mode(call):
    """Run a pipeline's ``__call__`` under ``torch.inference_mode`` (no autograd bookkeeping at all: measured
    3-4 % faster than ``no_grad`` per tiny-UNet step on CPU, docs/performance.md) and hand back ordinary
    tensors: a ``pt`` output is cloned outside inference mode, so callers may still use it in autograd or
    modify it in place."""

    @functools.wraps(call)
    def wrapper(self, *args, **kwargs):
        with torch.inference_mode(getattr(self, "use_inference_mode", True)), torch.no_grad():
            out = call(self, *args, **kwargs)
        if isinstance(out.images, torch.Tensor) and out.images.is_inference():
            out.images = out.images.clone()
        return out

    return wrapper


VLLM_SUBFOLDER = "vllm"
VLLM_EXTRACTION_FILE = "extraction.json"
SAMPLING_FILE = "sampling.json"
# LEGO's published sampling, used unless a model directory recommends its own: 100 Euler-ancestral steps,
# text scale s_c 7.5 and image scale s_x 1.5 as the public code runs it (BolinLai/LEGO configs/generate_*.yaml:
# scales_txt [7.5], scales_img [1.5]; InstructPix2Pix's defaults too). The supplement's sentence (papers/000
# Sec. F.3, "s_x = 7.5 and s_c = 1.5") swaps the two; the released results come from the code's values.
PAPER_SAMPLING = {"num_inference_steps": 100, "image_guidance_scale": 1.5, "guidance_scale": 7.5,
                  "guidance_interval": (0.0, 1.0)}


def choose_sampling(recommended: dict | None, given: dict) -> dict:
    """The sampling settings to use: each given (not None) value, else the model's recommendation
    (sampling.json), else the paper's (:data:`PAPER_SAMPLING`); keys are PAPER_SAMPLING's."""
    shipped = {**PAPER_SAMPLING, **(recommended or {})}
    out = {k: (given[k] if given.get(k) is not None else shipped[k]) for k in PAPER_SAMPLING}
    if isinstance(out["guidance_interval"], list):  # as sampling.json holds it; checked where it is used
        out["guidance_interval"] = tuple(out["guidance_interval"])
    for key in ("image_guidance_scale", "guidance_scale"):
        if not math.isfinite(float(out[key])):  # nan / inf would give an all-black frame and exit 0
            raise InputError(f"{key} must be finite, got {out[key]}")
    return out


class LegoPipeline(FrameInputs, DiffusionPipeline):
    """LEGO's frame generator. An optional VLLM (:meth:`attach_vllm`) writes the description and the
    VLLM embeddings on the fly when the caller gives only a frame and an action; it is saved beside the
    diffusers components in ``vllm/`` (llava-hf layout)."""

    model_cpu_offload_seq = "text_encoder->conditioning->unet->vae"
    vllm = None  # egoframe.vllm.model.Vllm | None
    vllm_extraction = None  # egoframe.vllm.embeddings.ExtractionConfig | None
    # Sampling settings the model's trainer recommends (sampling.json; small models want far lower guidance
    # than the public code's text 7.5 / image 1.5). Callers fall back to PAPER_SAMPLING for keys it lacks.
    sampling_defaults: dict = {}
    # VLLM results kept per (frame bytes, action, extraction config), so that a sweep of seeds or guidance
    # scales over one input runs the VLLM (by far the costliest part at LLaVA size) once. 0 turns it off.
    vllm_cache_size = 64
    # Cross-attention K/V of the fixed condition computed once per call, not once per step (bit-identical
    # output; egoframe.models.kv_cache). False restores the reference pipelines' per-step recomputation.
    cache_cross_attention = True
    # __call__ runs under torch.inference_mode (False: torch.no_grad, as the reference pipelines do).
    use_inference_mode = True

    def __init__(self, vae, text_encoder, tokenizer, unet, scheduler, conditioning: LegoConditioning):
        super().__init__()
        self.register_modules(
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            unet=unet,
            scheduler=scheduler,
            conditioning=conditioning,
        )

    def attach_vllm(self, vllm, extraction=None) -> "LegoPipeline":
        """Use ``vllm`` for descriptions and embeddings when the caller gives none."""
        c = self.conditioning.config
        if self.conditioning.needs_vllm and vllm.d_llm != c.d_llm:
            raise InputError(f"the VLLM's hidden size {vllm.d_llm} does not match the conditioning's d_llm {c.d_llm}")
        if c.use_image_tokens and vllm.n_image_tokens != c.num_image_tokens:
            raise InputError(
                f"the VLLM yields {vllm.n_image_tokens} image tokens, the conditioning expects {c.num_image_tokens}"
            )
        self.vllm = vllm
        self.vllm_extraction = extraction or ExtractionConfig(n_text_tokens=c.num_text_tokens)
        self.clear_vllm_cache()
        return self

    def clear_vllm_cache(self) -> None:
        """Forget cached VLLM results; call it after changing the attached VLLM's weights in place."""
        from collections import OrderedDict

        self._vllm_results = OrderedDict()

    def save_pretrained(self, save_directory, **kwargs):
        nhwc = _is_channels_last(self.unet)
        if nhwc:  # safetensors stores the ordinary layout
            self.enable_channels_last(False)
        try:
            super().save_pretrained(save_directory, **kwargs)
        finally:
            if nhwc:
                self.enable_channels_last(True)
        if self.sampling_defaults:
            import json
            import os

            with open(os.path.join(save_directory, SAMPLING_FILE), "w") as fh:
                json.dump(self.sampling_defaults, fh, indent=2)
        if self.vllm is not None:
            import json
            import os

            target = os.path.join(save_directory, VLLM_SUBFOLDER)
            self.vllm.save_pretrained(target)
            with open(os.path.join(target, VLLM_EXTRACTION_FILE), "w") as fh:
                json.dump(self.vllm_extraction.to_dict(), fh, indent=2)

    def enable_channels_last(self, enabled: bool = True) -> "LegoPipeline":
        """Keep the UNet's and VAE's weights in NHWC (channels_last) memory format, or back in NCHW.

        Same maths, other kernels: on CPU it made a tiny-UNet step 8-13 % faster (docs/performance.md); GPUs
        with tensor cores usually gain too. Saved weights are written in the ordinary layout either way.
        """
        layout = torch.channels_last if enabled else torch.contiguous_format
        self.unet.to(memory_format=layout)
        self.vae.to(memory_format=layout)
        return self

    # ------------------------------------------------------------------ parts of __call__
    # vae_scale_factor, resolution and prepare_images come from FrameInputs (egoframe.diffusion.inputs)

    def condition_texts(self, actions: Sequence[str], descriptions: Sequence[str | None]) -> list[str]:
        """The text ψ reads: the enriched description, or the bare label for label-trained models."""
        if self.conditioning.config.text_source == "label":
            return list(actions)
        texts = []
        for action, description in zip(actions, descriptions):
            if description:
                texts.append(description)
            else:
                logger.warning(
                    "no enriched description for %r: this model was trained on descriptions, using the label",
                    action,
                )
                texts.append(action)
        return texts

    def encode_condition(
        self,
        texts: Sequence[str],
        vllm_image_tokens: torch.Tensor | None,
        vllm_text_tokens: torch.Tensor | None,
        vllm_text_mask: torch.Tensor | None,
        drop: bool,
        long_text: str = "truncate",
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """C for real texts (drop=False) or the null condition (drop=True: empty prompt, zeroed VLLM tokens)."""
        batch = len(texts)
        prompts = [""] * batch if drop else list(texts)
        states = encode_text(self.tokenizer, self.text_encoder, prompts, long_text=long_text)  # (B, 77, D)
        states = states.to(dtype=self.unet.dtype)
        drop_mask = torch.full((batch,), drop, dtype=torch.bool, device=states.device)
        return self.conditioning(
            states,
            vllm_image_tokens=_to(vllm_image_tokens, states),
            vllm_text_tokens=_to(vllm_text_tokens, states),
            vllm_text_mask=_to(vllm_text_mask, states),
            drop_vllm=drop_mask if self.conditioning.needs_vllm else None,
        )

    def null_condition(self, batch: int, long_text: str = "truncate") -> tuple[torch.Tensor, torch.Tensor | None]:
        """The null condition ∅ for ``batch`` rows. Every row is the same (empty prompt, zeroed VLLM tokens,
        all positions visible), so one row is encoded and expanded: ψ and π run once, not once per image."""
        vllm = [None, None, None]
        c = self.conditioning.config
        width = c.d_llm
        if c.use_image_tokens:
            vllm[0] = torch.zeros(1, c.num_image_tokens, width, device=self._execution_device)
        if c.use_text_tokens:
            vllm[1] = torch.zeros(1, c.num_text_tokens, width, device=self._execution_device)
        null, mask = self.encode_condition([""], *vllm, drop=True, long_text=long_text)  # (1, L, D)
        return null.expand(batch, -1, -1), None if mask is None else mask.expand(batch, -1)

    def branch_inputs(self, image_latents, cond, cond_mask, null, null_mask):
        """The fixed halves of the batched guidance input: image latents [x, x, 0], states [c, ∅, ∅], mask.

        They do not change between steps, so __call__ builds them once instead of once per step.
        """
        images = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)])  # (3B, 4, h, w)
        states = torch.cat([cond, null, null])  # (3B, L, D)
        mask = None if cond_mask is None else torch.cat([cond_mask, null_mask, null_mask])
        return images, states, mask

    def predict_noise(
        self,
        latents: torch.Tensor,
        t,
        image_latents: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor | None,
        null: torch.Tensor,
        null_mask: torch.Tensor | None,
        image_guidance_scale: float,
        guidance_scale: float,
        batch_branches: bool = True,
        guided: bool = True,
        branches: tuple | None = None,
    ) -> torch.Tensor:
        """Guided ε for one step. The three branches (x,c), (x,∅), (∅,∅) run as one batch by default.

        guided=False returns the conditional ε(x,c) alone (one UNet batch instead of three), which is what
        the guidance formula gives with both scales at 1. ``branches``: :meth:`branch_inputs`, precomputed.
        """
        if not guided:
            model_in = torch.cat([self.scheduler.scale_model_input(latents, t), image_latents], dim=1)
            return self.unet(model_in, t, encoder_hidden_states=cond, encoder_attention_mask=cond_mask).sample
        if batch_branches:
            images, states, mask = branches or self.branch_inputs(image_latents, cond, cond_mask, null, null_mask)
            scaled = self.scheduler.scale_model_input(torch.cat([latents] * 3), t)
            model_in = torch.cat([scaled, images], dim=1)  # (3B, 8, h, w)
            eps = self.unet(model_in, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample
            eps_text, eps_image, eps_uncond = eps.chunk(3)
        else:
            zeros = torch.zeros_like(image_latents)
            outs = []
            for states, mask, img in ((cond, cond_mask, image_latents), (null, null_mask, image_latents),
                                      (null, null_mask, zeros)):
                scaled = self.scheduler.scale_model_input(latents, t)
                model_in = torch.cat([scaled, img], dim=1)
                outs.append(self.unet(model_in, t, encoder_hidden_states=states, encoder_attention_mask=mask).sample)
            eps_text, eps_image, eps_uncond = outs
        return self.combine_guidance(eps_text, eps_image, eps_uncond, image_guidance_scale, guidance_scale)

    def combine_guidance(self, eps_text, eps_image, eps_uncond, image_guidance_scale, guidance_scale):
        """ε = ε(∅,∅) + s_x·(ε(x,∅) − ε(∅,∅)) + s_c·(ε(x,c) − ε(x,∅)); samplers such as ProxEdit override it."""
        return dual_cfg(eps_text, eps_image, eps_uncond, image_guidance_scale, guidance_scale)

    # ------------------------------------------------------------------ __call__
    @generation_mode
    def __call__(
        self,
        image,
        action: str | Sequence[str],
        description: str | Sequence[str | None] | None = None,
        vllm_image_tokens: torch.Tensor | None = None,
        vllm_text_tokens: torch.Tensor | None = None,
        vllm_text_mask: torch.Tensor | None = None,
        num_inference_steps: int | None = None,
        image_guidance_scale: float | None = None,
        guidance_scale: float | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        long_text: str = "truncate",
        batch_branches: bool = True,
        progress: bool = True,
        guidance_interval: tuple[float, float] | None = None,
        strength: float = 1.0,
    ) -> LegoPipelineOutput:
        """Generate the frame(s) showing ``action`` carried out in ``image``.

        image:  a PIL image, a list of them, or a (B, 3, H, W) tensor in [-1, 1]; resized to the
                model's square resolution (stated in ``notes``).
        action: one label per image ("cut tomato"); a single string is used for every image.
        description: the enriched description(s) ψ reads (ignored by label-trained models).
        vllm_*: precomputed VLLM embeddings H_i (B, n_img, d_llm), H_t (B, N, d_llm) and mask (B, N),
                required when the model conditions on them.
        guidance_scale is the text scale s_c, image_guidance_scale the image scale s_x (LEGO's public code: 7.5 / 1.5).
        num_inference_steps, the scales and guidance_interval left at None take the model's recommended
        sampling (``sampling.json``, :attr:`sampling_defaults`), else the public code's (100 steps, text 7.5 /
        image 1.5, every step guided): a small model wants far lower guidance than SD-1.5 does.
        guidance_interval: (lo, hi) fractions of the sampling steps that use guidance; step i of n is guided
                when lo <= i / n < hi, the others use the conditional prediction ε(x,c) alone and cost a third
                of a guided step (guidance limited to an interval: Kynkäänniemi et al., NeurIPS 2024).
        strength: 1.0 starts from pure noise (the papers); below 1 the start is the input frame's latent noised
                to that fraction of the schedule and only the last ``strength`` of the steps run (SDEdit's
                initialisation, Meng et al., ICLR 2022, applied to the edit model): the input's colours and
                layout survive the high-noise steps where a small model loses them.
        """
        notes: list[str] = []
        sampling = self.resolve_sampling(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                         image_guidance_scale=image_guidance_scale,
                                         guidance_interval=guidance_interval)
        num_inference_steps, guidance_scale = sampling["num_inference_steps"], sampling["guidance_scale"]
        image_guidance_scale, guidance_interval = sampling["image_guidance_scale"], sampling["guidance_interval"]
        if num_inference_steps < 1:
            raise InputError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if num_images_per_prompt < 1:
            raise InputError(f"num_images_per_prompt must be >= 1, got {num_images_per_prompt}")
        if output_type not in ("pil", "pt", "np"):
            raise InputError(f"output_type must be 'pil', 'pt' or 'np', got {output_type!r}")
        lo, hi = check_interval(guidance_interval)
        if not 0.0 < strength <= 1.0:
            raise InputError(f"strength must be in (0, 1], got {strength}")
        pixels = self.prepare_images(image, notes)  # (B, 3, R, R)
        batch = pixels.shape[0]
        actions = check_actions(action, batch)
        descriptions = per_image(description, batch, "description") if description is not None else [None] * batch
        if self.vllm is not None and vllm_image_tokens is None and vllm_text_tokens is None:
            embeddings = self.run_vllm(pixels, actions)
            if self.conditioning.needs_vllm:
                vllm_image_tokens, vllm_text_tokens = embeddings.image_tokens, embeddings.text_tokens
                vllm_text_mask = embeddings.text_mask
            # LEGO's description at inference is the VLLM's answer (papers/001 Sec. 3.2).
            descriptions = [d or generated for d, generated in zip(descriptions, embeddings.description)]
            notes.extend(f"VLLM description {i}: {d}" for i, d in enumerate(embeddings.description))
        texts = self.condition_texts(actions, descriptions)
        vllm = self._check_vllm(batch, vllm_image_tokens, vllm_text_tokens, vllm_text_mask)

        device, dtype = self._execution_device, self.unet.dtype
        cond, cond_mask = self.encode_condition(texts, *vllm, drop=False, long_text=long_text)
        null, null_mask = self.null_condition(batch, long_text)
        image_latents = encode_image_latents(self.vae, pixels.to(device)).to(dtype)  # (B, 4, h, w)

        n = num_images_per_prompt
        if n > 1:
            cond, null, image_latents = (x.repeat_interleave(n, dim=0) for x in (cond, null, image_latents))
            cond_mask, null_mask = (None if m is None else m.repeat_interleave(n, dim=0) for m in (cond_mask, null_mask))

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (batch * n, self.unet.config.out_channels, *image_latents.shape[-2:])
        timesteps = self.scheduler.timesteps
        if strength < 1.0:
            skip = min(int(round(num_inference_steps * (1.0 - strength))), num_inference_steps - 1)
            skip *= getattr(self.scheduler, "order", 1)
            timesteps = timesteps[skip:]
            if hasattr(self.scheduler, "set_begin_index"):
                self.scheduler.set_begin_index(skip)
            noise = randn_latents(shape, generator, device, dtype)
            latents = self.scheduler.add_noise(image_latents, noise, timesteps[:1].repeat(shape[0]))
        else:
            latents = randn_latents(shape, generator, device, dtype) * self.scheduler.init_noise_sigma
        branches = self.branch_inputs(image_latents, cond, cond_mask, null, null_mask) if batch_branches else None
        stepping = step_kwargs(self.scheduler, generator)
        iterator = self.progress_bar(timesteps) if progress else timesteps
        with cached_cross_attention(self.unet, enabled=self.cache_cross_attention):
            for i, t in enumerate(iterator):
                eps = self.predict_noise(
                    latents, t, image_latents, cond, cond_mask, null, null_mask,
                    image_guidance_scale, guidance_scale, batch_branches=batch_branches,
                    guided=is_guided(i, len(timesteps), (lo, hi)), branches=branches,
                )
                latents = self.scheduler.step(eps, t, latents, **stepping).prev_sample

        images = self.decode_latents(latents, output_type)
        if output_type == "pil":
            images = restore_sizes(images, input_sizes(image), n, notes)
        return LegoPipelineOutput(images=images, notes=notes)

    def resolve_sampling(self, **given) -> dict:
        """Sampling settings: the given ones, then the model's sampling.json, then the paper's."""
        return choose_sampling(self.sampling_defaults, given)

    def decode_latents(self, latents: torch.Tensor, output_type: str):
        """VAE-decode (B, 4, h, w) latents into PIL images, a uint8 (B, R, R, 3) array or a [-1, 1] tensor."""
        decoded = self.vae.decode(latents / self.vae.config.scaling_factor).sample  # (B, 3, R, R)
        if output_type == "pt":
            return decoded
        if output_type == "np":
            return ((decoded.float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return tensor_to_pil(decoded)

    def run_vllm(self, pixels: torch.Tensor, actions: Sequence[str]):
        """The attached VLLM's embeddings and descriptions for (B, 3, R, R) frames in [-1, 1].

        Results are cached per (frame bytes, action, extraction config): only pairs not seen before reach the
        VLLM, in one batch, so generating many samples for one input runs it once.
        """
        import hashlib
        import json

        frames = ((pixels.float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # (B, 3, R, R)
        if not self.vllm_cache_size:
            return extract_vllm_embeddings(self.vllm, list(frames), list(actions), self.vllm_extraction)
        if getattr(self, "_vllm_results", None) is None:
            self.clear_vllm_cache()
        config = json.dumps(self.vllm_extraction.to_dict(), sort_keys=True)
        keys = []
        for frame, action in zip(frames, actions):
            digest = hashlib.sha256(frame.numpy().tobytes())
            digest.update(repr((tuple(frame.shape), action, config)).encode())
            keys.append(digest.hexdigest())
        todo, queued = [], set()
        for i, k in enumerate(keys):  # each unseen (frame, action) once, even if the batch repeats it
            if k not in self._vllm_results and k not in queued:
                queued.add(k)
                todo.append(i)
        if todo:
            fresh = extract_vllm_embeddings(self.vllm, [frames[i] for i in todo], [actions[i] for i in todo],
                                            self.vllm_extraction)
            for row, i in enumerate(todo):
                self._vllm_results[keys[i]] = VllmEmbeddings(  # clones: a row must not pin its whole batch
                    fresh.image_tokens[row:row + 1].clone(), fresh.text_tokens[row:row + 1].clone(),
                    fresh.text_mask[row:row + 1].clone(), [fresh.description[row]])
        for k in keys:
            self._vllm_results.move_to_end(k)
        while len(self._vllm_results) > max(self.vllm_cache_size, len(set(keys))):
            self._vllm_results.popitem(last=False)  # least recently used
        return VllmEmbeddings.cat([self._vllm_results[k] for k in keys])

    def _check_vllm(self, batch, image_tokens, text_tokens, text_mask):
        c = self.conditioning.config
        missing = []
        if c.use_image_tokens and image_tokens is None:
            missing.append("vllm_image_tokens")
        if c.use_text_tokens and text_tokens is None:
            missing.append("vllm_text_tokens")
        if missing:
            raise InputError(
                f"this model conditions on VLLM embeddings; provide {', '.join(missing)} "
                "(from `egoframe vllm embed`) or use a model trained without them"
            )
        for name, tensor in (("vllm_image_tokens", image_tokens), ("vllm_text_tokens", text_tokens), ("vllm_text_mask", text_mask)):
            if tensor is not None and tensor.shape[0] != batch:
                raise InputError(f"{name} has batch size {tensor.shape[0]}, but {batch} images were given")
        return (
            image_tokens if c.use_image_tokens else None,
            text_tokens if c.use_text_tokens else None,
            text_mask if c.use_text_tokens else None,
        )


def input_sizes(image) -> list[tuple[int, int]] | None:
    """(width, height) of each PIL input; None for a tensor input (its outputs stay at the model's size)."""
    if isinstance(image, Image.Image):
        return [image.size]
    if isinstance(image, (list, tuple)) and all(isinstance(im, Image.Image) for im in image):
        return [im.size for im in image]
    return None


def restore_sizes(images: list[Image.Image], sizes: list[tuple[int, int]] | None, per_input: int,
                  notes: list[str]) -> list[Image.Image]:
    """PIL outputs back at their input's size (bicubic), with a note for each one resized."""
    if sizes is None:
        return images
    out = []
    for k, im in enumerate(images):
        size = sizes[k // per_input]
        if im.size != size:
            if k % per_input == 0:
                notes.append(f"output {k // per_input}: made at {im.size[0]}x{im.size[1]}, resized back to the "
                             f"input's {size[0]}x{size[1]}")
            im = im.resize(size, Image.Resampling.BICUBIC)
        out.append(im)
    return out


def _is_channels_last(module: torch.nn.Module) -> bool:
    return any(p.dim() == 4 and not p.is_contiguous() and p.is_contiguous(memory_format=torch.channels_last)
               for p in module.parameters())


def check_actions(action, batch: int) -> list[str]:
    """One non-empty, bounded action label per image (every sampler validates the same way)."""
    actions = per_image(action, batch, "action")
    for a in actions:
        if not isinstance(a, str) or not a.strip():
            raise InputError("action text is empty: give the action to carry out, e.g. 'cut tomato'")
        if len(a) > MAX_ACTION_CHARS:
            raise InputError(f"action text is {len(a)} characters; at most {MAX_ACTION_CHARS} are accepted")
    return actions


def per_image(value, batch: int, name: str) -> list:
    if isinstance(value, str) or value is None:
        return [value] * batch
    values = list(value)
    if len(values) == 1:
        return values * batch
    if len(values) != batch:
        raise InputError(f"got {len(values)} {name}s for {batch} images")
    return values


def _to(tensor: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device=like.device)


def np_images(output: LegoPipelineOutput) -> np.ndarray:
    return np.stack([np.asarray(im) for im in output.images])


def tiny_pipeline(config=None, ablation: str = "lego", seed: int = 0, **conditioning) -> LegoPipeline:
    """A LEGO pipeline of tiny random-weight components (:func:`egoframe.models.tiny.tiny_components`): the
    stand-in for tests and for an installation without the shipped model."""
    return LegoPipeline(**tiny_components(config, ablation=ablation, seed=seed, **conditioning))
