"""Statistics across runs: thin, seeded wrappers over :mod:`scipy.stats`.

- :func:`iqm`: the interquartile mean, ``scipy.stats.trim_mean(x, 0.25)`` (sort, drop ⌊n/4⌋ values at
  each end, average the rest; rliable's IQM).
- :func:`bootstrap_ci`: a percentile bootstrap CI (``scipy.stats.bootstrap(..., method="percentile")``),
  stratified when given several strata: each stratum (e.g. one task's seeds) is resampled on its own,
  and the statistic is taken over their concatenation (Agarwal et al. 2021).
- :func:`difference_ci` (**unpaired**): the difference of two groups' means, mean(a) − mean(b), with its CI,
  each group resampled on its own. For runs that share nothing (the peer's code against ours, or different seeds).
- :func:`paired_difference_ci` (**paired**): the mean of the per-pair differences, mean(a_i − b_i), with its
  CI, the pairs resampled as pairs. For runs that share a seed (same seed, same initial conditions: two of our
  variants on one task), where the shared part of the noise cancels in each difference.
- :func:`probability_of_improvement`: P(X > Y) + ½ P(X = Y) over runs, rliable's Mann–Whitney form, with its CI.
- :func:`mean_ci`, :func:`bootstrap_band`: the mean over runs with its CI, for one number per run or for
  whole curves (seeds resampled as whole curves, the same resample at every point).

Every CI is seeded (``seed`` → :func:`numpy.random.default_rng`), so a table re-made from the same runs
is the same table.

Why not rliable: checked with rliable 1.2.0 and arch 7.2.0, rliable does not import next to pandas 3
(arch fails), and with pandas < 3 three calls of ``get_interval_estimates`` with
``random_state=np.random.RandomState(0)`` gave three different CIs (arch deprecates that argument),
while a published table must come out the same when re-run. The two pieces needed, the IQM and the
(stratified) percentile bootstrap, are in scipy.

Needs scipy (the ``analysis`` extra); the sweep summary never imports this module.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats as _scipy_stats

#: a statistic over the last axis that keeps the others: ``f(x, axis=-1)``, e.g. :func:`iqm`, :func:`numpy.mean`
Statistic = Callable[..., np.ndarray | float]


def iqm(x: Sequence[float] | np.ndarray, axis: int | None = None) -> float | np.ndarray:
    """Interquartile mean: ``scipy.stats.trim_mean(x, 0.25)``; NaN for an empty ``x``."""
    x = np.asarray(x, dtype=float)
    if x.size == 0:
        return math.nan
    value = _scipy_stats.trim_mean(x, 0.25, axis=axis)
    return float(value) if np.ndim(value) == 0 else value


def bootstrap_ci(
    strata: Sequence[Sequence[float] | np.ndarray],
    statistic: Statistic,
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over all scores, resampling within each stratum.

    Each resample draws, for every stratum, as many scores as it holds, with replacement and
    independently of the other strata, and applies ``statistic`` to their concatenation. With one
    stratum it is the ordinary percentile bootstrap.

    Args:
        strata: the scores of each stratum.
        statistic: ``f(x, axis=-1)`` (vectorised over resamples), e.g. :func:`iqm` or :func:`numpy.mean`.
        n_resamples: bootstrap resamples.
        confidence: the CI's coverage, e.g. 0.95.
        seed: seeds the resampling, so the same call gives the same CI.
    Returns:
        ``(lower, upper)``: the (1−c)/2 and (1+c)/2 percentiles of the resampled statistic; NaN when a
        stratum holds fewer than two scores (one run gives no interval).
    """
    arrays = [np.asarray(s, dtype=float).ravel() for s in strata]
    if not arrays or any(a.size < 2 for a in arrays):
        return math.nan, math.nan

    def pooled(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        return statistic(np.concatenate(samples, axis=axis), axis=axis)

    result = _scipy_stats.bootstrap(
        tuple(arrays), pooled, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
        vectorized=True, random_state=np.random.default_rng(seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mean_ci(
    values: Sequence[float] | np.ndarray, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``(mean, lower, upper)``: the mean of the finite ``values`` (one per run) and its percentile bootstrap CI."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    lo, hi = bootstrap_ci([v], np.mean, n_resamples, confidence, seed)
    return float(v.mean()), lo, hi


def difference_ci(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_resamples: int = 10_000,
    confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float, float]:
    """**Unpaired**: ``(mean(a) − mean(b), lower, upper)``, the difference of two independent groups' means (e.g.
    our runs and the peer's) with a percentile bootstrap CI, each group resampled on its own. NaN bounds when a
    group holds fewer than two values; when both groups are constant every resample gives the same difference,
    which is then its own interval. Runs paired by seed: :func:`paired_difference_ci`."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = float(x.mean() - y.mean())
    if min(x.size, y.size) < 2:
        return d, math.nan, math.nan
    if np.ptp(x) == 0 and np.ptp(y) == 0:  # scipy calls this degenerate and returns NaN
        return d, d, d
    result = _scipy_stats.bootstrap(
        (x, y), lambda u, v, axis=-1: u.mean(axis=axis) - v.mean(axis=axis), n_resamples=n_resamples,
        confidence_level=confidence, method="percentile", vectorized=True, random_state=np.random.default_rng(seed),
    )
    return d, float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_band(
    curves: np.ndarray, n_resamples: int = 2_000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over runs of ``curves`` (runs × points) and a percentile bootstrap band at each point.

    Runs are resampled as whole curves: one resample uses the same runs at every point. Points where
    any run is NaN get NaN; with fewer than two runs the band is NaN.
    """
    curves = np.asarray(curves, dtype=float)
    mean = curves.mean(axis=0)
    lo, hi = np.full_like(mean, np.nan), np.full_like(mean, np.nan)
    ok = np.isfinite(mean)
    if curves.shape[0] >= 2 and ok.any():
        result = _scipy_stats.bootstrap(
            (curves[:, ok],), np.mean, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
            axis=0, vectorized=True, random_state=np.random.default_rng(seed),
        )
        lo[ok], hi[ok] = result.confidence_interval.low, result.confidence_interval.high
    return mean, lo, hi


def _percentile_ci(
    samples: tuple[np.ndarray, ...], statistic: Statistic, n_resamples: int, confidence: float, seed: int,
    paired: bool = False,
) -> tuple[float, float]:
    """``scipy.stats.bootstrap``'s percentile CI of a vectorised ``statistic(*samples, axis=-1)``; a constant
    bootstrap distribution is its own interval (scipy may call it degenerate and return NaN)."""
    result = _scipy_stats.bootstrap(
        samples, statistic, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
        vectorized=True, paired=paired, random_state=np.random.default_rng(seed),
    )
    dist = np.asarray(result.bootstrap_distribution)
    if np.ptp(dist) == 0:
        return float(dist.flat[0]), float(dist.flat[0])
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def paired_difference_ci(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_resamples: int = 10_000,
    confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float, float]:
    """**Paired**: ``(d̄, lower, upper)`` with d_i = a_i − b_i, a_i and b_i the runs of pair i (one seed), and
    d̄ = (1/n) Σ_i d_i, with a percentile bootstrap CI that resamples the n pairs (i.e. the d_i) with replacement.

    Two groups equal run by run give exactly (0, 0, 0). NaN bounds for fewer than two pairs. Raises ValueError
    when the groups differ in length (pairs must be matched by the caller, e.g. by seed)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"paired groups must be 1-d and of one length, got {x.shape} and {y.shape}")
    d = x - y
    if d.size == 0:
        return math.nan, math.nan, math.nan
    if d.size < 2:
        return float(d[0]), math.nan, math.nan
    lo, hi = _percentile_ci((d,), np.mean, n_resamples, confidence, seed)
    return float(d.mean()), lo, hi


def _improvement_probability(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray | float:
    """(1/(n·m)) Σ_i Σ_j ([x_i > y_j] + ½[x_i = y_j]) over the last axis, vectorised over the leading axes."""
    x, y = np.moveaxis(np.asarray(x), axis, -1), np.moveaxis(np.asarray(y), axis, -1)
    gt = (x[..., :, None] > y[..., None, :]).mean(axis=(-2, -1))
    eq = (x[..., :, None] == y[..., None, :]).mean(axis=(-2, -1))
    return gt + 0.5 * eq


def probability_of_improvement(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, n_resamples: int = 10_000,
    confidence: float = 0.95, seed: int = 0,
) -> tuple[float, float, float]:
    """``(P, lower, upper)``: the probability that a run of X scores above a run of Y (Agarwal et al. 2021, rliable),

        P(X > Y) = (1/(n·m)) Σ_{i=1..n} Σ_{j=1..m} S(x_i, y_j),   S(u, v) = 1 if u > v, ½ if u = v, 0 if u < v,

    which is the Mann–Whitney U statistic of X over Y divided by n·m (``scipy.stats.mannwhitneyu(x, y).statistic
    / (n·m)``). The CI is the percentile bootstrap with X and Y each resampled on its own (unpaired; rliable's per
    task). P = ½ when the groups are equal; NaN bounds when a group holds fewer than two runs; NaN for an empty one.
    """
    u, v = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if u.size == 0 or v.size == 0:
        return math.nan, math.nan, math.nan
    p = float(_improvement_probability(u, v))
    if min(u.size, v.size) < 2:
        return p, math.nan, math.nan
    return (p, *_percentile_ci((u, v), _improvement_probability, n_resamples, confidence, seed))
