"""Bootstrap intervals: they contain the mean, shrink with n, are deterministic, and the paired interval of a
consistent per-question gain excludes 0 where the unpaired spread would not."""

from __future__ import annotations

import numpy as np
import pytest

from kd.pipeline.stats import mean_ci, paired_diff_ci


def test_mean_ci_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = mean_ci(rng.uniform(0, 1, 10), seed=1)
    large = mean_ci(rng.uniform(0, 1, 400), seed=1)
    for r in (small, large):
        assert r["ci95"][0] <= r["mean"] <= r["ci95"][1]
    assert (large["ci95"][1] - large["ci95"][0]) < (small["ci95"][1] - small["ci95"][0]) / 3
    assert mean_ci([0.2, 0.4, 0.9], seed=3) == mean_ci([0.2, 0.4, 0.9], seed=3)  # deterministic


def test_mean_ci_coverage_is_about_95_percent():
    rng = np.random.default_rng(42)
    hits = 0
    for trial in range(200):
        x = rng.beta(2, 5, 30)  # true mean 2/7
        lo, hi = mean_ci(x, resamples=500, seed=trial)["ci95"]
        hits += lo <= 2 / 7 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_paired_interval_sees_a_consistent_gain_the_spread_hides():
    rng = np.random.default_rng(0)
    before = rng.uniform(0, 0.9, 24)  # questions of very different difficulty
    after = before + 0.05 + rng.normal(0, 0.01, 24)
    paired = paired_diff_ci(after, before)
    assert paired["mean"] == pytest.approx(0.05, abs=0.01) and paired["ci95"][0] > 0.03
    b, a = mean_ci(before), mean_ci(after)
    assert a["ci95"][0] < b["ci95"][1]  # the two unpaired intervals overlap


def test_degenerate_inputs():
    assert mean_ci([]) == {"mean": None, "ci95": None, "n": 0}
    assert mean_ci([0.5]) == {"mean": 0.5, "ci95": None, "n": 1}
    with pytest.raises(ValueError, match="same questions"):
        paired_diff_ci([0.1, 0.2], [0.1])
