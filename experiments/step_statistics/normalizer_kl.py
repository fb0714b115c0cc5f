"""The KL that the observation normaliser's statistics update alone causes, for the first updates of a run.

Runs against whichever trpo_lab is on PYTHONPATH (main's code before the fix, this branch's after), so it
does not use trpo_lab's own KL code: the KL is computed with torch.distributions. For update k:
KL(π_θ(·|n_before(s)) ‖ π_θ(·|n_after(s))) on batch k's raw states s, θ = θ_{k+1} (the parameters the update
produced, fitted to inputs standardised with n_before, which then act with n_after).

    PYTHONPATH=/path/to/worktree python experiments/step_statistics/normalizer_kl.py --updates 2 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from torch.distributions import Independent, Normal, kl_divergence

import trpo_lab
from trpo_lab.train import build_trainer


def gaussian(policy, normalizer, raw: np.ndarray) -> Independent:
    with torch.no_grad():
        mean, log_std = policy.dist_params(torch.from_numpy(normalizer.normalize(raw)))
    return Independent(Normal(mean.double(), log_std.exp().double().expand_as(mean)), 1)


def first_updates(seed: int, updates: int, conf_dir: str) -> list[dict[str, float]]:
    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        cfg = compose("train", overrides=[f"seed={seed}", "logger.wandb.mode=disabled", "logger.console=off",
                                          "eval.every=0"])
    with build_trainer(cfg, Path(tempfile.mkdtemp(prefix="nkl-"))) as trainer:  # closes its envs and sinks
        warmup = int(cfg.rollout.get("normalizer_warmup", 0))
        if warmup:  # this branch: the trainer warms the statistics up before the first batch
            trainer.collector.warm_up(warmup)
        out = []
        for k in range(1, updates + 1):
            before = copy.deepcopy(trainer.obs_normalizer)
            batch = trainer.collector.collect()
            raw = trainer.collector.raw_obs_buf.reshape(batch.size, -1).copy()
            trainer.update(trainer.policy, batch.obs, batch.actions, batch.log_prob_old, batch.advantages)
            trainer.critic_fitter.fit(batch.obs, batch.returns, batch.values)
            kl = kl_divergence(gaussian(trainer.policy, before, raw), gaussian(trainer.policy, trainer.obs_normalizer, raw))
            out.append({"seed": seed, "update": k, "warmup_steps": warmup, "kl_mean": float(kl.mean()),
                        "kl_max": float(kl.max()), "kl_mean_over_delta": float(kl.mean()) / cfg.algo.max_kl})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--updates", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    conf_dir = str(Path(trpo_lab.__file__).resolve().parents[1] / "conf")
    for seed in args.seeds:
        for row in first_updates(seed, args.updates, conf_dir):
            print(json.dumps({"code": str(Path(trpo_lab.__file__).resolve().parents[1]), **row}))


if __name__ == "__main__":
    main()
