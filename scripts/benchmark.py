#!/usr/bin/env python3
"""Throughput of trpo-lab's own training loop (rollout + policy update + critic), one JSON line.

Usage:
    python scripts/benchmark.py [HYDRA OVERRIDES ...] [--keep DIR]
    python scripts/benchmark.py --update-only [--repeats R] [--threads 1,2] [HYDRA OVERRIDES ...]

Examples:
    python scripts/benchmark.py env=hopper total_env_steps=100000
    python scripts/benchmark.py env=hopper total_env_steps=100000 rollout.num_envs=2 \
        algo.solver.iters=25 critic.epochs=20 critic.minibatch_size=128        # sb3-contrib's RL-Zoo settings
    python scripts/benchmark.py --update-only env=hopper rollout.batch_size=16384 \
        policy.hidden_sizes=[256,256] critic.hidden_sizes=[256,256]          # one update's cost

Whole-loop mode (default) composes ``conf/train.yaml`` with the overrides (Hydra compose API),
builds the trainer with :func:`trpo_lab.train.build_trainer` and trains in a temporary folder.
Defaults added before the overrides (any can be overridden): ``logger.wandb.mode=disabled``,
``logger.console=off``, ``eval.every=0`` (no evaluation episodes: the peers' benchmarks run none),
``checkpoint_every=0`` (one checkpoint at the end) and ``resume=false``. The figures come from the
run's own ``summary.json`` (``env_steps_per_s``, ``time_split_s``) and ``metrics.jsonl``
(``perf/max_rss_mb`` per update, to check that memory stays flat: the peak RSS at 25 %, 50 % and
100 % of the updates).

``--update-only`` collects one batch with the composed settings after ``--warmup`` updates, then
times the policy update and the critic fit on that same batch ``--repeats`` times, restoring the
policy, critic and optimiser state before each repetition so every repetition does identical work
(as ``/work/shared/bench/torch_threads.py`` does for sb3-contrib's ``train()``). ``--threads 1,2``
interleaves ``torch.set_num_threads`` settings repetition by repetition.

The last line printed is always one JSON object.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.errors import HydraException  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from omegaconf.errors import OmegaConfBaseException  # noqa: E402

from trpo_lab import CONFIG_DIR  # noqa: E402
from trpo_lab.config import ConfigError  # noqa: E402
from trpo_lab.files import git_commit  # noqa: E402
from trpo_lab.train import build_trainer  # noqa: E402

BENCH_DEFAULTS = [
    "logger.wandb.mode=disabled",
    "logger.console=off",
    "eval.every=0",
    "checkpoint_every=0",
    "resume=false",
]


def compose_config(overrides: list[str]) -> DictConfig:
    """conf/train.yaml with the benchmark defaults, then the user's overrides (a later one wins)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        probe = compose("train")
        defaults = [o for o in BENCH_DEFAULTS if OmegaConf.select(probe, o.split("=")[0]) is not None]
        return compose("train", overrides=defaults + overrides)


def machine() -> dict[str, Any]:
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu_model": model, "python": platform.python_version()}


def versions() -> dict[str, str]:
    import gymnasium
    import mujoco
    import numpy

    return {"torch": torch.__version__, "gymnasium": gymnasium.__version__, "mujoco": mujoco.__version__,
            "numpy": numpy.__version__}


def settings(cfg: DictConfig) -> dict[str, Any]:
    """The settings that decide the cost of one update."""
    return {
        "env_id": cfg.env.id,
        "num_envs": cfg.rollout.num_envs,
        "batch_size": cfg.rollout.batch_size,
        "policy_hidden": list(cfg.policy.hidden_sizes),
        "critic_hidden": list(cfg.critic.hidden_sizes),
        "cg_iters": cfg.algo.solver.iters,
        "fisher": OmegaConf.to_container(cfg.algo.fisher),
        "line_search": cfg.algo.line_search._target_.rsplit(".", 1)[-1],
        "critic_epochs": cfg.critic.epochs,
        "critic_minibatch": cfg.critic.minibatch_size,
        "critic_adam_steps_per_update": cfg.critic.epochs * -(-cfg.rollout.batch_size // cfg.critic.minibatch_size),
        "torch_threads": cfg.torch_threads,
        "total_env_steps": cfg.total_env_steps,
        "vector_env": cfg.rollout.vector_env,
        "numpy_actor": cfg.rollout.numpy_actor,
        "critic_implementation": cfg.critic.implementation,
    }


def current_rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return float("nan")


def at_share(rows: list[dict[str, Any]], key: str, share: float) -> float | None:
    if not rows:
        return None
    i = max(0, min(len(rows) - 1, round(share * len(rows)) - 1))
    return rows[i].get(key)


def whole_loop(cfg: DictConfig, keep: Path | None) -> dict[str, Any]:
    run_dir = keep or Path(tempfile.mkdtemp(prefix="trpo-bench-"))
    load_before = os.getloadavg()
    t_build = time.perf_counter()
    try:
        with build_trainer(cfg, run_dir) as trainer:
            build_s = time.perf_counter() - t_build
            summary = trainer.run_updates()
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    finally:
        if keep is None:
            shutil.rmtree(run_dir, ignore_errors=True)
    load_after = os.getloadavg()

    wall = summary["wall_s"]
    split = dict(summary["time_split_s"])
    split["other"] = max(0.0, wall - sum(split.values()))
    rss = "perf/max_rss_mb"
    per_update = {k: statistics.median(r[f"time/{k}_s"] for r in rows[1:] or rows) for k in ("rollout", "update", "critic")}
    return {
        "bench": "trpo_lab",
        "mode": "whole_loop",
        "env_steps": summary["env_steps"],
        "updates": summary["updates"],
        "wall_s": round(wall, 3),
        "env_steps_per_s": round(summary["env_steps_per_s"], 1),
        "time_split_s": {k: round(v, 3) for k, v in split.items()},
        "time_share": {k: round(v / wall, 3) for k, v in split.items()},
        "per_update_median_s": {k: round(v, 4) for k, v in per_update.items()},
        "rollout_env_steps_per_s": round(summary["env_steps"] / split["rollout"], 1) if split["rollout"] else None,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_mb_at": {f"{int(s * 100)}%": at_share(rows, rss, s) for s in (0.25, 0.5, 1.0)},
        "rss_mb_end": round(current_rss_mb(), 1),
        "final_return": summary.get("final_return"),
        "build_s": round(build_s, 3),
        "settings": settings(cfg),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
        "machine": machine(),
        "versions": versions(),
        "git": git_commit(),
    }


def update_only(cfg: DictConfig, repeats: int, threads: list[int], warmup: int) -> dict[str, Any]:
    """Median cost of one policy update and one critic fit on a fixed batch."""
    run_dir = Path(tempfile.mkdtemp(prefix="trpo-bench-"))
    try:
        with build_trainer(cfg, run_dir) as trainer:
            for _ in range(warmup):  # a policy a few updates in, so line searches and CG behave as in training
                batch = trainer.collector.collect()
                trainer.update(trainer.policy, batch.obs, batch.actions, batch.log_prob_old, batch.advantages)
                trainer.critic_fitter.fit(batch.obs, batch.returns, batch.values)
            batch = trainer.collector.collect()
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    fitter = trainer.critic_fitter
    saved = (copy.deepcopy(trainer.policy.state_dict()), copy.deepcopy(trainer.critic.state_dict()),
             copy.deepcopy(fitter.optimizer.state_dict()))

    def restore() -> None:
        trainer.policy.load_state_dict(saved[0])
        trainer.critic.load_state_dict(saved[1])
        fitter.optimizer.load_state_dict(saved[2])

    times: dict[int, dict[str, list[float]]] = {t: {"update": [], "critic": []} for t in threads}
    load_before = os.getloadavg()
    for r in range(repeats + 1):  # repetition 0 warms up each thread setting and is dropped
        for t in threads:
            torch.set_num_threads(t)
            restore()
            t0 = time.perf_counter()
            stats = trainer.update(trainer.policy, batch.obs, batch.actions, batch.log_prob_old, batch.advantages)
            t1 = time.perf_counter()
            fitter.fit(batch.obs, batch.returns, batch.values)
            t2 = time.perf_counter()
            if r > 0:
                times[t]["update"].append(t1 - t0)
                times[t]["critic"].append(t2 - t1)
    out_threads = {}
    for t, d in times.items():
        u, c = statistics.median(d["update"]), statistics.median(d["critic"])
        out_threads[str(t)] = {
            "policy_update_s": round(u, 5), "critic_s": round(c, 5), "update_total_s": round(u + c, 5),
            "policy_update_min_s": round(min(d["update"]), 5), "critic_min_s": round(min(d["critic"]), 5),
        }
    base = out_threads[str(threads[0])]["update_total_s"]
    return {
        "bench": "trpo_lab",
        "mode": "update_only",
        "batch_size": batch.size,
        "repeats": repeats,
        "line_search_backtracks": stats.backtracks,
        "cg_iters": stats.cg_iters,
        "threads": out_threads,
        "ratio_vs_first_thread_setting": {
            k: round(v["update_total_s"] / base, 3) for k, v in out_threads.items()
        },
        "settings": settings(cfg),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "machine": machine(),
        "versions": versions(),
        "git": git_commit(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for conf/train.yaml")
    ap.add_argument("--update-only", action="store_true", help="time one update + critic fit on a fixed batch")
    ap.add_argument("--repeats", type=int, default=5, help="--update-only: timed repetitions per thread setting")
    ap.add_argument("--threads", default=None, help="--update-only: comma-separated torch thread counts to interleave")
    ap.add_argument("--warmup", type=int, default=3, help="--update-only: updates before the timed batch")
    ap.add_argument("--keep", type=Path, default=None, help="whole loop: keep the run folder here")
    # the implementation levers, as switches for measuring what each buys; each sets its config key
    ap.add_argument("--vector-env", choices=("inprocess", "gymnasium"), default=None,
                    help="rollout.vector_env: the training envs' vector env (default: inprocess)")
    ap.add_argument("--actor", choices=("numpy", "torch"), default=None,
                    help="rollout.numpy_actor: per-step actions from the numpy copy of the policy (default) or the torch module")
    ap.add_argument("--critic-impl", choices=("fused", "autograd"), default=None,
                    help="critic.implementation (default: fused)")
    args = ap.parse_intermixed_args()
    levers = {k: v for k, v in (("vector_env", args.vector_env), ("actor", args.actor),
                                ("critic_impl", args.critic_impl)) if v is not None}
    lever_keys = {"vector_env": "rollout.vector_env", "actor": "rollout.numpy_actor", "critic_impl": "critic.implementation"}
    lever_overrides = [f"{lever_keys[k]}={str(v == 'numpy').lower() if k == 'actor' else v}" for k, v in levers.items()]
    try:
        cfg = compose_config([*args.overrides, *lever_overrides])  # a switch wins over the same key given as an override
        if args.update_only:
            threads = [int(x) for x in args.threads.split(",")] if args.threads else [cfg.torch_threads or torch.get_num_threads()]
            out = update_only(cfg, args.repeats, threads, args.warmup)
        else:
            out = whole_loop(cfg, args.keep)
    except (ConfigError, HydraException, OmegaConfBaseException) as e:  # bad input: one line, exit code 2
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        raise SystemExit(2) from None
    out["overrides"] = args.overrides
    out["levers"] = levers  # switches given on the command line; the rest are the code's defaults
    print(json.dumps(out))


if __name__ == "__main__":
    main()
