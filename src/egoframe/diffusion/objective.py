"""The training objective every diffusion trainer shares: the regression target and classifier-free dropout."""

from __future__ import annotations

import torch

PREDICTION_TYPES = ("epsilon", "v_prediction")


def diffusion_target(scheduler, z0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor,
                     prediction_type: str) -> torch.Tensor:
    """What the denoiser regresses on for clean latents ``z0`` noised with ``noise`` at timesteps ``t``.

    ``epsilon``: the noise (DDPM, Ho et al. 2020); ``v_prediction``: v = α_t·ε − σ_t·z0 (Salimans & Ho, ICLR
    2022, Sec. 4), the scheduler's own ``get_velocity`` so training and sampling agree on α_t and σ_t.
    """
    if prediction_type == "v_prediction":
        return scheduler.get_velocity(z0, noise, t)
    if prediction_type == "epsilon":
        return noise
    raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")


def cfg_dropout(u: torch.Tensor, text: float, both: float, image: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(drop_text, drop_image) boolean masks from one uniform draw ``u`` per example, InstructPix2Pix's layout
    (Brooks et al. 2023, Sec. 3.2.1; LEGO's public code): [0, text) drops the text only, [text, text + both)
    both, [text + both, text + both + image) the image only, so the model learns ε(x, ∅), ε(∅, ∅) and ε(∅, c)
    beside ε(x, c)."""
    drop_text = u < text + both
    drop_image = (u >= text) & (u < text + both + image)
    return drop_text, drop_image


__all__ = ["PREDICTION_TYPES", "cfg_dropout", "diffusion_target"]
