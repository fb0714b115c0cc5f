"""trpo_lab.stats against independent computations: a sort-and-slice IQM, and the exact bootstrap
distribution enumerated over every possible resample of a tiny sample."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from scipy.stats import mannwhitneyu

from trpo_lab.stats import (
    bootstrap_band, bootstrap_ci, difference_ci, iqm, mean_ci, paired_difference_ci, probability_of_improvement,
)


def sort_and_slice_iqm(x) -> float:
    """The mean of the middle 50%: sort, drop ⌊n/4⌋ values at each end."""
    x = sorted(float(v) for v in x)
    cut = len(x) // 4
    middle = x[cut : len(x) - cut]
    return sum(middle) / len(middle)


def exact_percentile_interval(strata, statistic, confidence: float) -> tuple[float, float, float]:
    """The exact (1−c)/2 and (1+c)/2 quantiles of the bootstrap distribution of ``statistic``, by enumerating
    every resample (each stratum resampled on its own, all equally likely), and the smallest distance of the
    distribution's CDF from those levels (how far a Monte-Carlo estimate may stray before it picks a
    neighbouring value)."""
    per_stratum = [list(itertools.product(s, repeat=len(s))) for s in strata]
    values = sorted(round(statistic([v for part in parts for v in part]), 12) for parts in itertools.product(*per_stratum))
    support, counts = np.unique(values, return_counts=True)
    cdf = np.cumsum(counts) / len(values)
    levels = ((1 - confidence) / 2, (1 + confidence) / 2)
    lo, hi = (float(support[np.searchsorted(cdf, q)]) for q in levels)  # smallest value with CDF ≥ q
    margin = float(min(np.min(np.abs(cdf - q)) for q in levels))
    return lo, hi, margin


@pytest.mark.parametrize("n", list(range(1, 14)) + [40, 101])
def test_iqm_is_the_mean_of_the_middle_half(n):
    x = np.random.default_rng(n).normal(size=n) * 10 + np.arange(n)
    assert iqm(x) == pytest.approx(sort_and_slice_iqm(x), rel=1e-12, abs=1e-12)
    assert math.isnan(iqm([]))


def test_percentile_bootstrap_matches_the_enumerated_bootstrap_distribution():
    # x = [0, 1, 3, 9]: 4⁴ = 256 equally likely resamples; their means' 2.5% and 97.5% quantiles are 0.5 and 7.0,
    # and the CDF stays ≥ 0.0055 away from both levels, i.e. ≥ 7 standard errors of a 50,000-resample estimate
    x = [0.0, 1.0, 3.0, 9.0]
    lo, hi, margin = exact_percentile_interval([x], lambda v: sum(v) / len(v), 0.95)
    assert margin > 7 * math.sqrt(0.025 * 0.975 / 50_000)
    assert bootstrap_ci([x], np.mean, n_resamples=50_000, confidence=0.95, seed=1) == (pytest.approx(lo), pytest.approx(hi))


def test_stratified_bootstrap_of_the_iqm_matches_the_enumerated_distribution():
    # two strata resampled separately (2² × 3³ = 108 resamples), the IQM taken over their 5 pooled values
    strata = [[0.0, 10.0], [1.0, 2.0, 30.0]]
    lo, hi, margin = exact_percentile_interval(strata, sort_and_slice_iqm, 0.9)
    assert margin > 7 * math.sqrt(0.05 * 0.95 / 50_000)
    assert bootstrap_ci(strata, iqm, n_resamples=50_000, confidence=0.9, seed=2) == (pytest.approx(lo), pytest.approx(hi))
    # pooling the strata into one sample (an unstratified bootstrap) gives another interval
    assert bootstrap_ci([[v for s in strata for v in s]], iqm, n_resamples=50_000, confidence=0.9, seed=2) != (
        pytest.approx(lo), pytest.approx(hi))


def test_bootstrap_ci_of_constant_strata_is_their_pooled_value():
    # every stratified resample keeps 3 ones and 5 nines, so the pooled mean is always (3·1 + 5·9)/8
    assert bootstrap_ci([[1.0] * 3, [9.0] * 5], np.mean, n_resamples=2000) == (pytest.approx(6.0), pytest.approx(6.0))
    assert bootstrap_ci([[3.5] * 7], iqm) == (pytest.approx(3.5), pytest.approx(3.5))


def test_bootstrap_ci_is_reproducible_with_its_seed_and_needs_two_values_per_stratum():
    x = np.random.default_rng(2).normal(size=12)
    assert bootstrap_ci([x], iqm, seed=7) == bootstrap_ci([x], iqm, seed=7)
    assert bootstrap_ci([x], iqm, seed=7) != bootstrap_ci([x], iqm, seed=8)
    assert all(math.isnan(v) for v in bootstrap_ci([[1.0], [2.0, 3.0]], np.mean))


def test_mean_ci_ignores_non_finite_values():
    m, lo, hi = mean_ci([0.0, 1.0, 3.0, 9.0, math.nan], n_resamples=50_000, seed=1)
    exact_lo, exact_hi, _ = exact_percentile_interval([[0.0, 1.0, 3.0, 9.0]], lambda v: sum(v) / len(v), 0.95)
    assert (m, lo, hi) == (pytest.approx(3.25), pytest.approx(exact_lo), pytest.approx(exact_hi))


def test_bootstrap_band_is_the_enumerated_interval_at_each_point():
    base = np.linspace(0, 100, 25)
    mean, lo, hi = bootstrap_band(np.vstack([base] * 4))
    np.testing.assert_allclose(mean, base)
    np.testing.assert_allclose(lo, base)
    np.testing.assert_allclose(hi, base)
    # curves = base + offset: a resample of whole curves shifts every point by the same mean offset, so the
    # band is base + the enumerated interval of the offsets' mean at every point
    offsets = [0.0, 1.0, 3.0, 9.0]
    curves = np.vstack([base + off for off in offsets])
    curves[2, 0] = np.nan
    mean, lo, hi = bootstrap_band(curves, n_resamples=50_000, seed=3)
    exact_lo, exact_hi, _ = exact_percentile_interval([offsets], lambda v: sum(v) / len(v), 0.95)
    assert np.isnan(mean[0]) and np.isnan(lo[0]) and np.isnan(hi[0])
    np.testing.assert_allclose(mean[1:], base[1:] + 3.25)
    np.testing.assert_allclose(lo[1:], base[1:] + exact_lo, atol=1e-9)
    np.testing.assert_allclose(hi[1:], base[1:] + exact_hi, atol=1e-9)


def test_difference_ci_against_the_exact_bootstrap_distribution():
    # two values per group: each resampled mean is one of {a0, mean, a1} with chances ¼, ½, ¼, so the difference's
    # bootstrap distribution is known exactly: a = (0, 10) and b = (0, 0) give 0, 5, 10 with chances ¼, ½, ¼, so its
    # 2.5th and 97.5th percentiles are 0 and 10
    d, lo, hi = difference_ci([0.0, 10.0], [0.0, 0.0], n_resamples=20_000, confidence=0.95, seed=1)
    assert d == 5.0 and lo == 0.0 and hi == 10.0
    assert difference_ci([3.0, 3.0], [1.0, 1.0]) == (2.0, 2.0, 2.0)  # every resample gives the same difference
    d, lo, hi = difference_ci([1.0], [0.0, 2.0])
    assert d == 0.0 and math.isnan(lo) and math.isnan(hi)  # one run gives no interval
    rng = np.random.default_rng(0)
    a, b = rng.normal(0.0, 1.0, 400), rng.normal(3.0, 1.0, 400)
    d, lo, hi = difference_ci(a, b)
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)  # the normal approximation, independent of scipy
    assert d == pytest.approx(a.mean() - b.mean())
    assert lo == pytest.approx(d - 1.96 * se, abs=0.25 * se) and hi == pytest.approx(d + 1.96 * se, abs=0.25 * se)


def test_paired_difference_of_identical_groups_is_exactly_zero_and_the_unpaired_one_is_not():
    # the Walker2d case of mujoco_1m: two variants whose runs are bit-identical seed by seed
    a = [4085.0, 4785.0, 4041.0, 4596.0, 4385.0]
    assert paired_difference_ci(a, list(a)) == (0.0, 0.0, 0.0)
    d, lo, hi = difference_ci(a, list(a))
    assert d == 0.0 and lo < -100 and hi > 100  # unpaired: the seeds' spread, resampled twice, does not cancel


def test_paired_difference_ci_resamples_pairs():
    # b = a − [0, 1, 3, 9] seed by seed, a widely spread: pairing leaves only the differences, whose mean's exact
    # bootstrap interval is enumerated (4⁴ resamples of the 4 pairs)
    diffs = [0.0, 1.0, 3.0, 9.0]
    a = np.array([1000.0, -500.0, 7000.0, 30.0])
    d, lo, hi = paired_difference_ci(a, a - diffs, n_resamples=50_000, seed=1)
    exact_lo, exact_hi, margin = exact_percentile_interval([diffs], lambda v: sum(v) / len(v), 0.95)
    assert margin > 7 * math.sqrt(0.025 * 0.975 / 50_000)
    assert (d, lo, hi) == (pytest.approx(3.25), pytest.approx(exact_lo), pytest.approx(exact_hi))
    assert paired_difference_ci([2.0, 5.0], [1.0, 3.0]) [0] == 1.5
    d, lo, hi = paired_difference_ci([2.0], [1.0])
    assert d == 1.0 and math.isnan(lo) and math.isnan(hi)  # one pair gives no interval
    with pytest.raises(ValueError):
        paired_difference_ci([1.0, 2.0, 3.0], [1.0, 2.0])  # pairs must be matched


def hand_improvement(x, y) -> float:
    """P(X > Y) + ½ P(X = Y) by counting every pair."""
    wins = sum(1.0 if u > v else 0.5 if u == v else 0.0 for u in x for v in y)
    return wins / (len(x) * len(y))


def test_probability_of_improvement_by_hand_and_against_mannwhitneyu():
    # x = [1, 3, 4], y = [2, 3]: pairs (1,2) 0, (1,3) 0, (3,2) 1, (3,3) ½, (4,2) 1, (4,3) 1 → 3.5 / 6
    assert probability_of_improvement([1.0, 3.0, 4.0], [2.0, 3.0])[0] == pytest.approx(7 / 12)
    assert probability_of_improvement([5.0, 5.0], [5.0, 5.0, 5.0])[0] == 0.5
    rng = np.random.default_rng(3)
    for n, m in [(3, 3), (10, 3), (7, 12), (20, 20)]:
        x, y = rng.integers(0, 6, n).astype(float), rng.integers(0, 6, m).astype(float)  # many ties
        u = mannwhitneyu(x, y).statistic  # U of x over y, ties counted ½ (scipy's ranks)
        assert probability_of_improvement(x, y, n_resamples=100)[0] == pytest.approx(u / (n * m), abs=1e-12)


def test_probability_of_improvement_ci_matches_the_enumerated_bootstrap():
    # x and y each resampled on its own: 4⁴ × 4⁴ = 65 536 equally likely resamples; at 90 % the CDF stays ≥ 15
    # standard errors of a 50,000-resample estimate from both levels (resampling the groups jointly, as pairs,
    # would give [0.25, 0.75] instead of the exact [0.125, 0.875])
    x, y = np.array([0.0, 2.0, 5.0, 7.0]), np.array([1.0, 3.0, 4.0, 6.0])
    rx, ry = (np.array(list(itertools.product(v, repeat=4)))[:, :, None] for v in (x, y))
    wins = (rx[:, None] > ry.transpose(0, 2, 1)[None]).mean(axis=(-2, -1))  # every resampled pair of groups
    ties = (rx[:, None] == ry.transpose(0, 2, 1)[None]).mean(axis=(-2, -1))
    values = np.sort(np.round(wins + 0.5 * ties, 12).ravel())
    assert values.size == 4**8 and values[0] == 0.0 and values[-1] == 1.0
    support, counts = np.unique(values, return_counts=True)
    cdf = np.cumsum(counts) / values.size
    levels = (0.05, 0.95)
    exact = tuple(float(support[np.searchsorted(cdf, q)]) for q in levels)
    assert min(np.min(np.abs(cdf - q)) for q in levels) > 7 * math.sqrt(0.05 * 0.95 / 50_000)
    p, lo, hi = probability_of_improvement(x, y, n_resamples=50_000, confidence=0.9, seed=4)
    assert p == pytest.approx(hand_improvement(x, y)) and (lo, hi) == (pytest.approx(exact[0]), pytest.approx(exact[1]))
    assert probability_of_improvement([5.0, 6.0], [1.0, 2.0]) == (1.0, 1.0, 1.0)  # every resample: all pairs won
    p, lo, hi = probability_of_improvement([5.0], [1.0, 2.0])
    assert p == 1.0 and math.isnan(lo) and math.isnan(hi)
