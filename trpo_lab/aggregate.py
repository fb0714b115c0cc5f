"""Statistics over several tasks at once, on normalised scores (:mod:`trpo_lab.normalization`), as rliable
defines them (Agarwal et al. 2021), on scipy with a seeded Generator (see :mod:`trpo_lab.stats` for why).

The input is ``{task: scores}``, one normalised score per run. Every CI is the **stratified** percentile
bootstrap: each task's runs are resampled on their own, as many as it holds, so every resample keeps every task.

- :func:`aggregate_iqm`: IQM over all runs of all tasks pooled (``trim_mean(·, 0.25)`` of the concatenation).
- :func:`performance_profile`: the run-score distribution F(τ) = (1/T) Σ_t (1/n_t) Σ_i [x_{t,i} > τ], the
  fraction of runs scoring above τ, each task weighted equally (rliable's with the same runs per task).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from scipy import stats as _scipy_stats

from trpo_lab.stats import bootstrap_ci, iqm

Scores = Mapping[str, Sequence[float] | np.ndarray]


def _strata(by_task: Scores) -> list[np.ndarray]:
    arrays = [np.asarray(v, dtype=float).ravel() for v in by_task.values()]
    if any(not np.all(np.isfinite(a)) for a in arrays):
        raise ValueError("scores must be finite")
    return arrays


def aggregate_iqm(
    by_task: Scores, n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """``(IQM, lower, upper)`` of every run's score over all tasks, with the stratified bootstrap CI
    (:func:`trpo_lab.stats.bootstrap_ci`); NaN for no runs, NaN bounds when a task holds fewer than two runs."""
    strata = _strata(by_task)
    if not strata or sum(a.size for a in strata) == 0:
        return math.nan, math.nan, math.nan
    value = iqm(np.concatenate(strata))
    return float(value), *bootstrap_ci(strata, iqm, n_resamples, confidence, seed)


def _profile(taus: np.ndarray):
    def statistic(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
        # one row per τ: mean over tasks of the share of that task's runs above τ
        shares = [(np.moveaxis(s, axis, -1)[..., None, :] > taus[:, None]).mean(axis=-1) for s in samples]
        return np.moveaxis(np.mean(shares, axis=0), -1, 0)
    return statistic


def performance_profile(
    by_task: Scores, taus: Sequence[float] | np.ndarray, n_resamples: int = 2_000, confidence: float = 0.95,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(F, lower, upper)`` at each τ of ``taus``: F(τ) = (1/T) Σ_t (1/n_t) Σ_i [x_{t,i} > τ] with a stratified
    percentile bootstrap band (one resample of every task's runs gives the whole curve). NaN bands when a task
    holds fewer than two runs; a point where every resample agrees is its own interval."""
    strata, taus = _strata(by_task), np.asarray(taus, dtype=float)
    if not strata or any(a.size == 0 for a in strata):
        raise ValueError("every task needs at least one score")
    statistic = _profile(taus)
    f = np.asarray(statistic(*[a[None, :] for a in strata]))[:, 0]
    if any(a.size < 2 for a in strata):
        return f, np.full_like(f, np.nan), np.full_like(f, np.nan)
    result = _scipy_stats.bootstrap(
        tuple(strata), statistic, n_resamples=n_resamples, confidence_level=confidence, method="percentile",
        vectorized=True, random_state=np.random.default_rng(seed),
    )
    lo, hi = np.asarray(result.confidence_interval.low, float), np.asarray(result.confidence_interval.high, float)
    dist = np.asarray(result.bootstrap_distribution)
    flat = np.ptp(dist, axis=-1) == 0  # scipy may call a constant point degenerate (NaN)
    lo[flat], hi[flat] = dist[flat, 0], dist[flat, 0]
    return f, lo, hi
