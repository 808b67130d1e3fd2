"""Confidence intervals for the benchmark's numbers, all from scipy.

Three questions a reader of a table asks, three functions:

- ``seed_interval``: how far would the mean over seeds move with other seeds?
  A Student-t interval over the per-seed values (``scipy.stats.ttest_1samp``).
- ``paired_difference``: is method A better than baseline B? The same seeds
  pick the same training subsets, so the per-seed differences are paired and
  the interval is ``scipy.stats.ttest_rel``'s.
- ``bootstrap_interval``: with one seed only, how far would the metric move
  with another test set? A percentile bootstrap over test images
  (``scipy.stats.bootstrap``); tasks store it as ``ci_low``/``ci_high``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95


@dataclass(frozen=True)
class SeedInterval:
    """Mean, sample std (ddof=1) and t-interval of values over seeds; std and interval are None below n = 2."""

    mean: float
    std: float | None
    n: int
    ci: tuple[float, float] | None


@dataclass(frozen=True)
class PairedDifference(SeedInterval):
    """The same over paired seeds' differences x - y."""

    @property
    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (the difference is not noise at this level)."""
        return self.ci is not None and (self.ci[0] > 0 or self.ci[1] < 0)


def _values(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=float).ravel()
    if arr.size == 0:
        raise ValueError(f"{what}: no values")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: values must be finite, got {arr.tolist()}")
    return arr


def _t_interval(result, arr: np.ndarray, level: float) -> tuple[float, float]:
    """The test result's interval; a point when every value is equal (scipy's t is undefined at std 0)."""
    if np.all(arr == arr[0]):
        return float(arr[0]), float(arr[0])
    with warnings.catch_warnings():  # near-equal values: scipy warns about precision, the interval is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        ci = result.confidence_interval(confidence_level=level)
    return float(ci.low), float(ci.high)


def seed_interval(values: Sequence[float] | np.ndarray, level: float = LEVEL) -> SeedInterval:
    """Mean, sample std, n and the ``level`` t-interval of the mean over seeds."""
    arr = _values(values, "seed_interval")
    n = int(arr.size)
    mean = float(arr.mean())
    if n < 2:
        return SeedInterval(mean, None, n, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_1samp(arr, popmean=0.0)
    return SeedInterval(mean, float(arr.std(ddof=1)), n, _t_interval(result, arr, level))


def paired_difference(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray,
                      level: float = LEVEL) -> PairedDifference:
    """x - y over pairs (x[i] and y[i] share a seed, hence a training subset), with ttest_rel's interval."""
    xa, ya = _values(x, "paired_difference x"), _values(y, "paired_difference y")
    if xa.shape != ya.shape:
        raise ValueError(f"paired_difference: {xa.size} values against {ya.size}; pairs need equal lengths")
    diff = xa - ya
    n = int(diff.size)
    mean = float(diff.mean())
    if n < 2:
        return PairedDifference(mean, None, n, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(xa, ya)
    return PairedDifference(mean, float(diff.std(ddof=1)), n, _t_interval(result, diff, level))


def bootstrap_interval(statistic: Callable[..., float], *arrays: np.ndarray, n_resamples: int = 1000, seed: int = 0,
                       paired: bool = True, level: float = LEVEL) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(*arrays)`` over test items (axis 0).

    ``paired`` (the default, and what a metric over (label, score) arrays needs)
    resamples the same rows of every array, so arrays may be of any shape as
    long as they share their first dimension (labels (n,), scores (n, classes),
    masks (n, h, w)). ``paired=False`` resamples 1-D arrays independently.
    A resample on which the statistic is undefined should return NaN (e.g. an
    AUC on a resample with one class): those resamples are left out of the
    percentiles; if all are, the interval is (nan, nan).
    """
    if not arrays:
        raise ValueError("bootstrap_interval: no arrays")
    data = [np.asarray(a) for a in arrays]
    n = len(data[0])
    if paired and any(len(a) != n for a in data):
        raise ValueError(f"bootstrap_interval: paired arrays need one length, got {[len(a) for a in data]}")
    if min(len(a) for a in data) < 2:
        raise ValueError("bootstrap_interval: needs at least 2 test items")
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():  # NaN resamples: scipy warns, we take the percentiles of the defined ones below
        warnings.simplefilter("ignore")
        if paired:
            res = stats.bootstrap((np.arange(n),), lambda idx: statistic(*(a[idx] for a in data)), vectorized=False,
                                  paired=False, n_resamples=n_resamples, confidence_level=level,
                                  method="percentile", rng=rng)
        else:
            res = stats.bootstrap(tuple(data), statistic, vectorized=False, paired=False, n_resamples=n_resamples,
                                  confidence_level=level, method="percentile", rng=rng)
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if math.isnan(low) or math.isnan(high):
        dist = np.asarray(res.bootstrap_distribution, dtype=float)
        dist = dist[np.isfinite(dist)]
        if dist.size == 0:
            return math.nan, math.nan
        alpha = (1 - level) / 2
        low, high = (float(q) for q in np.quantile(dist, [alpha, 1 - alpha]))
    return low, high
