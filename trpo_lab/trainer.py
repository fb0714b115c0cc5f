"""The one training loop shared by every variant: collect → update the policy → fit the critic → log.

Also: periodic deterministic evaluation, the paired old-vs-new evaluation every k-th update,
checkpoints (every N updates, at the end, and on SIGTERM/SIGINT), resuming, and the guard that stops
a run whose updates keep failing.

Attribution: every number on update k's row measures update k. The row is written once batch k+1
has been collected, so that ``return/delta`` = return(batch k+1) − return(batch k); the row of the
last update, and of an update after which a stop signal arrived, has ``return/delta`` null (no batch
follows it); a periodic checkpoint holds the pending row, so a resumed run completes it.
"""
from __future__ import annotations

import copy
import logging
import math
import resource
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trpo_lab.run_folder import CHECKPOINT, write_checkpoint
from trpo_lab.critic import CriticFitter
from trpo_lab.envs import ObservationNormalizer, RewardScaler
from trpo_lab.evaluate import evaluate_policy, paired_evaluation
from trpo_lab.metrics import MonotonicTracker, PairedDifference, bound_terms, normalizer_kl_shift
from trpo_lab.sinks import ConsoleProgress, JsonlSink, WandbSink
from trpo_lab.natural.update import NaturalGradientUpdate
from trpo_lab.policies import Policy, ValueFunction
from trpo_lab.rollout import RolloutCollector

log = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT/SIGUSR2 arrived; a checkpoint was written after the update in flight."""

    def __init__(self, signum: int, env_steps: int) -> None:
        self.signum, self.env_steps = signum, env_steps
        super().__init__(f"stopped by {signal.Signals(signum).name} after {env_steps} env steps; checkpoint written")


class TrainingDiverged(RuntimeError):
    """Too many consecutive updates could not be formed (non-finite numbers)."""


@dataclass
class Sinks:
    jsonl: JsonlSink
    console: ConsoleProgress
    wandb: WandbSink | None = None

    def log(self, row: dict[str, Any], new_steps: int) -> None:
        self.jsonl.log(row)
        self.console.log(row, new_steps)
        if self.wandb is not None:
            self.wandb.log(row)

    def close(self) -> None:
        self.console.close()
        self.jsonl.close()
        if self.wandb is not None:
            self.wandb.close()


@dataclass
class Evaluation:
    """Evaluation settings and envs.

    Args:
        envs: a vector env with one env per deterministic evaluation episode (None: no periodic evaluation).
        every: evaluate deterministically every this many updates (and after the last one); 0 disables.
        seed: the eval envs' reset seed, the same at every evaluation so curves compare like with like.
        paired_envs: one env per episode of the paired old-vs-new evaluation (None: off). π_old and
            π_new, stochastic as trained, run on common random numbers: the same env seeds and the same
            action-noise stream, fresh ones at each measured update.
        paired_every: measure every this many updates (0: never).
    """

    envs: Any = None
    every: int = 0
    seed: int = 10_000
    paired_envs: Any = None
    paired_every: int = 0

    def paired_due(self, update: int) -> bool:
        return self.paired_envs is not None and self.paired_every > 0 and update % self.paired_every == 0

    def close(self) -> None:
        for e in (self.envs, self.paired_envs):
            if e is not None:
                e.close()


@dataclass
class Trainer:
    """Runs updates until ``total_env_steps`` env steps have been collected.

    Args:
        collector: produces batches.
        update: the natural-gradient policy update (the variant is in its pieces).
        critic_fitter: fits V after each policy update.
        policy, critic: the networks (for checkpoints).
        obs_normalizer, reward_scaler: their statistics go into checkpoints.
        gamma: the discount, for the TRPO bound terms.
        total_env_steps: stop once this many env steps have been collected.
        run_dir: where ``checkpoint.pt`` is written.
        sinks: metric sinks.
        seed: the run's seed (env reseeding on resume).
        checkpoint_every: write a checkpoint every this many updates (0: only at the end).
        max_consecutive_skips: stop with :class:`TrainingDiverged` after this many skipped updates in a row.
        evaluation: periodic and paired evaluation.
        monotonic: the return accounting across updates.
        normalizer_warmup: env steps run before the first batch only to fit the observation and
            reward statistics (rounded up to a multiple of the env count; counted in ``env_steps``); 0: none.
    """

    collector: RolloutCollector
    update: NaturalGradientUpdate
    critic_fitter: CriticFitter
    policy: Policy
    critic: ValueFunction
    obs_normalizer: ObservationNormalizer
    reward_scaler: RewardScaler
    gamma: float
    total_env_steps: int
    run_dir: Path
    sinks: Sinks | None = None
    seed: int = 0
    checkpoint_every: int = 50
    max_consecutive_skips: int = 5
    evaluation: Evaluation = field(default_factory=Evaluation)
    monotonic: MonotonicTracker = field(default_factory=MonotonicTracker)
    normalizer_warmup: int = 0
    env_steps: int = 0
    updates: int = 0
    last_return: float | None = None
    last_eval: dict[str, float] | None = None
    consecutive_skips: int = 0
    totals: dict[str, float] = field(default_factory=lambda: {"violated": 0.0, "accepted": 0.0, "skipped": 0.0})
    time_split: dict[str, float] = field(
        default_factory=lambda: {"rollout": 0.0, "update": 0.0, "critic": 0.0, "eval": 0.0, "paired": 0.0})
    pending_row: dict[str, Any] | None = None  # update k's row, written once batch k+1 gives its return/delta
    _logged_steps: int = 0  # env_steps of the last row written (console progress)
    _stop_signal: int | None = None

    # -- the loop ------------------------------------------------------------------------------------
    def run_updates(self) -> dict[str, Any]:
        """Update until ``total_env_steps`` env steps have been collected; write the final checkpoint; return the summary."""
        assert self.sinks is not None, "attach sinks before running updates"
        t_start = time.perf_counter()
        previous = self._install_signal_handlers()
        try:
            if self.env_steps == 0 and self.updates == 0 and self.normalizer_warmup > 0:
                self.env_steps += self.collector.warm_up(self.normalizer_warmup)
            while self.env_steps < self.total_env_steps:
                if self._stop_signal is not None:
                    self._write_pending(math.nan)  # no batch follows before the stop: return/delta unknown
                    self._checkpoint_at_signal(self._stop_signal, previous)
                    raise TrainingInterrupted(self._stop_signal, self.env_steps)
                self._one_update()
            self._write_pending(math.nan)
            self.save_checkpoint()
            summary = self.summary(time.perf_counter() - t_start)
            if self.sinks.wandb is not None:
                self.sinks.wandb.summary(summary)
            return summary
        finally:
            self._restore_signal_handlers(previous)
            self.sinks.close()
            self.evaluation.close()

    def _one_update(self) -> None:
        t0 = time.perf_counter()
        normalizer_before = copy.deepcopy(self.obs_normalizer)
        batch = self.collector.collect()
        t1 = time.perf_counter()
        batch_return = float(np.mean(batch.episode_returns)) if batch.episode_returns else math.nan
        self._write_pending(batch_return)  # this batch is the one after the previous update
        paired = self.evaluation.paired_due(self.updates + 1)
        old_policy = copy.deepcopy(self.policy) if paired else None
        stats = self.update(self.policy, batch.obs, batch.actions, batch.log_prob_old, batch.advantages)
        # θ_{k+1} was fitted to inputs normalised with the statistics batch k was collected with, but acts
        # on batch k+1 with the statistics updated by batch k: the KL of that change alone, at θ_{k+1}
        shift_mean, shift_max = normalizer_kl_shift(self.policy, batch.raw_obs, normalizer_before, self.obs_normalizer)
        t2 = time.perf_counter()
        if torch.isfinite(batch.returns).all():
            critic_stats = self.critic_fitter.fit(batch.obs, batch.returns, batch.values).to_dict()
        else:  # Why: one NaN target would poison the critic's Adam state for good
            critic_stats = {"critic/loss": math.nan, "critic/explained_variance": math.nan}
        t3 = time.perf_counter()
        self.env_steps += batch.size
        self.updates += 1
        if batch.episode_returns:
            self.last_return = batch_return

        row: dict[str, Any] = {"env_steps": self.env_steps, "update": self.updates}
        row["return/mean"] = batch_return  # batch k, collected by π_k (before this update)
        row["return/episodes"] = len(batch.episode_returns)
        row["episode/length_mean"] = float(np.mean(batch.episode_lengths)) if batch.episode_lengths else math.nan
        row.update(stats.to_dict())
        row.update(critic_stats)
        row.update(bound_terms(stats.adv_max_abs, self.gamma, stats.ratio_advantage_mean, stats.kl_max))
        row["normalizer/kl_shift"], row["normalizer/kl_shift_max"] = shift_mean, shift_max
        row.update(self._evaluate())
        t4 = time.perf_counter()
        difference = self._paired(old_policy, normalizer_before) if old_policy is not None else None
        row.update(difference.to_dict() if difference is not None else PairedDifference.not_measured())
        row.update(self.monotonic.record_outcome(difference.outcome if difference is not None else None))
        t5 = time.perf_counter()
        for k, dt in (("rollout", t1 - t0), ("update", t2 - t1), ("critic", t3 - t2), ("eval", t4 - t3),
                      ("paired", t5 - t4)):
            self.time_split[k] += dt
            row[f"time/{k}_s"] = dt
        row["perf/env_steps_per_s"] = batch.size / (t3 - t0)
        row["perf/max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.totals["violated"] += stats.constraint_violated
        self.totals["accepted"] += stats.accepted
        self.totals["skipped"] += stats.skipped
        self.pending_row = row

        self.consecutive_skips = self.consecutive_skips + 1 if stats.skipped else 0
        if self.consecutive_skips >= self.max_consecutive_skips:
            self._write_pending(math.nan)
            raise TrainingDiverged(
                f"{self.consecutive_skips} consecutive updates were skipped (last reason: {stats.skipped_reason}); "
                f"stopping. metrics.jsonl and the last good checkpoint ({self.run_dir / CHECKPOINT}) are kept."
            )
        if self.checkpoint_every and self.updates % self.checkpoint_every == 0:
            self.save_checkpoint()

    @property
    def rows_written(self) -> int:
        """The updates whose rows are in ``metrics.jsonl`` (all but the pending one)."""
        return self.updates - (self.pending_row is not None)

    def _write_pending(self, return_after: float) -> None:
        """Complete the pending row (update k) with the return of batch k+1 (NaN: none) and write it."""
        row, self.pending_row = self.pending_row, None
        if row is None:
            return
        row.update(self.monotonic.record_returns(row["return/mean"], return_after))
        assert self.sinks is not None
        self.sinks.log(row, row["env_steps"] - self._logged_steps)
        self._logged_steps = row["env_steps"]

    def _evaluate(self) -> dict[str, float]:
        """Deterministic evaluation every ``evaluation.every`` updates and after the last one."""
        ev = self.evaluation
        last = self.env_steps >= self.total_env_steps
        if ev.envs is not None and ev.every and (self.updates % ev.every == 0 or last):
            r = evaluate_policy(self.policy, ev.envs, ev.seed, self.obs_normalizer)
            out = {"eval/return_mean": float(np.mean(r)), "eval/return_std": float(np.std(r))}
            self.last_eval = {"return_mean": out["eval/return_mean"], "return_std": out["eval/return_std"],
                              "episodes": len(r), "update": self.updates}
            return out
        return {}

    def _paired(self, old_policy: Policy, normalizer_before: ObservationNormalizer) -> PairedDifference:
        """θ_k against θ_{k+1}, both with the normaliser statistics batch k was collected and the update
        computed with: the pair of Theorem 1, so a rejected step measures exactly 0. The statistics'
        own change is measured apart (``normalizer/kl_shift``)."""
        ev = self.evaluation
        seed = ev.seed + 1 + self.updates * ev.paired_envs.num_envs
        return paired_evaluation((old_policy, normalizer_before), (self.policy, normalizer_before),
                                 ev.paired_envs, seed, noise_seed=seed)

    # -- signals -------------------------------------------------------------------------------------
    #: SIGTERM/SIGINT: stop; SIGUSR2: submitit's (Slurm's --signal) "time limit or preemption is near"
    STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR2)

    def _install_signal_handlers(self) -> dict[int, Any]:
        """Catch the stop signals; the loop acts on them after the update in flight (never mid-checkpoint)."""
        previous: dict[int, Any] = {}

        def handler(signum, frame):  # noqa: ARG001
            self._stop_signal = signum

        for sig in self.STOP_SIGNALS:
            try:
                previous[sig] = signal.signal(sig, handler)
            except ValueError:  # not the main thread: leave the defaults
                pass
        return previous

    def _checkpoint_at_signal(self, signum: int, previous: dict[int, Any]) -> None:
        """Write the checkpoint (the update in flight has finished); at a SIGUSR2, then run the handler
        that was there before ours.

        Under submitit that is its ``checkpoint_and_try_requeue``: it calls the launcher's
        ``checkpoint()``, requeues the job (``scontrol requeue``) and exits; the requeued job resumes from
        the checkpoint just written, so no update is lost or redone. Our handlers are restored first, so
        the SIGTERM that the requeue sends reaches submitit's own handler. Without a previous Python
        handler (a plain run), or if it returns, the run stops as on SIGTERM.
        """
        self.save_checkpoint()
        log.warning(
            "%s: checkpoint written at update %d (%d env steps)",
            signal.Signals(signum).name, self.updates, self.env_steps,
        )
        before = previous.get(signal.SIGUSR2)
        if signum != signal.SIGUSR2 or not callable(before):
            return
        log.warning("handing SIGUSR2 over to %s", getattr(before, "__qualname__", before))
        self._restore_signal_handlers(previous)
        before(signum, None)

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, h in previous.items():
            signal.signal(sig, h)

    # -- summary -------------------------------------------------------------------------------------
    def summary(self, wall: float) -> dict[str, Any]:
        n = max(self.updates, 1)
        m = self.monotonic
        return {
            "env_steps": self.env_steps,
            "updates": self.updates,
            "final_return": self.last_return,
            "final_eval": self.last_eval,
            "best_return": m.best if m.best > -math.inf else None,
            "improved_fraction": m.improved_fraction,
            "resolved_updates": m.resolved,
            "collapses": m.collapses,
            "worst_drop": m.worst_drop,
            "violation_rate": self.totals["violated"] / n,
            "accepted_rate": self.totals["accepted"] / n,
            "skipped_updates": int(self.totals["skipped"]),
            "wall_s": wall,
            "env_steps_per_s": self.env_steps / wall if wall > 0 else None,
            "time_split_s": dict(self.time_split),
        }

    # -- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        wandb_run = self.sinks.wandb.run if self.sinks is not None and self.sinks.wandb is not None else None
        return {
            "policy": self.policy.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_optimizer": self.critic_fitter.optimizer.state_dict(),
            "obs_normalizer": self.obs_normalizer.state_dict(),
            "reward_scaler": self.reward_scaler.state_dict(),
            "monotonic": self.monotonic.state_dict(),
            "env_steps": self.env_steps,
            "updates": self.updates,
            "last_return": self.last_return,
            "last_eval": self.last_eval,
            "totals": dict(self.totals),
            "time_split": dict(self.time_split),
            "pending_row": self.pending_row,
            "torch_rng": torch.get_rng_state(),
            "wandb_run_id": wandb_run.id if wandb_run is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint. The envs are reseeded with (seed, updates): env-internal state
        is not restored, so a resumed run is reproducible but not bit-identical to an uninterrupted one."""
        self.policy.load_state_dict(state["policy"])
        self.critic.load_state_dict(state["critic"])
        self.critic_fitter.optimizer.load_state_dict(state["critic_optimizer"])
        self.obs_normalizer.load_state_dict(state["obs_normalizer"])
        self.reward_scaler.load_state_dict(state["reward_scaler"])
        self.monotonic.load_state_dict(state["monotonic"])
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])
        self.last_return = state.get("last_return")
        self.last_eval = state.get("last_eval")
        self.totals.update(state.get("totals", {}))
        self.time_split.update(state.get("time_split", {}))
        self.pending_row = state.get("pending_row")
        self._logged_steps = self.env_steps
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        self.collector.reset(seed=self.seed + 1_000_003 * self.updates)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint.pt`` atomically (temp file, then rename)."""
        return write_checkpoint(self.state_dict(), Path(self.run_dir) / CHECKPOINT)

