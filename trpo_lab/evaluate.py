"""Evaluation of a policy, and ``python -m trpo_lab.evaluate RUN_DIR`` for a saved run.

* :func:`evaluate_policy`: deterministic, for learning curves: the policy acts with its mode (the
  Gaussian mean, the most likely discrete action), on envs seeded apart from training, with the
  run's frozen observation normaliser.
* :func:`evaluate_stochastic` / :func:`paired_evaluation`: the policy samples as in training, its
  noise drawn from a seeded stream, so two policies can run on common random numbers.
* :func:`record_video`: one deterministic episode as an animated GIF; a saved run is rebuilt by
  :func:`trpo_lab.run_folder.build_from_folder`.

    python -m trpo_lab.evaluate outputs/2026-11-25/16-30-00-3fa9c1 --episodes 10
    MUJOCO_GL=egl python -m trpo_lab.evaluate RUN_DIR --video     # also writes RUN_DIR/video.gif
    python -m trpo_lab.evaluate RUN_DIR --video --no-wandb        # the GIF only, no W&B upload

Bad arguments and unusable run folders exit with code 2 and one line; a video that cannot be
rendered (a renderer that loads but cannot draw, no pygame, a read-only folder) gives one line that
says why, after the evaluation itself has been printed. A ``MUJOCO_GL`` whose library is missing stops
before the evaluation (exit code 2, one line): mujoco cannot even be imported then.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np
import torch

from trpo_lab.config import ConfigError, EvaluateArgs, check_values
from trpo_lab.envs import ObservationNormalizer, make_vec_env, renderer_message
from trpo_lab.mujoco_warnings import filter_known_mujoco_warnings
from trpo_lab.files import write_atomic
from trpo_lab.metrics import PairedDifference
from trpo_lab.policies import Policy
from trpo_lab.run_folder import VIDEO, CheckpointError, build_from_folder, check_writable_folder


def _normalized(raw_obs: np.ndarray, obs_normalizer: ObservationNormalizer | None) -> np.ndarray:
    return obs_normalizer.normalize(raw_obs) if obs_normalizer is not None else np.asarray(raw_obs, np.float32)


def _act(policy: Policy, raw_obs: np.ndarray, obs_normalizer: ObservationNormalizer | None, space: gym.Space):
    obs = _normalized(raw_obs, obs_normalizer)
    with torch.inference_mode():
        a = policy.mode(policy.dist_params(torch.from_numpy(obs))).numpy()
    return a if policy.discrete else np.clip(a, space.low, space.high)


def episode_returns(
    envs: gym.vector.VectorEnv, seed: int, act: Callable[[np.ndarray], np.ndarray],
) -> list[float]:
    """Returns of one episode per sub-env of ``envs``, run side by side from ``reset(seed)``;
    ``act`` maps the raw observations to actions (clipped to the box for continuous spaces)."""
    raw, _ = envs.reset(seed=seed)
    returns = np.zeros(envs.num_envs)
    active = np.ones(envs.num_envs, bool)
    while active.any():
        raw, r, term, trunc, _ = envs.step(act(raw))
        returns += r * active
        active &= ~(term | trunc)
    return returns.tolist()


def evaluate_policy(
    policy: Policy,
    envs: gym.vector.VectorEnv,
    seed: int,
    obs_normalizer: ObservationNormalizer | None = None,
) -> list[float]:
    """Returns of one deterministic episode per sub-env of ``envs``, run side by side from ``reset(seed)``."""
    space = envs.single_action_space
    return episode_returns(envs, seed, lambda raw: _act(policy, raw, obs_normalizer, space))


def evaluate_stochastic(
    policy: Policy,
    envs: gym.vector.VectorEnv,
    seed: int,
    noise_seed: int,
    obs_normalizer: ObservationNormalizer | None = None,
) -> list[float]:
    """Returns of one episode per sub-env with actions sampled as in training (clipped to the box), from
    ``reset(seed)`` and the action noise of ``numpy.random.default_rng(noise_seed)``."""
    # one noise draw per env per step whatever the policy, so two policies run on the same ``noise_seed``
    # see the same noise at the same (env, step)
    sample = policy.numpy_sampler(np.random.default_rng(noise_seed))
    space = envs.single_action_space

    def act(raw: np.ndarray) -> np.ndarray:
        obs = _normalized(raw, obs_normalizer)
        with torch.inference_mode():
            a = sample(policy.dist_params(torch.from_numpy(obs))[0].numpy())
        return a if policy.discrete else np.clip(a, space.low, space.high)

    return episode_returns(envs, seed, act)


def paired_evaluation(
    old: tuple[Policy, ObservationNormalizer | None],
    new: tuple[Policy, ObservationNormalizer | None],
    envs: gym.vector.VectorEnv,
    seed: int,
    noise_seed: int,
) -> PairedDifference:
    """π_old and π_new (each a policy with the normaliser it acts with), stochastic, on common random
    numbers: the same env seeds and the same action-noise stream, one episode per sub-env each."""
    r_old = evaluate_stochastic(old[0], envs, seed, noise_seed, old[1])
    r_new = evaluate_stochastic(new[0], envs, seed, noise_seed, new[1])
    return PairedDifference.of(r_old, r_new)


class VideoError(RuntimeError):
    """The video cannot be made; the message says why in one line."""


def _make_render_env(env_id: str, env_kwargs: dict) -> gym.Env:
    gl = os.environ.get("MUJOCO_GL")
    filter_known_mujoco_warnings(env_id)
    try:
        return gym.make(env_id, render_mode="rgb_array", **env_kwargs)
    except gym.error.DependencyNotInstalled as e:
        raise VideoError(f"{env_id} cannot render: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - MuJoCo loads MUJOCO_GL's library while making the env
        if gl:
            raise VideoError(renderer_message(gl, e)) from None
        raise VideoError(f"{env_id} cannot render ({type(e).__name__}: {e})") from None


def record_video(policy: Policy, env_id: str, env_kwargs: dict, obs_normalizer, path: Path, seed: int) -> Path:
    """Render one deterministic episode to an animated GIF, with a progress bar on stderr.

    MuJoCo envs need a renderer (``MUJOCO_GL=egl`` or ``osmesa``), the classic-control ones pygame.
    Every way this fails raises :class:`VideoError` with one line that says why.
    """
    from PIL import Image
    from tqdm import tqdm

    try:  # before minutes of rendering
        check_writable_folder("video folder", path.parent)
    except ConfigError as e:
        raise VideoError(str(e)) from None
    env = _make_render_env(env_id, env_kwargs)
    gl = os.environ.get("MUJOCO_GL", "unset")
    steps = env.spec.max_episode_steps if env.spec is not None else None
    try:
        with tqdm(total=steps, desc=f"video {env_id}", unit="frame", file=sys.stderr, leave=False) as bar:
            raw, _ = env.reset(seed=seed)
            frames = [env.render()]
            done = False
            while not done:
                a = _act(policy, raw[None], obs_normalizer, env.action_space)[0]
                raw, _, term, trunc, _ = env.step(a)
                frames.append(env.render())
                bar.update(1)
                done = term or trunc
    except gym.error.DependencyNotInstalled as e:  # classic-control envs draw with pygame
        raise VideoError(f"{env_id} cannot render: {str(e).splitlines()[0]}") from None
    except Exception as e:  # noqa: BLE001 - a renderer that loads but cannot draw (no display, no GPU)
        raise VideoError(
            f"rendering {env_id} failed with MUJOCO_GL={gl} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). "
            "Set MUJOCO_GL=egl (GPU/EGL) or MUJOCO_GL=osmesa (software) where that library is installed."
        ) from None
    finally:
        env.close()
    fps = env.metadata.get("render_fps", 30)
    stride = max(1, round(fps / 25))  # GIF viewers handle ~25 frames/s; real-time playback
    images = [Image.fromarray(f) for f in frames[::stride]]
    duration = round(1000 * stride / fps)
    try:
        return write_atomic(
            path, lambda f: images[0].save(f, format="GIF", save_all=True, append_images=images[1:],
                                           duration=duration, loop=0)
        )
    except OSError as e:
        raise VideoError(f"{path} cannot be written ({e.strerror or e})") from None


def _log_video_to_wandb(run_dir: Path, cfg: dict, run_id: str | None, video: Path) -> str:
    from trpo_lab.sinks import resolve_wandb_mode

    mode = resolve_wandb_mode(cfg["logger"]["wandb"]["mode"])
    if mode == "disabled":
        return "W&B disabled for this run: video not logged"
    import wandb

    silent = cfg["logger"]["wandb"].get("silent", True)
    run = wandb.init(dir=str(run_dir), project=cfg["logger"]["wandb"]["project"], id=run_id, resume="allow",
                     mode=mode, job_type="evaluate", settings=wandb.Settings(silent=silent))
    run.log({"eval/video": wandb.Video(str(video), format="gif")})
    run.finish()
    return f"logged to W&B run {run.id} ({mode})"


class _OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse's default prints the usage too
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> int:
    ap = _OneLineParser(description="Evaluate a trained trpo-lab run deterministically.")
    ap.add_argument("run_dir", type=Path, help="a training run folder (holds config.yaml and checkpoint.pt)")
    ap.add_argument("--episodes", type=float, default=10, help="deterministic episodes to run, ≥ 1 (default 10)")
    ap.add_argument("--seed", type=float, default=10_000, help="seed of the evaluation envs, ≥ 0 (default 10000)")
    ap.add_argument("--video", action="store_true", help="also record one episode to RUN_DIR/video.gif and W&B")
    ap.add_argument("--no-wandb", action="store_true", help="with --video: do not log the video to W&B")
    args = ap.parse_args(argv)
    try:
        checked = check_values(EvaluateArgs, {"episodes": args.episodes, "seed": args.seed}, lambda n: f"--{n}")
        policy, norm, cfg, state = build_from_folder(args.run_dir)
    except (CheckpointError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    env_id, env_kwargs = cfg["env"]["id"], cfg["env"]["kwargs"]
    envs = make_vec_env(env_id, checked["episodes"], env_kwargs)
    try:
        returns = evaluate_policy(policy, envs, checked["seed"], norm)
    finally:
        envs.close()
    print(json.dumps({"env": env_id, "env_steps": state["env_steps"], "episodes": len(returns),
                      "return_mean": float(np.mean(returns)), "return_std": float(np.std(returns)),
                      "returns": returns}))
    if args.video:
        try:
            path = record_video(policy, env_id, env_kwargs, norm, args.run_dir / VIDEO, checked["seed"])
        except VideoError as e:  # no renderer is an expected situation, not a crash: the evaluation stands
            print(f"no video: {e}", file=sys.stderr)
            return 0
        where = "W&B skipped (--no-wandb)" if args.no_wandb else _log_video_to_wandb(
            args.run_dir, cfg, state.get("wandb_run_id"), path)
        print(f"video: {path}; {where}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
