"""The one training loop shared by every variant: collect → update the policy → fit the critic → log.

Also: checkpoints at the end and on SIGTERM/SIGINT, resuming, the guard that stops a run whose updates
keep failing, and the pieces run at some updates (:mod:`trpo_lab.schedule`: the periodic deterministic
evaluation, the paired old-vs-new evaluation every k-th update, a checkpoint every N updates). The
trainer owns its envs (the collector's and the pieces'): use it as a context manager, which closes
them and the sinks whatever happens.

Attribution: every number on update k's row measures update k. The row is written once batch k+1
has been collected, so that ``return/delta`` = R̄_{k+1} − R̄_k, with R̄_k the training-return proxy after
batch k (:class:`~trpo_lab.return_window.ReturnWindow`: the mean raw return of the last M finished
episodes); the row of the last update has ``return/delta`` null (no batch follows it). A checkpoint holds the pending row, so a
resumed run completes it; at a stop signal the row is also written provisionally, with ``return/delta``
null, and a resume replaces it with the complete row (metrics.jsonl is cut back to the checkpoint).
"""
from __future__ import annotations

import copy
import logging
import math
import resource
import signal
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trpo_lab.run_folder import CHECKPOINT, write_checkpoint
from trpo_lab.critic import CriticFitter
from trpo_lab.envs import ObservationNormalizer, RewardScaler
from trpo_lab.metrics import MonotonicTracker, bound_terms, normalizer_kl_shift
from trpo_lab.sinks import Sinks
from trpo_lab.natural.update import NaturalGradientUpdate
from trpo_lab.policies import Policy
from trpo_lab.return_window import ReturnWindow
from trpo_lab.rollout import RolloutCollector
from trpo_lab.schedule import Checkpoints, Scheduled, UpdateDone
from trpo_lab.snapshots import SnapshotError
from trpo_lab.vine import NULL_SAMPLING_ROW

log = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """SIGTERM/SIGINT/SIGUSR2 arrived; a checkpoint was written after the update in flight."""

    def __init__(self, signum: int, env_steps: int) -> None:
        self.signum, self.env_steps = signum, env_steps
        super().__init__(f"stopped by {signal.Signals(signum).name} after {env_steps} env steps; checkpoint written")


class TrainingDiverged(RuntimeError):
    """Too many consecutive updates could not be formed (non-finite numbers)."""


@dataclass
class Trainer:
    """Runs updates until ``total_env_steps`` env steps have been collected.

    Args:
        collector: produces batches (its envs are the trainer's).
        update: the natural-gradient policy update (the variant is in its pieces).
        critic_fitter: fits V after each policy update.
        policy, critic: the networks (for checkpoints).
        obs_normalizer, reward_scaler: their statistics go into checkpoints.
        gamma: the discount, for the TRPO bound terms.
        total_env_steps: stop once this many env steps have been collected.
        run_dir: where ``checkpoint.pt`` is written.
        sinks: metric sinks.
        seed: the run's seed (env reseeding on resume).
        measurements: run at the updates they are due at, in this order, after the policy step and the
            critic fit; their columns go into the update's row (:class:`~trpo_lab.schedule.Evaluation`,
            :class:`~trpo_lab.schedule.PairedEvaluation`).
        checkpoints: run once the update's row is complete and pending (default: every 50 updates).
        max_consecutive_skips: stop with :class:`TrainingDiverged` after this many skipped updates in a row.
        monotonic: the return accounting across updates; it counts row k's ``paired/outcome``.
        return_window: the training-return proxy, the last M finished episodes (default M = 10).
        normalizer_warmup: env steps run before the first batch only to fit the observation and
            reward statistics (rounded up to a multiple of the env count; counted in ``env_steps``); 0: none.
    """

    collector: RolloutCollector
    update: NaturalGradientUpdate
    critic_fitter: CriticFitter
    policy: Policy
    critic: torch.nn.Module
    obs_normalizer: ObservationNormalizer
    reward_scaler: RewardScaler
    gamma: float
    total_env_steps: int
    run_dir: Path
    sinks: Sinks | None = None
    seed: int = 0
    measurements: list[Scheduled] = field(default_factory=list)
    checkpoints: Scheduled = field(default_factory=lambda: Checkpoints(every=50))
    max_consecutive_skips: int = 5
    monotonic: MonotonicTracker = field(default_factory=MonotonicTracker)
    return_window: ReturnWindow = field(default_factory=lambda: ReturnWindow(10))
    normalizer_warmup: int = 0
    env_steps: int = 0
    updates: int = 0
    consecutive_skips: int = 0
    totals: dict[str, float] = field(default_factory=lambda: {"violated": 0.0, "accepted": 0.0, "skipped": 0.0})
    time_split: dict[str, float] = field(default_factory=dict)
    pending_row: dict[str, Any] | None = None  # update k's row, written once batch k+1 gives its return/delta
    _logged_steps: int = 0  # env_steps of the last row written (console progress)
    _stop_signal: int | None = None
    _warned_snapshot: bool = False

    def __post_init__(self) -> None:
        for k in ("rollout", "update", "critic", *(p.name for p in self.measurements)):
            self.time_split.setdefault(k, 0.0)

    # -- the envs and sinks it owns ------------------------------------------------------------------
    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the sinks, the collector's envs and every scheduled piece's, each even if another's close
        fails (idempotent)."""
        with ExitStack() as closing:  # runs the callbacks last-in first-out: sinks, collector, pieces
            for piece in (*self.measurements, self.checkpoints):
                closing.callback(piece.close)
            closing.callback(self.collector.close)
            if self.sinks is not None:
                closing.callback(self.sinks.close)

    # -- the loop ------------------------------------------------------------------------------------
    def run_updates(self) -> dict[str, Any]:
        """Update until ``total_env_steps`` env steps have been collected; write the final checkpoint; return the summary."""
        assert self.sinks is not None, "attach sinks before running updates"
        t_start = time.perf_counter()
        previous = self._install_signal_handlers()
        try:
            if self.env_steps == 0 and self.updates == 0 and self.normalizer_warmup > 0:
                self.env_steps += self.collector.warm_up(self.normalizer_warmup)
            if self.updates == 0:
                self._say_budget()
            while self.env_steps < self.total_env_steps:
                if self._stop_signal is not None:
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

    def _say_budget(self) -> None:
        """One line at the start on what the budget means, if the collector has one (:meth:`RolloutCollector.budget_note`)."""
        note = self.collector.budget_note(self.total_env_steps, self.env_steps)
        if note:
            log.info("%s", note)

    def _one_update(self) -> None:
        """Update k: collect batch k (and write row k−1), step the policy, fit the critic, run the due
        measurements into row k, leave row k pending, stop if the updates keep failing, checkpoint if due."""
        t0 = time.perf_counter()
        normalizer_before = copy.deepcopy(self.obs_normalizer)
        batch = self.collector.collect()
        t1 = time.perf_counter()
        batch_return = float(np.mean(batch.episode_returns)) if batch.episode_returns else math.nan
        self.return_window.add(batch.episode_returns)  # vine: the trunk's episodes
        proxy = self.return_window.mean  # R̄_k; NaN before the first finished episode
        self._write_pending(proxy)  # this batch is the one after the previous update
        k, last = self.updates + 1, self.env_steps + batch.env_steps >= self.total_env_steps
        due = [p.due(k, last) for p in self.measurements]
        done = UpdateDone(k, last, copy.deepcopy(self.policy) if any(due) else None, normalizer_before)
        if batch.surrogate is None:  # single path: L = mean[ratio · Â] on the batch
            stats = self.update(self.policy, batch.obs, batch.actions, batch.log_prob_old, batch.advantages)
        else:  # a sampler's own surrogate (vine: Eq. 15/16 over the rollout set)
            stats = self.update.step(self.policy, batch.surrogate)
        # θ_{k+1} was fitted to inputs normalised with the statistics batch k was collected with, but acts
        # on batch k+1 with the statistics updated by batch k: the KL of that change alone, at θ_{k+1}
        shift_mean, shift_max = normalizer_kl_shift(self.policy, batch.raw_obs, normalizer_before, self.obs_normalizer)
        t2 = time.perf_counter()
        if torch.isfinite(batch.returns).all():
            critic_stats = self.critic_fitter.fit(batch.obs, batch.returns, batch.values).to_dict()
        else:  # Why: one NaN target would poison the critic's Adam state for good
            critic_stats = {"critic/loss": math.nan, "critic/explained_variance": math.nan}
        t3 = time.perf_counter()
        self.env_steps += batch.env_steps  # vine: trunk and branches
        self.updates += 1

        row: dict[str, Any] = {"env_steps": self.env_steps, "update": self.updates}
        row["return/mean"] = proxy  # the last M episodes after batch k, the newest collected by π_k
        row["return/batch_mean"] = batch_return  # batch k's own episodes only
        row["return/episodes"] = len(batch.episode_returns)
        row["return/window_fresh"] = self.return_window.fresh
        row["episode/length_mean"] = float(np.mean(batch.episode_lengths)) if batch.episode_lengths else math.nan
        row.update(stats.to_dict())
        row.update(critic_stats)
        row.update(bound_terms(stats.adv_max_abs, self.gamma, stats.ratio_advantage_mean, stats.kl_max))
        row["normalizer/kl_shift"], row["normalizer/kl_shift_max"] = shift_mean, shift_max
        row.update(batch.sampling_stats or NULL_SAMPLING_ROW)
        elapsed = {"rollout": t1 - t0, "update": t2 - t1, "critic": t3 - t2}
        for piece, is_due in zip(self.measurements, due):
            t = time.perf_counter()
            row.update(piece.run(self, done) if is_due else piece.idle_row)
            elapsed[piece.name] = time.perf_counter() - t
        row.update(self.monotonic.record_outcome(row.get("paired/outcome")))  # null: not measured
        for name, dt in elapsed.items():
            self.time_split[name] = self.time_split.get(name, 0.0) + dt
            row[f"time/{name}_s"] = dt
        row["perf/env_steps_per_s"] = batch.env_steps / (t3 - t0)
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
        if self.checkpoints.due(k, last):
            self.checkpoints.run(self, done)

    @property
    def rows_written(self) -> int:
        """The updates whose rows are in ``metrics.jsonl`` (all but the pending one)."""
        return self.updates - (self.pending_row is not None)

    def _write_pending(self, return_after: float, provisional: bool = False) -> None:
        """Complete the pending row (update k) with the proxy after batch k+1 (NaN: none) and write it."""
        row, self.pending_row = self.pending_row, None
        if row is None:
            return
        row.update(self.monotonic.record_returns(row["return/mean"], return_after))
        assert self.sinks is not None
        self.sinks.log(row, row["env_steps"] - self._logged_steps, provisional)
        self._logged_steps = row["env_steps"]

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
        """Write the checkpoint (the update in flight has finished) and the pending row, provisionally; at a
        SIGUSR2, then run the handler that was there before ours.

        Under submitit that is its ``checkpoint_and_try_requeue``: it calls the launcher's
        ``checkpoint()``, requeues the job (``scontrol requeue``) and exits; the requeued job resumes from
        the checkpoint just written, so no update is lost or redone. Our handlers are restored first, so
        the SIGTERM that the requeue sends reaches submitit's own handler. Without a previous Python
        handler (a plain run), or if it returns, the run stops as on SIGTERM.
        """
        self.save_checkpoint()  # row k still pending in it: a resumed run completes it with batch k+1's return
        # until then metrics.jsonl shows row k with return/delta null; a resume cuts it and writes it complete
        self._write_pending(math.nan, provisional=True)
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
            "final_return": self.return_window.mean if len(self.return_window) else None,  # the last return/mean
            **{k: v for p in self.measurements for k, v in p.summary().items()},
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
    def _components(self) -> dict[str, Any]:
        """What a checkpoint holds the state of, each under its key (each has ``state_dict``/``load_state_dict``)."""
        return {
            "policy": self.policy, "critic": self.critic, "critic_optimizer": self.critic_fitter.optimizer,
            "obs_normalizer": self.obs_normalizer, "reward_scaler": self.reward_scaler, "monotonic": self.monotonic,
            "return_window": self.return_window,
        }

    def state_dict(self) -> dict[str, Any]:
        """The components' states, the counters, the pending row, torch's RNG state and each scheduled
        piece's own entries (e.g. the evaluation's ``last_eval``)."""
        wandb_run = self.sinks.wandb.run if self.sinks is not None and self.sinks.wandb is not None else None
        state: dict[str, Any] = {k: c.state_dict() for k, c in self._components().items()}
        state.update({
            "env_steps": self.env_steps,
            "updates": self.updates,
            "totals": dict(self.totals),
            "time_split": dict(self.time_split),
            "pending_row": self.pending_row,
            "torch_rng": torch.get_rng_state(),
            "wandb_run_id": wandb_run.id if wandb_run is not None else None,
        })
        for piece in (*self.measurements, self.checkpoints):
            state.update(piece.state_dict())
        state["collector"] = self._collector_state()
        return state

    def _collector_state(self) -> dict[str, Any] | None:
        """The envs' snapshots and the episodes in progress; None (and one warning) if an env cannot be snapshotted."""
        try:
            return self.collector.state_dict()
        except SnapshotError as e:
            if not self._warned_snapshot:
                log.warning("checkpoints hold no env state (%s): a resumed run will reseed its envs", e)
                self._warned_snapshot = True
            return None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: the run goes on as if it had never stopped (every metrics.jsonl value
        but ``time/*`` and ``perf/*``, on the same machine and software stack), its envs restored mid-episode
        from their snapshots. A checkpoint without env state (an env that cannot be snapshotted, or one
        written before snapshots existed) reseeds the envs with (seed, updates) instead, with one warning:
        reproducible, but not the uninterrupted run."""
        for k, c in self._components().items():
            if k == "return_window" and k not in state:  # written before the window existed
                log.warning("the checkpoint holds no return window: return/mean restarts from the next episodes")
                continue
            c.load_state_dict(state[k])
        for piece in (*self.measurements, self.checkpoints):
            piece.load_state_dict(state)
        self.env_steps, self.updates = int(state["env_steps"]), int(state["updates"])
        self.totals.update(state.get("totals", {}))
        self.time_split.update(state.get("time_split", {}))
        self.pending_row = state.get("pending_row")
        self._logged_steps = self.env_steps
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if state.get("collector") is not None:
            self.collector.load_state_dict(state["collector"])
        else:
            log.warning("the checkpoint holds no env state: envs reseeded, so this resumed run is reproducible "
                        "but not bit-identical to an uninterrupted one")
            self.collector.reset(seed=self.seed + 1_000_003 * self.updates)

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint.pt`` atomically (temp file, then rename)."""
        return write_checkpoint(self.state_dict(), Path(self.run_dir) / CHECKPOINT)
