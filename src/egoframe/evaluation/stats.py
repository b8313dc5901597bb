"""Every reported number with its n and a bootstrap 95 % interval; paired comparisons with a p-value.

- :func:`bootstrap_ci`: percentile bootstrap of the mean (Efron & Tibshirani, "An Introduction to the
  Bootstrap", 1993, Ch. 13): resample the n per-sample scores with replacement B times, take the
  (alpha/2, 1 - alpha/2) quantiles of the resampled means.
- :func:`paired_bootstrap`: two methods scored on the same samples. The interval is the percentile
  bootstrap of the mean paired difference; the two-sided p-value tests "mean difference = 0" by resampling
  the differences shifted to mean 0 (Efron & Tibshirani 1993, Sec. 16.4, Algorithm 16.2), with the
  (count + 1) / (B + 1) correction so that p is never exactly 0.
- :func:`bootstrap_statistic`: the same for a set-level statistic (FID), resampling sample indices.

All resampling is seeded (numpy PCG64), so a report is reproducible from its seed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

from egoframe.errors import InputError

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean (or set statistic) with its sample count and percentile-bootstrap interval."""

    value: float
    low: float
    high: float
    n: int
    confidence: float = DEFAULT_CONFIDENCE
    resamples: int = DEFAULT_RESAMPLES
    seed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def format(self, digits: int = 4) -> str:
        pct = round(self.confidence * 100)
        return f"{self.value:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}] ({pct}% CI, n={self.n})"


@dataclass(frozen=True)
class PairedComparison:
    """Method A minus method B on the same samples: mean difference, its interval, two-sided p-value."""

    difference: Estimate
    p_value: float
    mean_a: float
    mean_b: float

    def as_dict(self) -> dict:
        return {"difference": self.difference.as_dict(), "p_value": self.p_value, "mean_a": self.mean_a,
                "mean_b": self.mean_b}


def _clean(values: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise InputError(f"{name}: no values to summarise")
    if np.any(np.isnan(array)):
        raise InputError(f"{name}: contains NaN scores")
    return array


def _check(confidence: float, resamples: int) -> None:
    if not 0.0 < confidence < 1.0:
        raise InputError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 1:
        raise InputError(f"resamples must be >= 1, got {resamples}")


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = values.size
    means = np.empty(resamples, dtype=np.float64)
    # Chunks bound the memory of the (chunk, n) index matrix for large n.
    chunk = max(1, min(resamples, 4_000_000 // max(n, 1)))
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    return means


def _interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1.0 - confidence
    low, high = np.quantile(samples, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def bootstrap_ci(values: Sequence[float], confidence: float = DEFAULT_CONFIDENCE,
                 resamples: int = DEFAULT_RESAMPLES, seed: int = 0, name: str = "scores") -> Estimate:
    """Mean of ``values`` with a seeded percentile-bootstrap interval. ``inf`` scores (PSNR of identical
    images) propagate: the mean and bounds become ``inf`` rather than being dropped."""
    _check(confidence, resamples)
    array = _clean(values, name)
    mean = float(array.mean())
    if array.size == 1:
        return Estimate(mean, mean, mean, 1, confidence, resamples, seed)
    with np.errstate(invalid="ignore"):
        low, high = _interval(_resampled_means(array, resamples, seed), confidence)
    return Estimate(mean, low, high, int(array.size), confidence, resamples, seed)


def paired_bootstrap(values_a: Sequence[float], values_b: Sequence[float], confidence: float = DEFAULT_CONFIDENCE,
                     resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> PairedComparison:
    """Compare two methods scored on the same samples (``values_a[i]`` and ``values_b[i]`` share sample i)."""
    _check(confidence, resamples)
    a = _clean(values_a, "method A")
    b = _clean(values_b, "method B")
    if a.shape != b.shape:
        raise InputError(f"paired comparison needs equal counts, got {a.size} and {b.size}")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise InputError("paired comparison needs finite scores (an inf PSNR has no difference)")
    diff = a - b
    observed = float(diff.mean())
    if diff.size == 1:
        return PairedComparison(Estimate(observed, observed, observed, 1, confidence, resamples, seed), 1.0,
                                float(a.mean()), float(b.mean()))
    means = _resampled_means(diff, resamples, seed)
    low, high = _interval(means, confidence)
    # Null distribution: the same resamples of the differences shifted to mean zero.
    null_means = means - observed
    extreme = int(np.sum(np.abs(null_means) >= abs(observed) - 1e-12 * max(1.0, abs(observed))))
    p_value = (extreme + 1) / (resamples + 1)
    return PairedComparison(Estimate(observed, low, high, int(diff.size), confidence, resamples, seed),
                            min(1.0, p_value), float(a.mean()), float(b.mean()))


def bootstrap_statistic(n: int, statistic: Callable[[np.ndarray], float], confidence: float = DEFAULT_CONFIDENCE,
                        resamples: int = 200, seed: int = 0) -> Estimate:
    """A set-level statistic (e.g. FID) of ``n`` paired samples with a percentile-bootstrap interval.

    ``statistic(indices)`` computes the statistic on the samples at ``indices`` (with repeats); it is called
    once on ``arange(n)`` for the value, then ``resamples`` times on resampled indices.
    """
    _check(confidence, resamples)
    if n < 2:
        raise InputError(f"a set statistic needs at least 2 samples, got {n}")
    value = float(statistic(np.arange(n)))
    rng = np.random.default_rng(seed)
    draws = np.array([float(statistic(rng.integers(0, n, size=n))) for _ in range(resamples)])
    low, high = _interval(draws, confidence)
    return Estimate(value, low, high, n, confidence, resamples, seed)


def format_p(p_value: float, resamples: int) -> str:
    """p-values at the bootstrap's resolution: below 1/(B+1) is reported as "< 1/(B+1)"."""
    floor = 1.0 / (resamples + 1)
    if p_value <= floor * 1.0000001:
        return f"< {floor:.1g}" if floor < 0.001 else f"<= {floor:.3g}"
    return f"{p_value:.3g}" if p_value >= 0.001 else f"{p_value:.1e}"


def is_finite(estimate: Estimate) -> bool:
    return all(math.isfinite(v) for v in (estimate.value, estimate.low, estimate.high))
