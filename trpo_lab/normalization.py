"""Normalised scores: a task's return on the scale from a random policy (0) to a reference score (1).

    normalised(x) = (x − random) / (reference − random)

so that returns of different tasks can be pooled (the aggregate IQM, the performance profile:
:mod:`trpo_lab.aggregate`). A task without both anchors is not normalised (:func:`anchors` gives None).

- **random**: the mean return of a uniform-random policy over 10 episodes under the lab's evaluation protocol
  (envs reset with seed 0 + ``eval.seed_offset``, raw rewards, one episode per env), measured by
  ``python scripts/random_scores.py`` at commit f8d2b76 (gymnasium v5 tasks; its output is recorded in
  ``experiments/REFERENCES.md``).
- **reference**: SB3-contrib's documented TRPO result (its documentation's "Results": the final evaluation
  return, mean over 3 seeds, 1M env steps, MuJoCo **v3**), copied from ``experiments/REFERENCES.md``. It is a
  published figure on an older env version, used only as the scale's 1, never as a result to beat.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: uniform-random policy, mean return over 10 episodes (scripts/random_scores.py, seed 0, commit f8d2b76)
RANDOM_SCORES: dict[str, float] = {
    "Ant-v5": -66.59, "HalfCheetah-v5": -296.94, "Hopper-v5": 22.25, "Humanoid-v5": 91.48,
    "InvertedDoublePendulum-v5": 48.25, "InvertedPendulum-v5": 5.40, "Reacher-v5": -42.26,
    "Swimmer-v5": 1.81, "Walker2d-v5": 1.66,
}
#: SB3-contrib TRPO documentation, final eval return (mean over 3 seeds, 1M steps, MuJoCo v3)
REFERENCE_SCORES: dict[str, float] = {
    "HalfCheetah-v5": 1803.0, "Hopper-v5": 3372.0, "Walker2d-v5": 4502.0, "Swimmer-v5": 359.0, "Ant-v5": 3554.0,
}
RANDOM_SOURCE = "uniform-random policy, 10 episodes, lab eval protocol (scripts/random_scores.py)"
REFERENCE_SOURCE = "SB3-contrib TRPO docs: final eval return, mean of 3 seeds, 1M steps, MuJoCo v3"


def anchors(task: str) -> tuple[float, float] | None:
    """``(random, reference)`` of ``task``, or None when either is unknown."""
    if task in RANDOM_SCORES and task in REFERENCE_SCORES:
        return RANDOM_SCORES[task], REFERENCE_SCORES[task]
    return None


def normalize(task: str, scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """(scores − random) / (reference − random) for ``task``; raises KeyError when the task has no anchors."""
    pair = anchors(task)
    if pair is None:
        raise KeyError(f"{task}: no random-policy and reference score to normalise with")
    random, reference = pair
    return (np.asarray(scores, dtype=float) - random) / (reference - random)
