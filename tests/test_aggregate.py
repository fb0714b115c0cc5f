"""Across-task statistics (trpo_lab.aggregate, trpo_lab.normalization) against hand computations."""
from __future__ import annotations

import itertools
import math
import re
from pathlib import Path

import numpy as np
import pytest

from trpo_lab.aggregate import aggregate_iqm, performance_profile
from trpo_lab.normalization import RANDOM_SCORES, REFERENCE_SCORES, anchors, normalize

ROOT = Path(__file__).resolve().parents[1]


def raw(task: str, normalised: list[float]) -> list[float]:
    """The returns of ``task`` whose normalised scores are ``normalised``."""
    random, reference = RANDOM_SCORES[task], REFERENCE_SCORES[task]
    return [random + k * (reference - random) for k in normalised]


def test_normalised_iqm_over_two_tasks_by_hand():
    # 8 normalised scores: Hopper 0, 0.5, 1, 2 and Walker2d 0.25, 0.75, 1.5, 3 → pooled and sorted
    # 0, .25, .5, .75, 1, 1.5, 2, 3; the IQM drops 2 at each end: mean(.5, .75, 1, 1.5) = 0.9375
    hopper, walker = normalize("Hopper-v5", raw("Hopper-v5", [0, 0.5, 1, 2])), normalize("Walker2d-v5", raw("Walker2d-v5", [0.25, 0.75, 1.5, 3]))
    np.testing.assert_allclose(hopper, [0, 0.5, 1, 2], atol=1e-12)
    assert normalize("Hopper-v5", [22.25, 3372.0]).tolist() == [0.0, 1.0]  # the anchors themselves: 0 and 1
    value, lo, hi = aggregate_iqm({"Hopper-v5": hopper, "Walker2d-v5": walker})
    assert value == pytest.approx(0.9375)
    assert 0 <= lo < value < hi <= 3


def test_aggregate_iqm_is_stratified():
    # each task constant: every stratified resample keeps 4 zeros and 4 ones, so the pooled IQM is always
    # mean(0, 0, 1, 1) = 0.5; an unstratified resample of the 8 pooled runs would vary
    assert aggregate_iqm({"a": [0.0] * 4, "b": [1.0] * 4}) == (0.5, 0.5, 0.5)
    assert all(math.isnan(v) for v in aggregate_iqm({}))


def test_normalisation_needs_both_anchors_and_they_are_the_recorded_ones():
    assert anchors("Reacher-v5") is None  # a random score but no reference
    with pytest.raises(KeyError):
        normalize("CartPole-v1", [1.0])
    # the random-policy scores are the ones scripts/random_scores.py printed, as experiments/REFERENCES.md records them
    recorded = {m[0]: float(m[1]) for m in re.findall(r"^\| (\w+-v5) \| (-?\d+\.\d+) \|", (ROOT / "experiments" / "REFERENCES.md").read_text(), re.M)}
    assert recorded == RANDOM_SCORES


def test_performance_profile_on_a_hand_made_set():
    # task A 0.2, 0.6, 1.0, 1.4 and task B 0.5, 1.5, each task weighted ½:
    # τ = 0: 1; τ = 0.5: (3/4 + 1/2)/2 = 0.625 (0.5 is not > 0.5; pooling the 6 runs would give 4/6);
    # τ = 1: (1/4 + 1/2)/2 = 0.375; τ = 2: 0
    runs = {"A": [0.2, 0.6, 1.0, 1.4], "B": [0.5, 1.5]}
    f, lo, hi = performance_profile(runs, [0.0, 0.5, 1.0, 2.0], n_resamples=50_000, seed=5)
    np.testing.assert_allclose(f, [1.0, 0.625, 0.375, 0.0])
    assert (lo[0], hi[0], lo[3], hi[3]) == (1.0, 1.0, 0.0, 0.0)  # every resample agrees there
    # at τ = 0.5 the band is the enumerated stratified bootstrap's: 4⁴ × 2² equally likely resamples
    values = sorted((np.mean(np.array(a) > 0.5) + np.mean(np.array(b) > 0.5)) / 2
                    for a in itertools.product(runs["A"], repeat=4) for b in itertools.product(runs["B"], repeat=2))
    support, counts = np.unique(values, return_counts=True)
    cdf = np.cumsum(counts) / len(values)
    exact = [float(support[np.searchsorted(cdf, q)]) for q in (0.025, 0.975)]
    assert min(np.min(np.abs(cdf - q)) for q in (0.025, 0.975)) > 7 * math.sqrt(0.025 * 0.975 / 50_000)
    assert (lo[1], hi[1]) == (pytest.approx(exact[0]), pytest.approx(exact[1]))
    f, lo, hi = performance_profile({"A": [1.0], "B": [0.0, 2.0]}, [0.5])
    assert f[0] == pytest.approx(0.75) and np.isnan(lo[0]) and np.isnan(hi[0])  # one run: no band
