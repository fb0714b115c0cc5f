"""What the pairing buys: the spread of η(π_new) − η(π_old) estimated with common random numbers against two
independent evaluations of the same N, for one real update of a trained Hopper policy.

π_old is a run's final checkpoint; π_new is one update of it on a fresh batch (the run's own config). Each of
R repetitions evaluates the pair N episodes each, stochastic as trained:
  * paired: the same env seeds and the same action-noise stream for both policies;
  * independent: π_new on other env seeds and another noise stream.
Printed: the SD over repetitions of the estimated difference (the true SE of each estimator), and the mean of
the within-repetition SE estimates (paired: sd(d)/√N; independent: √((s²_old + s²_new)/N)).

    python experiments/step_statistics/paired_se.py studies/step_statistics/3 --episodes 10 --repeats 10
"""
from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from trpo_lab.envs import make_vec_env
from trpo_lab.evaluate import evaluate_stochastic
from trpo_lab.metrics import PairedDifference
from trpo_lab.train import build_trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="paired-se-")) / "run"
    shutil.copytree(args.run_dir, work, ignore=shutil.ignore_patterns("wandb"))
    cfg = OmegaConf.load(work / "config.yaml")
    cfg.resume, cfg.logger.wandb.mode, cfg.logger.console = True, "disabled", "off"
    import copy

    with build_trainer(cfg, work) as trainer:  # closes its envs and sinks
        old_policy, normalizer = copy.deepcopy(trainer.policy), copy.deepcopy(trainer.obs_normalizer)
        batch = trainer.collector.collect()
        stats = trainer.update(trainer.policy, batch.obs, batch.actions, batch.log_prob_old, batch.advantages)
    envs = make_vec_env(cfg.env.id, args.episodes, OmegaConf.to_container(cfg.env.kwargs))
    paired, indep, paired_se, indep_se = [], [], [], []
    for r in range(args.repeats):
        s, s2 = 1_000 + 2 * r * args.episodes, 1_000 + (2 * r + 1) * args.episodes
        old = evaluate_stochastic(old_policy, envs, s, s, normalizer)
        new_same = evaluate_stochastic(trainer.policy, envs, s, s, normalizer)
        new_other = evaluate_stochastic(trainer.policy, envs, s2, s2, normalizer)
        p = PairedDifference.of(old, new_same)
        q = PairedDifference.of(old, new_other)
        paired.append(p.improvement)
        paired_se.append(p.improvement_se)
        indep.append(q.improvement)
        indep_se.append(q.independent_se)
    envs.close()
    out = {
        "run_dir": str(args.run_dir), "env_steps": trainer.env_steps, "episodes": args.episodes,
        "repeats": args.repeats, "step_kl_mean": stats.kl_mean,
        "paired_mean": float(np.mean(paired)), "paired_sd_over_repeats": float(np.std(paired, ddof=1)),
        "paired_se_estimate_mean": float(np.mean(paired_se)),
        "independent_mean": float(np.mean(indep)), "independent_sd_over_repeats": float(np.std(indep, ddof=1)),
        "independent_se_estimate_mean": float(np.mean(indep_se)),
    }
    out["se_ratio_independent_over_paired"] = out["independent_sd_over_repeats"] / out["paired_sd_over_repeats"]
    out["variance_ratio"] = out["se_ratio_independent_over_paired"] ** 2
    print(json.dumps(out))
    shutil.rmtree(work.parent)
    if not math.isfinite(out["variance_ratio"]):
        raise SystemExit("non-finite result")


if __name__ == "__main__":
    main()
