"""What the training loop runs at some updates, in the sense of SB3's callbacks: the deterministic
evaluation, the paired old-vs-new evaluation and the periodic checkpoint.

Each is a :class:`Scheduled` piece: ``due(update, last)`` says whether it runs at update k (``last``:
no update follows), ``run(trainer, done)`` does it and returns columns of update k's row. The loop
(:class:`~trpo_lab.trainer.Trainer`) asks its ``measurements`` (evaluation, paired evaluation) once
batch k is collected, before the policy step, and runs the due ones in order after the step and the
critic fit, each timed as ``time/{name}_s``; it runs its ``checkpoints`` once update k's row is complete
and pending, so that a checkpoint holds it. A piece keeps its own state (``state_dict``: entries of the
checkpoint beside the trainer's; ``summary``: entries of ``summary.json``) and its own envs (``close``).
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Mapping

import gymnasium as gym
import numpy as np

from trpo_lab.envs import ObservationNormalizer
from trpo_lab.evaluate import evaluate_policy, paired_evaluation
from trpo_lab.metrics import PairedDifference
from trpo_lab.policies import Policy

if TYPE_CHECKING:
    from trpo_lab.trainer import Trainer


@dataclass(frozen=True)
class UpdateDone:
    """Update k as the scheduled pieces see it (the trainer's counters already count it).

    Attributes:
        update: k.
        last: no update follows (``total_env_steps`` reached).
        policy_before: π_k, a copy taken before the step (only when some measurement was due).
        normalizer_before: the observation statistics batch k was collected, and update k computed, with.
    """

    update: int
    last: bool
    policy_before: Policy | None
    normalizer_before: ObservationNormalizer


class Scheduled:
    """One cadence of the loop. A piece defines :meth:`due` and :meth:`run`; the rest is optional."""

    #: its share of the time split, ``time/{name}_s`` (measurements)
    name: str = ""
    #: update k's columns when the piece does not run at k (the paired evaluation's nulls)
    idle_row: Mapping[str, Any] = MappingProxyType({})

    def due(self, update: int, last: bool) -> bool:
        raise NotImplementedError

    def run(self, trainer: Trainer, done: UpdateDone) -> dict[str, Any]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Entries of the checkpoint, next to the trainer's own."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Take the piece's entries back from a checkpoint (absent ones keep their defaults)."""

    def summary(self) -> dict[str, Any]:
        """Entries of ``summary.json``."""
        return {}

    def close(self) -> None:
        """Release what the piece holds (its envs)."""


class Evaluation(Scheduled):
    """The deterministic policy (the mode action), one episode per env of ``envs`` from ``reset(seed)``.

    Args:
        envs: one env per episode (None: never due).
        every: due at every ``every``-th update and after the last one; 0: never.
        seed: the envs' reset seed, the same at every evaluation so that curves compare like with like.
    """

    name = "eval"

    def __init__(self, envs: gym.vector.VectorEnv | None, every: int, seed: int) -> None:
        self.envs, self.every, self.seed = envs, every, seed
        self.last: dict[str, float] | None = None

    def due(self, update: int, last: bool) -> bool:
        return self.envs is not None and self.every > 0 and (update % self.every == 0 or last)

    def run(self, trainer: Trainer, done: UpdateDone) -> dict[str, Any]:
        r = evaluate_policy(trainer.policy, self.envs, self.seed, trainer.obs_normalizer)
        mean, std = float(np.mean(r)), float(np.std(r))
        self.last = {"return_mean": mean, "return_std": std, "episodes": len(r), "update": done.update}
        return {"eval/return_mean": mean, "eval/return_std": std}

    def state_dict(self) -> dict[str, Any]:
        return {"last_eval": self.last}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last = state.get("last_eval")

    def summary(self) -> dict[str, Any]:
        return {"final_eval": self.last}

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()


class PairedEvaluation(Scheduled):
    r"""η(π_{k+1}) − η(π_k) of update k on common random numbers (:func:`~trpo_lab.evaluate.paired_evaluation`).

    π_k and π_{k+1}, stochastic as trained, both act with the normaliser statistics batch k was collected
    and the update computed with: the pair of Theorem 1, so a rejected step measures exactly 0 (the
    statistics' own change is measured apart, ``normalizer/kl_shift``). Env seeds and the action-noise
    stream are ``seed + 1 + k·N`` (N = envs), fresh at each measured update.

    Args:
        envs: one env per episode of each policy (None: never due).
        every: due at every ``every``-th update; 0: never.
        seed: the base of the seeds above.
    """

    name = "paired"
    idle_row = MappingProxyType(PairedDifference.not_measured())

    def __init__(self, envs: gym.vector.VectorEnv | None, every: int, seed: int) -> None:
        self.envs, self.every, self.seed = envs, every, seed

    def due(self, update: int, last: bool) -> bool:
        return self.envs is not None and self.every > 0 and update % self.every == 0

    def run(self, trainer: Trainer, done: UpdateDone) -> dict[str, Any]:
        seed = self.seed + 1 + done.update * self.envs.num_envs
        before = done.normalizer_before
        difference = paired_evaluation((done.policy_before, before), (trainer.policy, before), self.envs, seed,
                                       noise_seed=seed)
        return difference.to_dict()

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()


class Checkpoints(Scheduled):
    """``checkpoint.pt`` at every ``every``-th update (0: never; the loop writes one at the end anyway)."""

    name = "checkpoint"

    def __init__(self, every: int) -> None:
        self.every = every

    def due(self, update: int, last: bool) -> bool:
        return self.every > 0 and update % self.every == 0

    def run(self, trainer: Trainer, done: UpdateDone) -> dict[str, Any]:
        trainer.save_checkpoint()
        return {}
