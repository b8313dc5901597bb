"""Pure-math metrics against independent references: scikit-image, scipy, hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from egoframe.errors import InputError
from egoframe.evaluation import frechet, pixel, stats


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
    noise = rng.integers(-40, 41, size=a.shape)
    b = np.clip(a.astype(int) + noise, 0, 255).astype(np.uint8)
    return a, b


def test_psnr_matches_skimage_and_is_range_independent(pair):
    a, b = pair
    expected = peak_signal_noise_ratio(b, a, data_range=255)
    assert pixel.psnr(a, b) == pytest.approx(expected, rel=1e-12)
    # uint8 and its float [0, 1] copy give the same number (REFERENCE.md pitfall)
    assert pixel.psnr(a / 255.0, b / 255.0) == pytest.approx(expected, rel=1e-12)
    assert pixel.psnr(a, a) == float("inf")


def test_ssim_matches_skimage(pair):
    a, b = pair
    expected = structural_similarity(a / 255.0, b / 255.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0, channel_axis=-1)
    assert pixel.ssim(a, b) == pytest.approx(expected, abs=1e-10)
    assert pixel.ssim(a, a) == pytest.approx(1.0)


def test_l1_l2_hand_computed():
    a = np.zeros((2, 2, 3), dtype=np.uint8)
    b = np.zeros((2, 2, 3), dtype=np.uint8)
    b[0, 0, 0] = 255  # one channel of one pixel fully off: 1 of 12 values differs by 1.0
    b[1, 1, 2] = 51  # another differs by 0.2
    assert pixel.l1(a, b) == pytest.approx((1.0 + 0.2) / 12)
    assert pixel.l2(a, b) == pytest.approx((1.0 + 0.04) / 12)


def test_out_of_range_floats_are_refused_not_rescaled(pair):
    a, _ = pair
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        pixel.psnr(a.astype(np.float32), a.astype(np.float32))  # 0..255 floats
    with pytest.raises(InputError, match=r"\(x \+ 1\) / 2"):
        pixel.l1(a / 127.5 - 1.0, a / 255.0)  # a [-1, 1] output
    with pytest.raises(InputError, match="sizes differ"):
        pixel.l2(a, a[:-1])


def test_frechet_distance_matches_scipy_reference():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6))
    y = rng.normal(loc=0.3, size=(250, 6)) @ rng.normal(size=(6, 6)) * 0.5
    mu1, s1 = x.mean(0), np.cov(x, rowvar=False)
    mu2, s2 = y.mean(0), np.cov(y, rowvar=False)
    # independent route: the symmetric form Tr((S1^1/2 S2 S1^1/2)^1/2) via eigen-decompositions
    w, v = np.linalg.eigh(s1)
    root1 = v @ np.diag(np.sqrt(w)) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None)))
    assert frechet.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet.frechet_distance_from_features(x, y) == pytest.approx(expected, rel=1e-9)
    assert frechet.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-8)
    # 1-D closed form: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet.frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4.0 + 1.0)
    # scipy's own sqrtm agrees on the trace term
    assert np.trace(linalg.sqrtm(s1 @ s2)).real == pytest.approx(np.sum(np.sqrt(np.clip(inner, 0, None))), rel=1e-8)


def test_frechet_sample_space_route_equals_sqrtm_route():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(12, 30))  # fewer samples than dimensions: sample-space route
    y = rng.normal(loc=0.2, size=(9, 30)) * 1.3
    via_features = frechet.frechet_distance_from_features(x, y)
    sx, sy = frechet.feature_stats(x), frechet.feature_stats(y)
    covmean = linalg.sqrtm(sx.cov @ sy.cov)
    expected = np.sum((sx.mean - sy.mean) ** 2) + np.trace(sx.cov + sy.cov) - 2 * np.trace(covmean).real
    assert via_features == pytest.approx(expected, rel=1e-6)
    assert via_features == pytest.approx(frechet.frechet_distance(sx.mean, sx.cov, sy.mean, sy.cov), rel=1e-6)


def test_frechet_handles_singular_covariances():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 20))  # rank 4 covariance in 20-D: sqrtm is near-singular
    y = rng.normal(size=(5, 20))
    value = frechet.frechet_distance_from_features(x, y)
    assert np.isfinite(value) and value > 0


def test_bootstrap_ci_is_seeded_and_covers_mean():
    values = np.random.default_rng(3).normal(loc=2.0, size=200)
    one = stats.bootstrap_ci(values, resamples=2000, seed=7)
    two = stats.bootstrap_ci(values, resamples=2000, seed=7)
    assert one == two
    assert one.n == 200 and one.low < one.value < one.high
    # percentile interval ~ mean +- 1.96 sd / sqrt(n)
    half = 1.96 * values.std(ddof=1) / np.sqrt(values.size)
    assert one.high - one.low == pytest.approx(2 * half, rel=0.15)
    with pytest.raises(InputError):
        stats.bootstrap_ci([])


def test_paired_bootstrap_p_values():
    rng = np.random.default_rng(4)
    base = rng.normal(size=300)
    better = base + 0.3 + rng.normal(scale=0.1, size=300)
    clear = stats.paired_bootstrap(better, base, resamples=2000, seed=0)
    assert clear.p_value < 0.01 and clear.difference.low > 0.2
    same = stats.paired_bootstrap(base + rng.normal(scale=0.1, size=300), base, resamples=2000, seed=0)
    assert same.p_value > 0.05
    assert same.difference.low < 0 < same.difference.high
    with pytest.raises(InputError, match="equal counts"):
        stats.paired_bootstrap(base, base[:-1])


def test_bootstrap_statistic():
    values = np.arange(10, dtype=float)
    est = stats.bootstrap_statistic(10, lambda idx: values[idx].max(), resamples=200, seed=0)
    assert est.value == 9.0 and est.high == 9.0 and est.low < 9.0
