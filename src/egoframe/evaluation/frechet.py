"""Fréchet distance between two Gaussians fitted to feature sets (the "D" of FID).

Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium",
NeurIPS 2017, Eq. (6) / Dowson & Landau 1982:

    d^2 = ||mu_1 - mu_2||^2 + Tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

Computed in float64. ``scipy.linalg.sqrtm`` of a product of two PSD matrices can come back with tiny
imaginary parts (round-off) or fail to converge on a near-singular product: imaginary parts up to
``imag_tolerance`` are dropped, larger ones raise; a non-finite result is retried with ``eps`` added to both
diagonals (as pytorch-fid and the TTUR reference code do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from egoframe.errors import InputError


@dataclass(frozen=True)
class GaussianStats:
    mean: np.ndarray  # (D,)
    cov: np.ndarray  # (D, D)
    n: int


def feature_stats(features: np.ndarray) -> GaussianStats:
    """Mean and unbiased (n - 1) covariance of ``features`` (N, D), in float64."""
    array = np.asarray(features, dtype=np.float64)
    if array.ndim != 2:
        raise InputError(f"features must be (N, D), got shape {array.shape}")
    if array.shape[0] < 2:
        raise InputError(f"a covariance needs at least 2 feature vectors, got {array.shape[0]}")
    return GaussianStats(array.mean(axis=0), np.cov(array, rowvar=False), int(array.shape[0]))


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6, imag_tolerance: float = 1e-3) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64 throughout."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise InputError(f"mean/covariance shapes do not match: {mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}")
    diff = mu1 - mu2
    covmean = _sqrtm(sigma1 @ sigma2)
    if not np.all(np.isfinite(covmean)):
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = _sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        largest = float(np.max(np.abs(covmean.imag)))
        if largest > imag_tolerance:
            raise ArithmeticError(f"matrix square root has an imaginary component of {largest:.3g} "
                                  f"(> {imag_tolerance}): the covariances are ill-conditioned (too few samples?)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return linalg.sqrtm(matrix)


def frechet_distance_from_features(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance of the Gaussians fitted to two feature sets (N_a, D) and (N_b, D), float64.

    With fewer samples than dimensions (the usual case for a bootstrap resample, or a test split of a few
    hundred frames against 2048-d Inception features) the covariances have rank < D and ``sqrtm`` of their
    D x D product is both slow and ill-conditioned. Then the trace term is computed exactly in sample space:
    with centred data X_a, X_b and S = X^T X / (N - 1), the nonzero eigenvalues of S_a S_b are the squared
    singular values of X_a X_b^T / sqrt((N_a - 1)(N_b - 1)), so Tr((S_a S_b)^(1/2)) is that matrix's
    nuclear norm. Otherwise :func:`frechet_distance` (``scipy.linalg.sqrtm``) is used.
    """
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    stats_a, stats_b = feature_stats(a), feature_stats(b)
    if a.shape[1] != b.shape[1]:
        raise InputError(f"feature dimensions differ: {a.shape[1]} vs {b.shape[1]}")
    if min(stats_a.n, stats_b.n) > a.shape[1]:
        return frechet_distance(stats_a.mean, stats_a.cov, stats_b.mean, stats_b.cov)
    centred_a = a - stats_a.mean
    centred_b = b - stats_b.mean
    cross = centred_a @ centred_b.T / np.sqrt((stats_a.n - 1) * (stats_b.n - 1))  # (N_a, N_b)
    trace_sqrt = float(np.sum(linalg.svdvals(cross)))
    diff = stats_a.mean - stats_b.mean
    return float(diff @ diff + np.trace(stats_a.cov) + np.trace(stats_b.cov) - 2.0 * trace_sqrt)
