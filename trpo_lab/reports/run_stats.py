"""Per-run statistics of the steps, defined once for every report and study script.

A run's record is its ``metrics.jsonl`` rows, one per update k (row k measures update k). Every statistic
here is taken over the run's **formed updates** U = {k : ``step/skipped``_k ≠ 1}. An update where no step
could be formed logs 0 as a placeholder for every step number (``PolicyUpdateStats.for_skipped``), so
counting it would call it a rejected step that the line search shortened, with KL/δ = 0; skipped updates
are left out of numerator *and* denominator and counted on their own (:func:`skipped_updates`).

A value missing on an update (null in the JSON, e.g. ``return/delta`` before the first finished episode, on
the last update, or, in runs logged before the return window, after a batch that finished no episode; or
``paired/outcome`` of an update the paired evaluation did not measure) is
**undefined**: it is never a fall, a "did not rise" or a zero; it is left out of numerator and
denominator, and each :class:`Share` carries how many updates it was defined on. With
D = {k ∈ U : the key is defined on update k}:

- ``violation_rate`` = |{k ∈ D : ``step/constraint_violated``_k > 0}| / |D|: the step taken broke the constraint.
- ``accepted_rate`` = |{k ∈ D : ``line_search/accepted``_k > 0}| / |D|; ``line_search_rejected`` = the rest of D
  (no candidate accepted, old parameters kept).
- ``line_search_acted`` = |{k ∈ D : ``step/fraction``_k < 1}| / |D|: the step taken is shorter than the full
  step (the line search backtracked or rejected).
- ``full_step_violation_rate``: the same share for ``full_step/constraint_violated`` (the full KL-scaled step
  √(2δ/κ)·x before any line search; counterfactual for a fixed step rule).
- ``return_rose_rate`` = |{k ∈ D : ``return/delta``_k > 0}| / |D|, ``return/delta``_k = R̄_{k+1} − R̄_k with R̄_k
  the training-return proxy after batch k (the mean of the last M finished episodes, several policies' worth;
  0 when batch k+1 finished none: that "no new evidence" is undefined, :func:`fresh_evidence`). The first
  defined delta counts.
- ``surrogate_not_raised_rate``: the share with ``step/surrogate_actual`` ≤ 0.
- ``mean_backtracks`` = mean_{k ∈ D} ``line_search/backtracks``_k.
- ``kl_over_delta_median`` = median_{k ∈ D} ``step/kl_over_delta``_k (the constrained KL statistic of the step taken / δ).
- paired evaluation (``paired/outcome``: 1 improved, −1 worsened, 0 unresolved): measured = |D|, resolved =
  |{o ≠ 0}|, improved = |{o = 1}|, worsened = |{o = −1}|; ``improved_fraction`` = improved / resolved,
  ``resolved_share`` = resolved / measured.
- ``collapses``: the trainer's count over every update (``summary.json``, else the last ``monotonic/collapses``).

Across the runs of one variant (its seeds), one rule each (:func:`mean_over_runs`, :func:`median_over_runs`):
a rate (a share, a mean, a count per run) is the mean over the runs on which it is defined, with its
percentile-bootstrap CI over runs (:func:`trpo_lab.stats.mean_ci`); a median is the median over runs of
the per-run medians; a count of updates is the sum over runs.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trpo_lab.runs import as_float

Rows = Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class Share:
    """``hits`` of the ``defined`` updates; :attr:`value` = hits / defined, NaN when nothing is defined."""

    hits: int
    defined: int

    @property
    def value(self) -> float:
        return self.hits / self.defined if self.defined else math.nan


@dataclass(frozen=True)
class PairedCounts:
    """A run's paired-evaluation outcomes on its formed updates."""

    measured: int
    resolved: int
    improved: int
    worsened: int

    @property
    def improved_fraction(self) -> Share:
        """improved / resolved."""
        return Share(self.improved, self.resolved)

    @property
    def resolved_share(self) -> Share:
        """resolved / measured."""
        return Share(self.resolved, self.measured)


def column(rows: Rows, key: str) -> np.ndarray:
    """``key`` over the updates as floats; null or missing → NaN."""
    return np.array([as_float(r.get(key)) for r in rows], dtype=float)


def formed(rows: Rows) -> np.ndarray:
    """Mask of the formed updates (``step/skipped`` ≠ 1; a run that never logged the key skipped nothing)."""
    return ~(np.nan_to_num(column(rows, "step/skipped"), nan=0.0) > 0)


def skipped_updates(rows: Rows) -> int:
    """Updates where no step could be formed (``step/skipped`` = 1)."""
    return int((~formed(rows)).sum())


def fresh_evidence(rows: Rows) -> np.ndarray:
    """Mask of the updates whose ``return/delta`` rests on new episodes: the next batch finished some (the next
    row's ``return/window_fresh`` > 0). Without new episodes the proxy does not move and the delta is 0 by
    construction, "no new evidence", so it is undefined here. The last row (no next batch) and runs logged
    before the key existed: True (their deltas are null where there was no evidence)."""
    fresh = column(rows, "return/window_fresh")
    nxt = np.append(fresh[1:], math.nan)
    return ~(nxt == 0)


def step_values(rows: Rows, key: str) -> np.ndarray:
    """``key`` on the formed updates where it is defined (finite), in update order; ``return/delta`` only where it
    rests on new episodes (:func:`fresh_evidence`)."""
    mask = formed(rows) & (fresh_evidence(rows) if key == "return/delta" else True)
    v = column(rows, key)[mask]
    return v[np.isfinite(v)]


def share(rows: Rows, key: str, predicate: Callable[[np.ndarray], np.ndarray]) -> Share:
    """The formed updates with ``key`` defined, and of those the ones where ``predicate`` holds."""
    v = step_values(rows, key)
    return Share(int(np.count_nonzero(predicate(v))), int(v.size))


def violation_rate(rows: Rows) -> Share:
    return share(rows, "step/constraint_violated", lambda v: v > 0)


def accepted_rate(rows: Rows) -> Share:
    return share(rows, "line_search/accepted", lambda v: v > 0)


def line_search_rejected(rows: Rows) -> Share:
    return share(rows, "line_search/accepted", lambda v: ~(v > 0))


def line_search_acted(rows: Rows) -> Share:
    return share(rows, "step/fraction", lambda v: v < 1)


def full_step_violation_rate(rows: Rows) -> Share:
    return share(rows, "full_step/constraint_violated", lambda v: v > 0)


def return_rose_rate(rows: Rows) -> Share:
    return share(rows, "return/delta", lambda v: v > 0)


def surrogate_not_raised_rate(rows: Rows) -> Share:
    return share(rows, "step/surrogate_actual", lambda v: v <= 0)


def mean_of(rows: Rows, key: str) -> float:
    """Mean of ``key`` over the formed updates where it is defined (NaN if none)."""
    v = step_values(rows, key)
    return float(v.mean()) if v.size else math.nan


def median_of(rows: Rows, key: str) -> float:
    """Median of ``key`` over the formed updates where it is defined (NaN if none)."""
    v = step_values(rows, key)
    return float(np.median(v)) if v.size else math.nan


def kl_over_delta_median(rows: Rows) -> float:
    return median_of(rows, "step/kl_over_delta")


def paired_counts(rows: Rows) -> PairedCounts | None:
    """The paired-evaluation counts, or None when no row has the key (the run's code predates it)."""
    if not any("paired/outcome" in r for r in rows):
        return None
    o = step_values(rows, "paired/outcome")
    improved, worsened = int((o == 1).sum()), int((o == -1).sum())
    return PairedCounts(measured=int(o.size), resolved=int((o != 0).sum()), improved=improved, worsened=worsened)


def collapses(rows: Rows, summary: Mapping[str, Any] | None) -> float:
    """The trainer's collapse count: ``summary["collapses"]``, else the last logged ``monotonic/collapses``, else NaN."""
    value = (summary or {}).get("collapses")
    if value is None:
        v = column(rows, "monotonic/collapses")
        v = v[np.isfinite(v)]
        return float(v[-1]) if v.size else math.nan
    return float(value)


#: the per-run shares, by name
SHARES: dict[str, Callable[[Rows], Share]] = {
    "violation_rate": violation_rate,
    "accepted_rate": accepted_rate,
    "line_search_rejected": line_search_rejected,
    "line_search_acted": line_search_acted,
    "full_step_violation_rate": full_step_violation_rate,
    "return_rose_rate": return_rose_rate,
    "surrogate_not_raised_rate": surrogate_not_raised_rate,
}


def mean_over_runs(values: Iterable[float | None]) -> float:
    """A rate across runs: the mean over the runs on which it is defined (NaN when none is)."""
    v = np.array([math.nan if x is None else x for x in values], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else math.nan


def median_over_runs(values: Iterable[float | None]) -> float:
    """A median across runs: the median of the per-run medians defined (NaN when none is)."""
    v = np.array([math.nan if x is None else x for x in values], dtype=float)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else math.nan


def defined_runs(values: Iterable[float | None]) -> int:
    """How many runs a per-run value is defined on."""
    return sum(x is not None and math.isfinite(x) for x in values)
