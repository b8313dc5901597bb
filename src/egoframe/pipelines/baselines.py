"""The baselines of LEGO's Table 1 in egoframe's framework: IP2P, SDEdit and ProxEdit.

- IP2P: a :class:`~egoframe.pipelines.lego.LegoPipeline` trained with ``model.ablation: ip2p`` (CLIP text of
  the action label only); nothing to add here.
- SDEdit (Meng et al., ICLR 2022): encode the input frame, noise its latent to strength t, and denoise with a
  text-to-image model fine-tuned on the same target frames (``model.mode: t2i``: a 4-channel UNet, no image
  channels), with ordinary classifier-free guidance ε = ε(∅) + s·(ε(c) − ε(∅)) (Ho & Salimans 2022).
- ProxEdit: proximal guidance (Han et al., "Improving Tuning-Free Real Image Editing with Proximal
  Guidance", WACV 2024) applied to the InstructPix2Pix-style guidance of an IP2P model: the text guidance
  difference d = ε(x,c) − ε(x,∅) is passed through the proximal operator of an ℓ1 (soft threshold) or ℓ0
  (hard threshold) penalty whose threshold τ is the ``quantile`` of |d| per sample and step, so that only
  the strongest edit directions survive and the rest of the frame follows the image-conditioned branch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from egoframe.diffusion import cfg, encode_image_latents, randn_latents, step_kwargs
from egoframe.errors import InputError
from egoframe.models.kv_cache import cached_cross_attention
from egoframe.pipelines.lego import LegoPipeline, LegoPipelineOutput, check_actions, generation_mode, per_image

METHODS = ("lego", "ip2p", "sdedit", "proxedit")
PROX_MODES = ("soft", "hard")
PROX_TERMS = ("text", "both")


def proximal_guidance(difference: torch.Tensor, quantile: float, mode: str = "soft") -> torch.Tensor:
    """prox of τ·‖·‖₁ (soft: sign(d)·max(|d| − τ, 0)) or of the ℓ0 penalty (hard: d·[|d| ≥ τ]).

    τ is the ``quantile`` of |d| over each sample's elements (Han et al. 2024, Sec. 3: a per-step threshold
    relative to the guidance term's own magnitude). difference: (B, C, h, w). Hard with quantile 0 returns d."""
    if not 0.0 <= quantile < 1.0:
        raise InputError(f"prox quantile must be in [0, 1), got {quantile}")
    if mode not in PROX_MODES:
        raise InputError(f"prox mode must be one of {', '.join(PROX_MODES)}, got {mode!r}")
    magnitude = difference.abs()
    tau = torch.quantile(magnitude.flatten(1).float(), quantile, dim=1).to(difference.dtype)
    tau = tau.view(-1, *([1] * (difference.dim() - 1)))  # (B, 1, 1, 1)
    if mode == "soft":
        return torch.sign(difference) * torch.clamp(magnitude - tau, min=0)
    return difference * (magnitude >= tau)


class ProxEditPipeline(LegoPipeline):
    """An IP2P/LEGO model sampled with proximal guidance on its guidance difference(s)."""

    prox_quantile: float = 0.7
    prox_mode: str = "soft"
    prox_terms: str = "text"

    @classmethod
    def from_lego(cls, pipe: LegoPipeline) -> "ProxEditPipeline":
        out = cls(vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, unet=pipe.unet,
                  scheduler=pipe.scheduler, conditioning=pipe.conditioning)
        if pipe.vllm is not None:
            out.attach_vllm(pipe.vllm, pipe.vllm_extraction)
        return out

    def combine_guidance(self, eps_text, eps_image, eps_uncond, image_guidance_scale, guidance_scale):
        text_term = proximal_guidance(eps_text - eps_image, self.prox_quantile, self.prox_mode)
        image_term = eps_image - eps_uncond
        if self.prox_terms == "both":
            image_term = proximal_guidance(image_term, self.prox_quantile, self.prox_mode)
        return eps_uncond + image_guidance_scale * image_term + guidance_scale * text_term

    @generation_mode
    def __call__(self, *args, prox_quantile: float = 0.7, prox_mode: str = "soft", prox_terms: str = "text",
                 **kwargs) -> LegoPipelineOutput:
        proximal_guidance(torch.zeros(1, 1), prox_quantile, prox_mode)  # validates before any work
        if prox_terms not in PROX_TERMS:
            raise InputError(f"prox terms must be one of {', '.join(PROX_TERMS)}, got {prox_terms!r}")
        self.prox_quantile, self.prox_mode, self.prox_terms = prox_quantile, prox_mode, prox_terms
        return super().__call__(*args, **kwargs)


class SDEditPipeline(LegoPipeline):
    """A text-to-image model (4-channel UNet) + SDEdit sampling from the noised input frame.

    Shares LegoPipeline's parts (text encoder, conditioning with the label or description, VAE); only the
    UNet has no image channels. Saved/loaded like any egoframe model (model_index.json names this class).
    """

    conditions_on_image = False

    @generation_mode
    def __call__(
        self,
        image,
        action: str | Sequence[str],
        description: str | Sequence[str | None] | None = None,
        strength: float = 0.6,
        num_inference_steps: int = 100,
        guidance_scale: float = 7.5,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        long_text: str = "truncate",
        progress: bool = True,
    ) -> LegoPipelineOutput:
        """SDEdit: start at timestep ≈ strength·T from the noised input latent, denoise with text CFG.

        strength 1.0 ignores the input (plain text-to-image); small strengths keep more of it.
        """
        if not 0.0 < strength <= 1.0:
            raise InputError(f"strength must be in (0, 1], got {strength}")
        if num_inference_steps < 1 or num_images_per_prompt < 1:
            raise InputError("num_inference_steps and num_images_per_prompt must be >= 1")
        if output_type not in ("pil", "pt", "np"):
            raise InputError(f"output_type must be 'pil', 'pt' or 'np', got {output_type!r}")
        notes: list[str] = []
        pixels = self.prepare_images(image, notes)  # (B, 3, R, R)
        batch = pixels.shape[0]
        actions = check_actions(action, batch)
        descriptions = per_image(description, batch, "description") if description is not None else [None] * batch
        texts = self.condition_texts(actions, descriptions)
        device, dtype = self._execution_device, self.unet.dtype
        cond, cond_mask = self.encode_condition(texts, None, None, None, drop=False, long_text=long_text)
        null, null_mask = self.encode_condition(texts, None, None, None, drop=True, long_text=long_text)
        z0 = encode_image_latents(self.vae, pixels.to(device)).to(dtype) * self.vae.config.scaling_factor
        n = num_images_per_prompt
        if n > 1:
            cond, null, z0 = (x.repeat_interleave(n, dim=0) for x in (cond, null, z0))

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        skip = num_inference_steps - min(max(int(round(num_inference_steps * strength)), 1), num_inference_steps)
        timesteps = self.scheduler.timesteps[skip:]
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(skip)
        noise = randn_latents(z0.shape, generator, device, dtype)
        latents = self.scheduler.add_noise(z0, noise, timesteps[:1].repeat(z0.shape[0]))
        iterator = self.progress_bar(timesteps) if progress else timesteps
        stepping = step_kwargs(self.scheduler, generator)
        states = torch.cat([cond, null])  # (2B, L, D)
        mask = None if cond_mask is None else torch.cat([cond_mask, null_mask])
        with cached_cross_attention(self.unet, enabled=self.cache_cross_attention):
            for t in iterator:
                model_in = self.scheduler.scale_model_input(torch.cat([latents] * 2), t)
                eps_cond, eps_null = self.unet(model_in, t, encoder_hidden_states=states,
                                               encoder_attention_mask=mask).sample.chunk(2)
                eps = cfg(eps_cond, eps_null, guidance_scale)
                latents = self.scheduler.step(eps, t, latents, **stepping).prev_sample
        return LegoPipelineOutput(images=self.decode_latents(latents, output_type), notes=notes)


def as_method(pipe: LegoPipeline, method: str) -> LegoPipeline:
    """Check that a loaded model can run ``method`` and wrap it for it (ProxEdit: proximal guidance)."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    is_t2i = isinstance(pipe, SDEditPipeline)
    if method == "sdedit":
        if not is_t2i:
            raise InputError("--method sdedit needs a text-to-image model (trained with model.mode: t2i)")
        return pipe
    if is_t2i:
        raise InputError(f"--method {method} needs an image-conditioned model; this is a text-to-image (SDEdit) model")
    c = pipe.conditioning.config
    if method in ("ip2p", "proxedit") and (c.text_source != "label" or pipe.conditioning.needs_vllm):
        raise InputError(f"--method {method} needs a model trained on action labels only (model.ablation: ip2p)")
    if method == "proxedit":
        return ProxEditPipeline.from_lego(pipe)
    return pipe


def method_kwargs(method: str, image_guidance_scale: float, guidance_scale: float, strength: float,
                  prox_quantile: float, prox_mode: str, guidance_interval=(0.0, 1.0)) -> dict:
    """The sampling arguments each method's pipeline takes (SDEdit has no guidance interval)."""
    if method == "sdedit":
        return dict(guidance_scale=guidance_scale, strength=strength)
    kwargs = dict(image_guidance_scale=image_guidance_scale, guidance_scale=guidance_scale,
                  guidance_interval=tuple(guidance_interval))
    if method == "proxedit":
        kwargs.update(prox_quantile=prox_quantile, prox_mode=prox_mode)
    return kwargs


__all__ = ["METHODS", "ProxEditPipeline", "SDEditPipeline", "as_method", "method_kwargs", "proximal_guidance"]
