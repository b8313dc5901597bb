"""The one statistics path: intervals and p-values from the same resamples agree; Holm; detectable effect."""

from __future__ import annotations

import math

import numpy as np
import pytest

from egoframe.errors import InputError
from egoframe.evaluation import stats


def test_interval_excludes_zero_exactly_when_p_is_at_most_alpha():
    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(300):
        n = int(rng.integers(8, 120))
        # 0/1 action-success scores of two methods with a random true gap, like every oracle comparison
        a = (rng.random(n) < rng.uniform(0.2, 0.8)).astype(float)
        b = (rng.random(n) < np.clip(a.mean() + rng.normal(0, 0.15), 0, 1)).astype(float)
        c = stats.paired_bootstrap(a, b, resamples=1000, seed=trial)
        excludes = c.difference.low > 0 or c.difference.high < 0
        assert excludes == (c.p_value <= 0.05), (trial, c)
        checked += excludes
    assert 20 < checked < 280  # both outcomes were exercised


def test_the_report_that_disagreed_cannot_happen():
    # docs/reproduce had an interval [0.010, 0.083] beside p = 0.0725 (two calculations): find such a case
    # on the old definition's shape and check the new p sits on the interval's side of 0.05
    rng = np.random.default_rng(3)
    diff = np.concatenate([np.ones(9), -np.ones(2), np.zeros(85)])
    rng.shuffle(diff)
    c = stats.paired_bootstrap(diff, np.zeros_like(diff), resamples=5000, seed=1)
    assert (c.difference.low > 0) == (c.p_value <= 0.05)


def test_constructed_cases():
    same = stats.paired_bootstrap(np.ones(50), np.ones(50), resamples=500)
    assert same.difference.value == 0 and same.p_value == 1.0
    better = stats.paired_bootstrap(np.ones(50), np.zeros(50), resamples=500)
    assert better.p_value == 0.0 and better.difference.low == 1.0
    assert stats.format_p(better.p_value, 500) == "< 0.004"
    half = stats.paired_bootstrap(np.r_[np.ones(25), np.zeros(25)], np.zeros(50), resamples=4000, seed=2)
    assert half.difference.value == 0.5 and half.p_value < 0.001 and 0.35 < half.difference.low < 0.5


def test_holm_matches_the_step_down_rule():
    # Holm (1979): sorted p 0.01, 0.02, 0.03, 0.5 with m = 4 -> 0.04, 0.06, 0.06 (monotone), 0.5
    assert stats.holm([0.03, 0.01, 0.5, 0.02]) == pytest.approx([0.06, 0.04, 0.5, 0.06])
    assert stats.holm([]) == []
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2 x 0.8 capped at 1, then monotone
    with pytest.raises(InputError):
        stats.holm([1.5])


def test_minimum_detectable_effect_follows_the_normal_formula():
    d = np.r_[np.ones(30), -np.ones(10), np.zeros(60)]
    expected = (1.959964 + 0.841621) * np.std(d, ddof=1) / math.sqrt(100)
    assert stats.minimum_detectable_effect(d) == pytest.approx(expected, rel=1e-5)
    # four times the samples halve it
    assert stats.minimum_detectable_effect(np.tile(d, 4)) == pytest.approx(expected / 2, rel=0.02)
    assert stats.paired_bootstrap(d, np.zeros(100), resamples=200).detectable == pytest.approx(expected, rel=1e-5)
