"""Exact pixel metrics: PSNR, SSIM, L1, L2, on float64 images in [0, 1] (see :mod:`.images`).

Both images must have the same size; :func:`egoframe.evaluation.runner.evaluate_folder` resizes the
reference to the generated image first and records it. All four are per-image numbers; averaging over a
set (and the bootstrap interval) is done by :mod:`.stats`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from egoframe.errors import InputError
from egoframe.evaluation.images import ImageLike, to_float01


def _pair(generated: ImageLike, reference: ImageLike) -> tuple[np.ndarray, np.ndarray]:
    gen = to_float01(generated, "generated")
    ref = to_float01(reference, "reference")
    if gen.shape != ref.shape:
        raise InputError(f"image sizes differ: generated {gen.shape[:2]} vs reference {ref.shape[:2]}")
    return gen, ref


def l1(generated: ImageLike, reference: ImageLike) -> float:
    """Mean absolute error over all pixels and channels, values in [0, 1] (ReasonPix2Pix's L1 scale)."""
    gen, ref = _pair(generated, reference)
    return float(np.mean(np.abs(gen - ref)))


def l2(generated: ImageLike, reference: ImageLike) -> float:
    """Mean squared error over all pixels and channels, values in [0, 1] (ReasonPix2Pix's L2 is this MSE)."""
    gen, ref = _pair(generated, reference)
    return float(np.mean((gen - ref) ** 2))


def psnr(generated: ImageLike, reference: ImageLike) -> float:
    """Peak signal-to-noise ratio in dB with peak 1.0: 10 log10(1 / MSE); ``inf`` for identical images.

    uint8 images are divided by 255 first, so this equals the 0..255 PSNR with peak 255 exactly
    (the "uint8 vs float" pitfall of REFERENCE.md cannot arise).
    """
    gen, ref = _pair(generated, reference)
    return psnr_from_mse(float(np.mean((gen - ref) ** 2)))


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    """10 log10(peak² / MSE) in dB; ``inf`` when the MSE is 0. The one PSNR formula every egoframe report uses
    (peak 1.0 for [0, 1] images; peak 2.0 for [-1, 1] tensors)."""
    if mse < 0:
        raise ValueError(f"an MSE is never negative, got {mse}")
    return float("inf") if mse == 0.0 else float(10.0 * np.log10(peak * peak / mse))


# Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility to structural
# similarity", IEEE TIP 2004: Gaussian window sigma 1.5, K1 = 0.01, K2 = 0.03, dynamic range L = 1.
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_TRUNCATE = 3.5  # window radius = int(3.5 * 1.5 + 0.5) = 5 -> 11 x 11, as in the paper


def ssim(generated: ImageLike, reference: ImageLike) -> float:
    """Mean structural similarity (Wang et al. 2004), per channel then averaged over R, G, B.

    Local statistics use an 11 x 11 Gaussian window (sigma 1.5) with population (not sample) covariance;
    the mean is taken over the pixels whose window lies fully inside the image (a 5-pixel border is excluded).
    Matches ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1, channel_axis=-1)``.
    """
    values, valid = ssim_map(generated, reference)
    return float(values[valid].mean())


def ssim_map(generated: ImageLike, reference: ImageLike) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel SSIM averaged over R, G, B, (H, W), and the (H, W) mask of pixels whose window fits the image
    (:func:`ssim` is the map's mean over that mask; masked variants such as the benchmarks' background SSIM
    average it over other regions)."""
    gen, ref = _pair(generated, reference)
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    if min(gen.shape[:2]) < 2 * radius + 1:
        raise InputError(f"SSIM needs images of at least {2 * radius + 1} x {2 * radius + 1} pixels, got {gen.shape[:2]}")
    c1, c2 = (SSIM_K1 * 1.0) ** 2, (SSIM_K2 * 1.0) ** 2

    def blur(image: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(image, sigma=SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")

    maps = []
    for channel in range(gen.shape[-1]):
        x, y = gen[..., channel], ref[..., channel]
        mu_x, mu_y = blur(x), blur(y)
        var_x = blur(x * x) - mu_x * mu_x
        var_y = blur(y * y) - mu_y * mu_y
        cov_xy = blur(x * y) - mu_x * mu_y
        maps.append(((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (var_x + var_y + c2)))
    valid = np.zeros(gen.shape[:2], dtype=bool)
    valid[radius:gen.shape[0] - radius, radius:gen.shape[1] - radius] = True
    return np.mean(maps, axis=0), valid
