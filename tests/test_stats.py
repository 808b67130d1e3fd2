"""benchmark.stats: the seed interval, the paired difference and the bootstrap wrapper,
against scipy and against numbers worked by hand."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from benchmark.stats import bootstrap_interval, paired_difference, seed_interval


def test_seed_interval_by_hand():
    """[1..5]: mean 3, sample std sqrt(2.5) = 1.5811, t(0.975, 4) = 2.7764 -> 3 +- 2.7764 * 1.5811 / sqrt(5) = 3 +- 1.9633."""
    s = seed_interval([1, 2, 3, 4, 5])
    assert s.mean == 3.0 and s.n == 5
    assert s.std == pytest.approx(1.5811, abs=1e-4)
    assert s.ci[0] == pytest.approx(3 - 1.9633, abs=1e-4) and s.ci[1] == pytest.approx(3 + 1.9633, abs=1e-4)


@pytest.mark.parametrize("values", [[0.61, 0.64, 0.58, 0.70, 0.66], [10.0, 12.5], [83.1, 79.4, 88.0, 81.2, 90.3, 77.7]])
def test_seed_interval_matches_scipy_t(values):
    s = seed_interval(values)
    low, high = sps.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=sps.sem(values))
    assert s.ci == pytest.approx((low, high), rel=1e-12)
    assert s.std == pytest.approx(np.std(values, ddof=1), rel=1e-12)
    wider = seed_interval(values, level=0.99)
    assert wider.ci[0] < s.ci[0] and wider.ci[1] > s.ci[1]


def test_seed_interval_edge_cases():
    one = seed_interval([0.7])
    assert (one.mean, one.std, one.n, one.ci) == (0.7, None, 1, None)  # no spread from one seed
    same = seed_interval([0.5, 0.5, 0.5])
    assert same.std == 0.0 and same.ci == (0.5, 0.5)  # scipy's t is undefined at std 0: a point
    with pytest.raises(ValueError, match="no values"):
        seed_interval([])
    with pytest.raises(ValueError, match="finite"):
        seed_interval([0.5, float("nan")])


def test_paired_difference_matches_ttest_rel_and_by_hand():
    x = [0.80, 0.84, 0.86, 0.83, 0.85]
    y = [0.60, 0.70, 0.65, 0.66, 0.62]
    d = paired_difference(x, y)
    ref = sps.ttest_rel(x, y).confidence_interval(0.95)
    assert d.ci == pytest.approx((ref.low, ref.high), rel=1e-12)
    diffs = np.subtract(x, y)  # 0.20 0.14 0.21 0.17 0.23: mean 0.19, std 0.03536, +- 2.7764 * 0.03536 / sqrt(5)
    assert d.mean == pytest.approx(0.19) and d.n == 5 and d.std == pytest.approx(np.std(diffs, ddof=1))
    assert d.ci[0] == pytest.approx(0.19 - 0.04390, abs=1e-4) and d.ci[1] == pytest.approx(0.19 + 0.04390, abs=1e-4)
    assert d.excludes_zero


def test_paired_difference_is_not_the_unpaired_one():
    """A seed effect shared by both methods cancels in the pairs: unpaired, the same numbers straddle 0."""
    seed_effect = np.array([0.0, 10.0, 20.0, 30.0, 40.0])
    x, y = seed_effect + 1.0 + np.array([0.1, -0.1, 0.2, 0.0, -0.2]), seed_effect
    assert paired_difference(x, y).excludes_zero
    unpaired = sps.ttest_ind(x, y).confidence_interval(0.95)
    assert unpaired.low < 0 < unpaired.high


def test_paired_difference_edge_cases():
    noise = paired_difference([0.5, 0.6, 0.4], [0.55, 0.5, 0.45])  # differences -0.05, +0.1, -0.05
    assert noise.ci[0] < 0 < noise.ci[1] and not noise.excludes_zero
    one = paired_difference([0.9], [0.5])
    assert one.mean == pytest.approx(0.4) and one.ci is None and not one.excludes_zero
    with pytest.raises(ValueError, match="equal lengths"):
        paired_difference([1, 2], [1, 2, 3])


def test_bootstrap_interval_matches_scipy_and_covers_the_mean():
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 2.0, size=400)
    low, high = bootstrap_interval(np.mean, x, n_resamples=2000, seed=0)
    assert low < x.mean() < high
    # the percentile bootstrap of a mean is close to the normal interval mean +- 1.96 sd / sqrt(n)
    half = 1.96 * x.std(ddof=1) / math.sqrt(x.size)
    assert (high - low) / 2 == pytest.approx(half, rel=0.1)
    # the same resamples as scipy's own call on the row indices, with the same generator
    ref = sps.bootstrap((np.arange(x.size),), lambda i: np.mean(x[i]), vectorized=False, n_resamples=2000,
                        method="percentile", rng=np.random.default_rng(0)).confidence_interval
    assert (low, high) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert bootstrap_interval(np.mean, x, n_resamples=2000, seed=0) == (low, high)  # seeded: reproducible
    assert bootstrap_interval(np.mean, x, n_resamples=2000, seed=1) != (low, high)


def test_bootstrap_interval_pairs_rows_of_every_array():
    """Accuracy of predictions against labels: resampling must keep each (label, prediction) row together."""
    labels = np.array([0, 1] * 50)
    predictions = labels.copy()  # every prediction right: any paired resample has accuracy 1
    low, high = bootstrap_interval(lambda y, p: float(np.mean(y == p)), labels, predictions, n_resamples=200)
    assert (low, high) == (1.0, 1.0)
    masks = np.zeros((30, 4, 4))
    masks[:15] = 1.0  # 2-D items: rows of a (n, h, w) array, mean 0.5
    low, high = bootstrap_interval(lambda m: float(m.mean()), masks, n_resamples=500)
    assert 0.25 < low < 0.5 < high < 0.75
    with pytest.raises(ValueError, match="one length"):
        bootstrap_interval(lambda a, b: 0.0, np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least 2"):
        bootstrap_interval(np.mean, np.zeros(1))


def test_bootstrap_interval_leaves_out_undefined_resamples():
    """An AUROC-like statistic that is NaN on a one-class resample: those resamples are left out."""
    labels = np.array([0, 0, 0, 0, 0, 0, 0, 1])  # one positive: many resamples hold none

    def positive_rate_or_nan(y):
        return float(y.mean()) if y.any() else math.nan

    low, high = bootstrap_interval(positive_rate_or_nan, labels, n_resamples=500)
    assert math.isfinite(low) and math.isfinite(high) and low > 0  # kept NaNs: nan; zero-positive ones: 0
    assert all(math.isnan(v) for v in bootstrap_interval(lambda y: math.nan, labels, n_resamples=50))
