"""Bootstrap confidence intervals for per-question scores (percentile method, seeded, deterministic).

``mean_ci(values)`` resamples questions with replacement; ``paired_diff_ci(after, before)`` resamples question
*indices* and takes the mean of ``after[i] - before[i]`` over each resample, so the interval is for the change on
the same questions (the per-question pairing removes the spread between easy and hard questions). Scores are in
[0, 1]; an interval is ``[lo, hi]`` at 95 % by default, rounded to 6 digits. With fewer than 2 values the
interval is ``None`` (nothing can be said).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DEFAULT_RESAMPLES = 2000


def _interval(stats: np.ndarray, level: float) -> list[float]:
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return [round(float(lo), 6), round(float(hi), 6)]


def mean_ci(values: Sequence[float], resamples: int = DEFAULT_RESAMPLES, level: float = 0.95,
            seed: int = 0) -> dict:
    """``{"mean", "ci95": [lo, hi] | None, "n"}`` of ``values`` (shape ``(n,)``)."""
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"mean": None, "ci95": None, "n": 0}
    mean = round(float(x.mean()), 6)
    if n < 2:
        return {"mean": mean, "ci95": None, "n": n}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    return {"mean": mean, "ci95": _interval(x[idx].mean(axis=1), level), "n": n}


def paired_diff_ci(after: Sequence[float], before: Sequence[float], resamples: int = DEFAULT_RESAMPLES,
                   level: float = 0.95, seed: int = 0) -> dict:
    """``{"mean", "ci95", "n"}`` of ``after - before`` per question (both shape ``(n,)``, same question order)."""
    a = np.asarray(after, dtype=np.float64)
    b = np.asarray(before, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired bootstrap needs the same questions on both sides, got {a.shape} and {b.shape}")
    return mean_ci(a - b, resamples=resamples, level=level, seed=seed)
