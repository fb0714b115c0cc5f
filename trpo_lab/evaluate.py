"""Deterministic evaluation of a policy, and ``python -m trpo_lab.evaluate RUN_DIR`` for a saved run.

The policy acts with its mode (the Gaussian mean, the most likely discrete action), on envs
seeded apart from training, with the run's frozen observation normaliser.

    python -m trpo_lab.evaluate outputs/2026-11-25/16-30-00 --episodes 10
    MUJOCO_GL=egl python -m trpo_lab.evaluate RUN_DIR --video     # also writes RUN_DIR/video.gif
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from omegaconf import OmegaConf

from trpo_lab.checkpoint import CheckpointError, load_checkpoint
from trpo_lab.envs import ObservationNormalizer, make_vec_env
from trpo_lab.files import write_atomic
from trpo_lab.policies import Policy, make_policy


def _act(policy: Policy, raw_obs: np.ndarray, obs_normalizer: ObservationNormalizer | None, space: gym.Space):
    obs = obs_normalizer.normalize(raw_obs) if obs_normalizer is not None else np.asarray(raw_obs, np.float32)
    with torch.inference_mode():
        a = policy.mode(policy.dist_params(torch.from_numpy(obs))).numpy()
    return a if policy.discrete else np.clip(a, space.low, space.high)


def evaluate_policy(
    policy: Policy,
    envs: gym.vector.VectorEnv,
    seed: int,
    obs_normalizer: ObservationNormalizer | None = None,
) -> list[float]:
    """Returns of one deterministic episode per sub-env of ``envs``, run side by side from ``reset(seed)``."""
    raw, _ = envs.reset(seed=seed)
    returns = np.zeros(envs.num_envs)
    active = np.ones(envs.num_envs, bool)
    space = envs.single_action_space
    while active.any():
        raw, r, term, trunc, _ = envs.step(_act(policy, raw, obs_normalizer, space))
        returns += r * active
        active &= ~(term | trunc)
    return returns.tolist()


def load_run(run_dir: Path) -> tuple[Policy, ObservationNormalizer, dict[str, Any], dict[str, Any]]:
    """The policy, observation normaliser, config and checkpoint state of a run folder."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        raise CheckpointError(f"{cfg_path} does not exist: is {run_dir} a trpo-lab run folder?")
    cfg = OmegaConf.load(cfg_path)
    state = load_checkpoint(run_dir)
    envs = make_vec_env(cfg.env.id, 1, OmegaConf.to_container(cfg.env.kwargs))
    policy = make_policy(envs.single_observation_space, envs.single_action_space, **cfg.policy)
    obs_shape = envs.single_observation_space.shape
    envs.close()
    try:
        policy.load_state_dict(state["policy"])
        norm = ObservationNormalizer(obs_shape, enabled=cfg.rollout.normalize_obs)
        norm.load_state_dict(state["obs_normalizer"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint in {run_dir} does not match its config.yaml ({e})") from None
    return policy, norm, OmegaConf.to_container(cfg), state


def record_video(policy: Policy, env_id: str, env_kwargs: dict, obs_normalizer, path: Path, seed: int) -> Path:
    """Render one deterministic episode to an animated GIF (needs a MuJoCo renderer: MUJOCO_GL=egl or osmesa)."""
    from PIL import Image

    env = gym.make(env_id, render_mode="rgb_array", **env_kwargs)
    try:
        raw, _ = env.reset(seed=seed)
        frames = [env.render()]
        done = False
        while not done:
            a = _act(policy, raw[None], obs_normalizer, env.action_space)[0]
            raw, _, term, trunc, _ = env.step(a)
            frames.append(env.render())
            done = term or trunc
    finally:
        env.close()
    fps = env.metadata.get("render_fps", 30)
    stride = max(1, round(fps / 25))  # GIF viewers handle ~25 frames/s; real-time playback
    images = [Image.fromarray(f) for f in frames[::stride]]
    duration = round(1000 * stride / fps)
    return write_atomic(
        path, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0)
    )


def _log_video_to_wandb(run_dir: Path, cfg: dict, run_id: str | None, video: Path) -> str:
    from trpo_lab.sinks import resolve_wandb_mode

    mode = resolve_wandb_mode(cfg["logger"]["wandb"]["mode"])
    if mode == "disabled":
        return "W&B disabled for this run: video not logged"
    import wandb

    run = wandb.init(dir=str(run_dir), project=cfg["logger"]["wandb"]["project"], id=run_id, resume="allow",
                     mode=mode, job_type="evaluate")
    run.log({"eval/video": wandb.Video(str(video), format="gif")})
    run.finish()
    return f"logged to W&B run {run.id} ({mode})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Evaluate a trained trpo-lab run deterministically.")
    ap.add_argument("run_dir", type=Path, help="a training run folder (holds config.yaml and checkpoint.pt)")
    ap.add_argument("--episodes", type=int, default=10, help="deterministic episodes to run (default 10)")
    ap.add_argument("--seed", type=int, default=10_000, help="seed of the evaluation envs (default 10000)")
    ap.add_argument("--video", action="store_true", help="also record one episode to RUN_DIR/video.gif and W&B")
    args = ap.parse_args(argv)
    try:
        policy, norm, cfg, state = load_run(args.run_dir)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    env_id, env_kwargs = cfg["env"]["id"], cfg["env"]["kwargs"]
    envs = make_vec_env(env_id, args.episodes, env_kwargs)
    try:
        returns = evaluate_policy(policy, envs, args.seed, norm)
    finally:
        envs.close()
    print(json.dumps({"env": env_id, "env_steps": state["env_steps"], "episodes": len(returns),
                      "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
                      "returns": returns}))
    if args.video:
        try:
            path = record_video(policy, env_id, env_kwargs, norm, args.run_dir / "video.gif", args.seed)
        except Exception as e:  # noqa: BLE001 - no renderer is an expected situation, not a crash
            gl = os.environ.get("MUJOCO_GL", "unset")
            print(f"no video: rendering {env_id} failed with MUJOCO_GL={gl} ({type(e).__name__}: {e}). "
                  "Set MUJOCO_GL=egl (GPU/EGL) or MUJOCO_GL=osmesa (software) where that library is installed.",
                  file=sys.stderr)
            return 0
        print(f"video: {path}; {_log_video_to_wandb(args.run_dir, cfg, state.get('wandb_run_id'), path)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
