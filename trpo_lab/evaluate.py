"""Deterministic evaluation of a policy, and ``python -m trpo_lab.evaluate RUN_DIR`` for a saved run.

The policy acts with its mode (the Gaussian mean, the most likely discrete action), on fresh envs
seeded separately from training, with the run's frozen observation normaliser.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from trpo_lab.envs import ObservationNormalizer, make_vec_env
from trpo_lab.policies import Policy, make_policy


def evaluate_policy(
    policy: Policy,
    env_id: str,
    episodes: int = 10,
    seed: int = 10_000,
    obs_normalizer: ObservationNormalizer | None = None,
    env_kwargs: dict | None = None,
) -> list[float]:
    """Returns of ``episodes`` deterministic episodes, run side by side (one env per episode)."""
    envs = make_vec_env(env_id, episodes, env_kwargs)
    try:
        raw, _ = envs.reset(seed=seed)
        returns = np.zeros(episodes)
        active = np.ones(episodes, bool)
        discrete = policy.discrete
        space = envs.single_action_space
        while active.any():
            obs = obs_normalizer.normalize(raw) if obs_normalizer is not None else raw.astype(np.float32)
            with torch.inference_mode():
                a = policy.mode(policy.dist_params(torch.from_numpy(obs))).numpy()
            if not discrete:
                a = np.clip(a, space.low, space.high)
            raw, r, term, trunc, _ = envs.step(a)
            returns += r * active
            active &= ~(term | trunc)
        return returns.tolist()
    finally:
        envs.close()


class CheckpointError(RuntimeError):
    pass


def load_run(run_dir: Path) -> tuple[Policy, ObservationNormalizer, dict]:
    """The policy and observation normaliser of ``run_dir/checkpoint.pt`` (loaded with weights_only=True)."""
    run_dir = Path(run_dir)
    cfg_path, ckpt_path = run_dir / "config.yaml", run_dir / "checkpoint.pt"
    for p in (cfg_path, ckpt_path):
        if not p.exists():
            raise CheckpointError(f"{p} does not exist: is {run_dir} a trpo-lab run folder?")
    cfg = OmegaConf.load(cfg_path)
    try:
        state = torch.load(ckpt_path, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable file gets one clear message
        raise CheckpointError(f"{ckpt_path} is not a readable trpo-lab checkpoint ({type(e).__name__}: {e})") from e
    envs = make_vec_env(cfg.env.id, 1, OmegaConf.to_container(cfg.env.kwargs))
    policy = make_policy(envs.single_observation_space, envs.single_action_space, **cfg.policy)
    obs_shape = envs.single_observation_space.shape
    envs.close()
    try:
        policy.load_state_dict(state["policy"])
        norm = ObservationNormalizer(obs_shape, enabled=cfg.rollout.normalize_obs)
        norm.load_state_dict(state["obs_normalizer"])
    except (KeyError, RuntimeError, TypeError) as e:
        raise CheckpointError(f"{ckpt_path} does not match the run's config ({type(e).__name__}: {e})") from e
    return policy, norm, OmegaConf.to_container(cfg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path, help="a training run folder (holds config.yaml and checkpoint.pt)")
    ap.add_argument("--episodes", type=int, default=10, help="deterministic episodes to run (default 10)")
    ap.add_argument("--seed", type=int, default=10_000, help="seed of the evaluation envs (default 10000)")
    args = ap.parse_args(argv)
    try:
        policy, norm, cfg = load_run(args.run_dir)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    returns = evaluate_policy(policy, cfg["env"]["id"], args.episodes, args.seed, norm, cfg["env"]["kwargs"])
    print(json.dumps({"env": cfg["env"]["id"], "episodes": len(returns), "return_mean": float(np.mean(returns)),
                      "return_std": float(np.std(returns)), "returns": returns}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
