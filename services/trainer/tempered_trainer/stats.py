"""How sure a test figure is: a percentile bootstrap 95% interval of any statistic over per-example scores, a
paired bootstrap of the difference between two models scored on the same examples, and McNemar's exact test of
their disagreements. Seeded, so the same scores always give the same interval (a gate must not flip on rerun).

Efron & Tibshirani's percentile bootstrap: resample the n examples with replacement B times, recompute the
statistic, take the 2.5th and 97.5th percentiles. Pairing resamples the same example indices for both models, so
the interval of the difference is as narrow as their agreement allows (two models right on the same easy
examples differ only on the rest).
"""

import math
from typing import Callable, Sequence

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0


def _indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _interval(value: float, samples: np.ndarray, n: int, level: float) -> dict:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(samples, [tail, 100 - tail])
    return {"value": float(value), "low": float(low), "high": float(high), "n": n}


def bootstrap(scores: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """{value, low, high, n} of the mean of per-example scores (1/0 for right/wrong gives accuracy)."""
    x = np.asarray(scores, dtype=np.float64)
    if len(x) == 0:
        return {"value": 0.0, "low": 0.0, "high": 0.0, "n": 0}
    return _interval(x.mean(), x[_indices(len(x), resamples, seed)].mean(axis=1), len(x), level)


def bootstrap_statistic(rows: Sequence, statistic: Callable[[list], float], level: float = LEVEL,
                        resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """{value, low, high, n} of a statistic of a whole sample that is not a mean of scores (macro-F1)."""
    rows = list(rows)
    if not rows:
        return {"value": 0.0, "low": 0.0, "high": 0.0, "n": 0}
    samples = np.array([statistic([rows[i] for i in idx]) for idx in _indices(len(rows), resamples, seed)])
    return _interval(statistic(rows), samples, len(rows), level)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = LEVEL, resamples: int = RESAMPLES,
                      seed: int = SEED) -> dict:
    """{value, low, high, n} of mean(a) - mean(b) for two models' scores on the same examples, resampled in pairs."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) != len(y):
        raise ValueError(f"paired scores must be as many: {len(x)} and {len(y)}")
    return bootstrap(x - y, level, resamples, seed)


def mcnemar(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar p-value: of the examples exactly one model got right (a_only + b_only), how
    likely a split at least this uneven is when both models are equally good (a fair coin per example)."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    k = min(a_only, b_only)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return min(1.0, 2 * tail)
