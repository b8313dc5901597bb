"""Classifier-free guidance: the one-condition and the dual (image + text) form, and the guidance interval."""

from __future__ import annotations

from egoframe.errors import InputError


def cfg(eps_cond, eps_null, scale: float):
    """ε = ε(∅) + s·(ε(c) − ε(∅))   (classifier-free guidance, Ho & Salimans 2022, Eq. 6)."""
    return eps_null + scale * (eps_cond - eps_null)


def dual_cfg(eps_text, eps_image, eps_uncond, image_scale: float, text_scale: float):
    """ε = ε(∅,∅) + s_x·(ε(x,∅) − ε(∅,∅)) + s_c·(ε(x,c) − ε(x,∅))   (InstructPix2Pix, Brooks et al. 2023, Eq. 3).

    ``eps_text`` = ε(x, c) (input frame and condition), ``eps_image`` = ε(x, ∅), ``eps_uncond`` = ε(∅, ∅);
    ``image_scale`` is s_x, ``text_scale`` s_c. Both scales at 1 give ε(x, c).
    """
    return eps_uncond + image_scale * (eps_image - eps_uncond) + text_scale * (eps_text - eps_image)


def check_interval(interval) -> tuple[float, float]:
    """A guidance interval (lo, hi) of fractions of the sampling steps, validated (an :class:`InputError` if not)."""
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise InputError(f"guidance_interval must be a pair (lo, hi) of fractions, got {interval!r}") from None
    if not 0.0 <= lo <= hi <= 1.0:
        raise InputError(f"guidance_interval must satisfy 0 <= lo <= hi <= 1, got {interval!r}")
    return lo, hi


def is_guided(step: int, steps: int, interval: tuple[float, float]) -> bool:
    """Whether sampling step ``step`` of ``steps`` uses guidance: lo <= step / steps < hi (guidance limited to an
    interval, Kynkäänniemi et al., NeurIPS 2024); the other steps use the conditional prediction alone."""
    lo, hi = interval
    return lo <= step / steps < hi


__all__ = ["cfg", "check_interval", "dual_cfg", "is_guided"]
