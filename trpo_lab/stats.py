"""Statistics across runs: thin, seeded wrappers over :mod:`scipy.stats`.

- :func:`iqm`: the interquartile mean, ``scipy.stats.trim_mean(x, 0.25)`` (sort, drop ⌊n/4⌋ values at
  each end, average the rest; rliable's IQM).
- :func:`bootstrap_ci`: a percentile bootstrap CI (``scipy.stats.bootstrap(..., method="percentile")``),
  stratified when given several strata: each stratum (e.g. one task's seeds) is resampled on its own,
  and the statistic is taken over their concatenation (Agarwal et al. 2021).
- :func:`difference_ci`: the difference of two groups' means with its CI (each group resampled on its own).
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
    """``(mean(a) − mean(b), lower, upper)``: the difference of two groups' means (e.g. two variants' runs) with a
    percentile bootstrap CI, each group resampled on its own. NaN bounds when a group holds fewer than two values;
    when both groups are constant every resample gives the same difference, which is then its own interval."""
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
