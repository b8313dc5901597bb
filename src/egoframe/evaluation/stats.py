"""Every reported number with its n and a bootstrap 95 % interval; paired comparisons with a p-value.

The one statistics path of every egoframe report (eval, eval-world, reproduce, siblings compare, study
results):

- :func:`bootstrap_ci`: percentile bootstrap of the mean (Efron & Tibshirani, "An Introduction to the
  Bootstrap", 1993, Ch. 13): resample the n per-sample scores with replacement B times; the interval is
  the (alpha/2, 1 - alpha/2) order statistics of the B resampled means.
- :func:`paired_bootstrap`: two methods scored on the same samples. The interval is the percentile
  bootstrap of the mean paired difference, and the two-sided p-value comes from *the same resamples*: the
  bootstrap percentile test, p = 2 min(#{d* <= 0}, #{d* >= 0}) / B (the inversion of the percentile
  interval; Efron & Tibshirani 1993, Sec. 16.2; Davison & Hinkley, "Bootstrap Methods", 1997, Sec. 4.4).
  So the 95 % interval excludes 0 exactly when p <= 0.05: an interval and a p-value never disagree.
  Each comparison also carries the smallest effect its sample size can detect (:func:`minimum_detectable_effect`).
- :func:`holm`: Holm's step-down correction across the claims of one table (Holm 1979).
- :func:`bootstrap_statistic`: the same interval for a set-level statistic (FID), resampling sample indices.

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
    """Method A minus method B on the same samples: mean difference, its interval, two-sided p-value (the
    bootstrap percentile test on the interval's resamples) and the minimum detectable effect at this n."""

    difference: Estimate
    p_value: float
    mean_a: float
    mean_b: float
    detectable: float = float("nan")  # smallest |difference| found with 80 % power at alpha 0.05 (two-sided)
    test: str = "bootstrap percentile test (same resamples as the interval)"

    def as_dict(self) -> dict:
        return {"difference": self.difference.as_dict(), "p_value": self.p_value, "mean_a": self.mean_a,
                "mean_b": self.mean_b, "detectable": self.detectable, "test": self.test}


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
    """Order statistics k_lo = floor(B alpha / 2) and k_hi = B - 1 - k_lo of the sorted resamples: the interval
    excludes 0 exactly when fewer than k_lo + 1 resamples lie on its far side of 0 (see :func:`_percentile_p`)."""
    alpha = 1.0 - confidence
    ordered = np.sort(samples)
    k = int(math.floor(ordered.size * alpha / 2.0 + 1e-9))
    return float(ordered[k]), float(ordered[ordered.size - 1 - k])


def percentile_interval(samples: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """The percentile-bootstrap interval of already resampled statistics (e.g. a study's win rates, which
    resample clusters of votes): the same order statistics every other interval of egoframe uses."""
    _check(confidence, 1)
    return _interval(np.asarray(samples, dtype=np.float64).reshape(-1), confidence)


def _percentile_p(samples: np.ndarray) -> float:
    """Two-sided bootstrap percentile test of "mean = 0": twice the smaller share of resamples on either side."""
    below = int(np.sum(samples <= 0.0))
    above = int(np.sum(samples >= 0.0))
    return min(1.0, 2.0 * min(below, above) / samples.size)


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
    p_value = _percentile_p(means)
    return PairedComparison(Estimate(observed, low, high, int(diff.size), confidence, resamples, seed),
                            p_value, float(a.mean()), float(b.mean()),
                            minimum_detectable_effect(diff, alpha=1.0 - confidence))


def minimum_detectable_effect(differences: Sequence[float], alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest mean paired difference a two-sided test at ``alpha`` finds with probability ``power``:
    (z_{1-alpha/2} + z_{power}) * sd(d) / sqrt(n), normal approximation (Cohen, "Statistical Power Analysis",
    1988, Ch. 2), with the observed standard deviation of the differences (at least that of one flipped
    sample in n, so that n identical differences do not claim an infinitely sharp test)."""
    from scipy.stats import norm

    d = _clean(differences, "differences")
    n = d.size
    if n < 2:
        return float("inf")
    sd = max(float(np.std(d, ddof=1)), math.sqrt(1.0 / n))
    return float((norm.ppf(1.0 - alpha / 2.0) + norm.ppf(power)) * sd / math.sqrt(n))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (Holm 1979, "A simple sequentially rejective multiple test
    procedure"): a claim holds at family-wise level alpha when its adjusted p <= alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 0:
        return []
    if np.any((p < 0) | (p > 1) | np.isnan(p)):
        raise InputError("holm: p-values must be in [0, 1]")
    order = np.argsort(p, kind="stable")
    m = p.size
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[idx]))
        adjusted[idx] = running
    return [float(v) for v in adjusted]


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
    """p-values at the bootstrap's resolution: 0 (no resample on the far side of 0) is reported as "< 2/B"."""
    floor = 2.0 / resamples
    if p_value < floor * 0.9999999:
        return f"< {floor:.1g}" if floor < 0.001 else f"< {floor:.3g}"
    return f"{p_value:.3g}" if p_value >= 0.001 else f"{p_value:.1e}"


def is_finite(estimate: Estimate) -> bool:
    return all(math.isfinite(v) for v in (estimate.value, estimate.low, estimate.high))
