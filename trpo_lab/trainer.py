"""The one training loop shared by every variant: collect → update the policy → fit the critic → log."""
from __future__ import annotations

import math
import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trpo_lab.critic import CriticFitter
from trpo_lab.envs import ObservationNormalizer, RewardScaler
from trpo_lab.logging import ConsoleProgress, JsonlSink, WandbSink
from trpo_lab.metrics import MonotonicTracker, bound_terms
from trpo_lab.natural.update import NaturalGradientUpdate
from trpo_lab.policies import Policy, ValueFunction
from trpo_lab.rollout import RolloutCollector

CHECKPOINT = "checkpoint.pt"


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
        checkpoint_every: write a checkpoint every this many updates (0: only at the end).
        monotonic: the return accounting across updates.
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
    sinks: Sinks
    checkpoint_every: int = 50
    monotonic: MonotonicTracker = field(default_factory=MonotonicTracker)
    env_steps: int = 0
    updates: int = 0
    last_return: float | None = None
    totals: dict[str, float] = field(default_factory=lambda: {"violated": 0.0, "accepted": 0.0, "skipped": 0.0})

    def train(self) -> dict[str, Any]:
        t_start = time.perf_counter()
        time_split = {"rollout": 0.0, "update": 0.0, "critic": 0.0}
        try:
            while self.env_steps < self.total_env_steps:
                t0 = time.perf_counter()
                batch = self.collector.collect()
                t1 = time.perf_counter()
                stats = self.update(self.policy, batch.obs, batch.actions, batch.log_prob_old, batch.advantages)
                t2 = time.perf_counter()
                critic_stats = self.critic_fitter.fit(batch.obs, batch.returns, batch.values)
                t3 = time.perf_counter()
                self.env_steps += batch.size
                self.updates += 1
                time_split["rollout"] += t1 - t0
                time_split["update"] += t2 - t1
                time_split["critic"] += t3 - t2

                row: dict[str, Any] = {"env_steps": self.env_steps, "update": self.updates}
                if batch.episode_returns:
                    self.last_return = float(np.mean(batch.episode_returns))
                    row.update(self.monotonic.update(self.last_return))
                else:  # no episode ended in this batch: carry the last return, no new accounting
                    row.update(self._carried_monotonic())
                row["return/mean"] = self.last_return if self.last_return is not None else math.nan
                row["return/episodes"] = len(batch.episode_returns)
                row["episode/length_mean"] = float(np.mean(batch.episode_lengths)) if batch.episode_lengths else math.nan
                row.update(stats.to_dict())
                row.update(critic_stats.to_dict())
                row.update(bound_terms(stats.adv_max_abs, self.gamma, stats.surrogate_actual, stats.kl_max))
                row.update({
                    "time/rollout_s": t1 - t0,
                    "time/update_s": t2 - t1,
                    "time/critic_s": t3 - t2,
                    "perf/env_steps_per_s": batch.size / (t3 - t0),
                    "perf/max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                })
                self.totals["violated"] += stats.constraint_violated
                self.totals["accepted"] += stats.accepted
                self.totals["skipped"] += stats.skipped
                self.sinks.log(row, batch.size)
                if self.checkpoint_every and self.updates % self.checkpoint_every == 0:
                    self.save_checkpoint()
            self.save_checkpoint()
            wall = time.perf_counter() - t_start
            summary = self.summary(wall, time_split)
            if self.sinks.wandb is not None:
                self.sinks.wandb.summary(summary)
            return summary
        finally:
            self.sinks.close()

    def _carried_monotonic(self) -> dict[str, float]:
        m = self.monotonic
        return {
            "return/delta": 0.0,
            "monotonic/improved_fraction": m.improved / m.updates if m.updates else 0.0,
            "monotonic/collapses": float(m.collapses),
            "monotonic/worst_drop": m.worst_drop,
            "return/best": m.best if m.best > -math.inf else math.nan,
        }

    def summary(self, wall: float, time_split: dict[str, float]) -> dict[str, Any]:
        n = max(self.updates, 1)
        return {
            "env_steps": self.env_steps,
            "updates": self.updates,
            "final_return": self.last_return,
            "best_return": self.monotonic.best if self.monotonic.best > -math.inf else None,
            "improved_fraction": self.monotonic.improved / self.monotonic.updates if self.monotonic.updates else None,
            "collapses": self.monotonic.collapses,
            "violation_rate": self.totals["violated"] / n,
            "accepted_rate": self.totals["accepted"] / n,
            "skipped_updates": int(self.totals["skipped"]),
            "wall_s": wall,
            "env_steps_per_s": self.env_steps / wall if wall > 0 else None,
            "time_split_s": time_split,
        }

    # -- checkpoints ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
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
            "torch_rng": torch.get_rng_state(),
        }

    def save_checkpoint(self) -> Path:
        """Write ``checkpoint.pt`` atomically: a temp file, then a rename over the old one."""
        path = Path(self.run_dir) / CHECKPOINT
        tmp = path.with_suffix(".pt.tmp")
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)
        return path
