"""Sampling helpers shared by every pipeline: the input frame's latents, the initial noise, scheduler steps."""

from __future__ import annotations

import inspect

import torch


def encode_image_latents(vae, images: torch.Tensor) -> torch.Tensor:
    """VAE latents of the input frames, the mode and unscaled, as InstructPix2Pix conditions on them.

    Shared by training and inference so both feed the UNet the same thing. images: (B, 3, H, W) in [-1, 1].
    """
    return vae.encode(images.to(device=vae.device, dtype=vae.dtype)).latent_dist.mode()


def randn_latents(shape, generator, device, dtype) -> torch.Tensor:
    """Gaussian noise of ``shape`` from ``generator`` (one generator, or one per batch item, as diffusers takes)."""
    from diffusers.utils.torch_utils import randn_tensor

    return randn_tensor(shape, generator=generator, device=device, dtype=dtype)


def step_kwargs(scheduler, generator) -> dict:
    """Keyword arguments for ``scheduler.step``: stochastic schedulers (Euler ancestral, DDPM) take the
    generator, deterministic ones (UniPC, DPM-Solver multistep) refuse it."""
    return {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}


__all__ = ["encode_image_latents", "randn_latents", "step_kwargs"]
