"""sb3-contrib's TRPO run inside the lab (``peer=sb3_contrib``, ``conf/peer/sb3_contrib.yaml``).

The model: ``sb3_contrib.TRPO("MlpPolicy")`` on a ``DummyVecEnv`` of ``peer.n_envs`` Monitor-wrapped envs of
``env.id`` (env i seeded ``seed + i``, as the lab's envs), inside ``VecNormalize`` (obs and rewards, γ =
``peer.gamma``); torch seeded with ``seed`` and ``torch_threads`` threads. Each update k (after one rollout of
``n_envs × n_steps`` env steps, sb3's ``train()``) writes one ``metrics.jsonl`` row in the lab's keys, and logs it
to W&B as the lab's trainer does (unless ``logger.wandb.mode=disabled``):

* ``env_steps``, ``update`` (= k, from 1);
* ``return/mean`` = (1/|W|) Σ_{R∈W} R, W the raw returns (Monitor) of the last 10 finished episodes
  (:class:`~trpo_lab.return_window.ReturnWindow`; null before the first); ``return/episodes``, the episodes
  rollout k finished; ``episode/length_mean``, their mean length (null if none);
* ``line_search/accepted``: 1 if a backtracking candidate had KL < ``target_kl`` and a higher surrogate (sb3 then
  takes it), 0 if the old parameters were kept;
* ``eval/return_mean``, ``eval/return_std`` at every ``eval.every``-th update and after the last (null otherwise);
* ``time/rollout_s``, ``time/train_s`` (sb3's ``train()``: policy step and critic fit together), ``time/eval_s``,
  ``perf/env_steps_per_s`` = rollout env steps / (rollout + train time), ``perf/max_rss_mb``;
* ``sb3/...``: sb3's own ``train/`` numbers, in sb3's definitions (its ``kl_divergence`` is averaged over the
  action dims, not the lab's KL).

Nothing else: the lab's step statistics (KL/δ, curvature, paired evaluation, collapse accounting) are not
measured by sb3 and are left out, not filled in.

The final evaluation is the lab's protocol (:func:`trpo_lab.evaluate.episode_returns`): ``eval.episodes`` envs
made by :func:`trpo_lab.envs.make_vec_env`, reset with ``seed + eval.seed_offset`` (env i: + i), one episode
each, the mean action (``predict(deterministic=True)``, clipped to the box) on observations normalised with the
frozen VecNormalize statistics, raw rewards summed. It is ``summary.json``'s ``final_eval``; ``final_return`` is,
as for the lab's runs, the training return (the last ``return/mean``).

What the run folder keeps of the model: ``peer_policy.pt``, ``torch.save(model.policy.state_dict())`` (sb3's
``MlpPolicy`` for the config's ``peer`` keys), and ``peer_normalizer.pt``, the VecNormalize statistics
(:func:`normalizer_state`), both tensors and numbers only, loadable with ``torch.load(weights_only=True)``; sb3's
own ``model.save`` / ``VecNormalize.save`` are not used: their files are pickles that run code when loaded.

Resume: an sb3 run cannot be continued bit-identically (its envs' mid-episode states and RNG streams are not
saved), so a folder with an unfinished peer run is restarted from scratch, and the log says so. A finished one
is not run again; a folder of another config is refused (:func:`trpo_lab.train.run` checks both first).
"""
from __future__ import annotations

import logging
import resource
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from trpo_lab.envs import make_vec_env as lab_vec_env
from trpo_lab.evaluate import episode_returns
from trpo_lab.files import write_atomic
from trpo_lab.launch import run_metadata
from trpo_lab.mujoco_warnings import filter_known_mujoco_warnings
from trpo_lab.return_window import ReturnWindow
from trpo_lab.run_folder import (
    PEER_NORMALIZER, PEER_POLICY, claim_folder, discard_run, has_metrics, read_saved_config, write_summary,
)
from trpo_lab.sinks import Sinks, build_sinks

from sb3_contrib import TRPO  # noqa: E402 - after the lab's imports: trpo_lab.peers checked it is installed
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

log = logging.getLogger(__name__)

#: sb3's train/ numbers left out of the rows: a counter, a constant, and the line-search outcome (logged as the
#: lab's ``line_search/accepted``)
SB3_NOT_LOGGED = ("train/n_updates", "train/learning_rate", "train/is_line_search_success")


class LabTRPO(TRPO):
    """TRPO whose ``train()`` (one update) ends by handing the update to ``self.after_update(train_s)``."""

    after_update: Any = None

    def train(self) -> None:
        t = time.perf_counter()
        super().train()
        if self.after_update is not None:
            self.after_update(time.perf_counter() - t)


def trpo_kwargs(peer: DictConfig) -> dict[str, Any]:
    """``TRPO(...)``'s keyword arguments from ``cfg.peer``."""
    keys = ("n_steps", "batch_size", "gamma", "gae_lambda", "sub_sampling_factor", "cg_max_steps", "cg_damping",
            "n_critic_updates", "learning_rate", "target_kl", "line_search_shrinking_factor", "line_search_max_iter",
            "normalize_advantage")
    policy_kwargs = {
        "net_arch": {"pi": list(peer.pi_hidden_sizes), "vf": list(peer.vf_hidden_sizes)},
        "activation_fn": {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[peer.activation],
        "log_std_init": float(peer.log_std_init), "ortho_init": bool(peer.ortho_init),
    }
    return {**{k: peer[k] for k in keys}, "policy_kwargs": policy_kwargs}


def build(cfg: DictConfig) -> LabTRPO:
    """The model and its ``VecNormalize``-wrapped training envs (``model.get_env()``)."""
    p = cfg.peer
    filter_known_mujoco_warnings(cfg.env.id)
    envs = make_vec_env(cfg.env.id, n_envs=p.n_envs, seed=cfg.seed, vec_env_cls=DummyVecEnv,
                        env_kwargs=OmegaConf.to_container(cfg.env.kwargs))
    envs = VecNormalize(envs, norm_obs=p.normalize_obs, norm_reward=p.normalize_reward, clip_obs=p.clip_obs,
                        clip_reward=p.clip_reward, gamma=p.gamma)
    return LabTRPO("MlpPolicy", envs, device="cpu", seed=cfg.seed, verbose=0, **trpo_kwargs(p))


def evaluate(model: TRPO, normalizer: VecNormalize, cfg: DictConfig) -> list[float]:
    """The lab's final deterministic evaluation (module docstring) of ``model`` acting through ``normalizer``'s
    frozen observation statistics: one raw return per env."""
    envs = lab_vec_env(cfg.env.id, cfg.eval.episodes, OmegaConf.to_container(cfg.env.kwargs))
    try:
        return episode_returns(envs, cfg.seed + cfg.eval.seed_offset,
                               lambda raw: model.predict(normalizer.normalize_obs(raw), deterministic=True)[0])
    finally:
        envs.close()


def normalizer_state(normalizer: VecNormalize) -> dict[str, Any]:
    """VecNormalize's statistics as tensors and numbers: ``obs_rms`` and ``ret_rms`` (``mean``, ``var`` as float64
    tensors, ``count``), ``clip_obs``, ``clip_reward``, ``epsilon``, ``gamma``, ``norm_obs``, ``norm_reward``.
    The frozen observation map they define is x ↦ clip((x − μ)/√(σ² + ε), −clip_obs, clip_obs)."""
    def rms(r: Any) -> dict[str, Any]:
        return {"mean": torch.tensor(np.asarray(r.mean), dtype=torch.float64),
                "var": torch.tensor(np.asarray(r.var), dtype=torch.float64), "count": float(r.count)}

    return {"obs_rms": rms(normalizer.obs_rms), "ret_rms": rms(normalizer.ret_rms),
            **{k: float(getattr(normalizer, k)) for k in ("clip_obs", "clip_reward", "epsilon", "gamma")},
            "norm_obs": bool(normalizer.norm_obs), "norm_reward": bool(normalizer.norm_reward)}


class Recorder(BaseCallback):
    """Collects each rollout's finished episodes (Monitor's raw return and length) and its duration."""

    def __init__(self) -> None:
        super().__init__()
        self.returns: list[float] = []
        self.lengths: list[int] = []
        self.t_start = self.t_end = 0.0

    def _on_rollout_start(self) -> None:
        self.returns, self.lengths = [], []
        self.t_start = time.perf_counter()

    def _on_step(self) -> bool:
        for info in self.locals["infos"]:
            if "episode" in info:
                self.returns.append(float(info["episode"]["r"]))
                self.lengths.append(int(info["episode"]["l"]))
        return True

    def _on_rollout_end(self) -> None:
        self.t_end = time.perf_counter()


class UpdateLog:
    """Logs one row per update (module docstring) to the run's sinks, as the lab's trainer does (``metrics.jsonl``,
    console progress and train.log, W&B if on), and runs the evaluations that are due."""

    def __init__(self, cfg: DictConfig, model: TRPO, recorder: Recorder, sinks: Sinks) -> None:
        self.cfg, self.model, self.recorder, self.sinks = cfg, model, recorder, sinks
        self.window = ReturnWindow(cfg.return_window)
        self.updates, self.last_steps = 0, 0
        self.final_eval: dict[str, Any] | None = None
        self.time_split = {"rollout": 0.0, "train": 0.0, "eval": 0.0}

    def __call__(self, train_s: float) -> None:
        rec, model, ev = self.recorder, self.model, self.cfg.eval
        self.updates += 1
        steps = int(model.num_timesteps)
        rollout_s = rec.t_end - rec.t_start
        self.window.add(rec.returns)
        sb3 = model.logger.name_to_value  # this update's train/ numbers (dumped, and cleared, at the next update)
        row: dict[str, Any] = {
            "env_steps": steps, "update": self.updates,
            "return/mean": self.window.mean, "return/episodes": len(rec.returns),
            "episode/length_mean": float(np.mean(rec.lengths)) if rec.lengths else float("nan"),
            "line_search/accepted": int(sb3["train/is_line_search_success"] > 0),
            **{f"sb3/{k.removeprefix('train/')}": float(v) for k, v in sb3.items()
               if k.startswith("train/") and k not in SB3_NOT_LOGGED},
            "eval/return_mean": None, "eval/return_std": None,
        }
        last = steps >= self.cfg.total_env_steps
        t = time.perf_counter()
        if ev.every > 0 and (self.updates % ev.every == 0 or last):
            r = evaluate(model, model.get_vec_normalize_env(), self.cfg)
            mean, std = float(np.mean(r)), float(np.std(r))
            self.final_eval = {"return_mean": mean, "return_std": std, "episodes": len(r), "update": self.updates}
            row["eval/return_mean"], row["eval/return_std"] = mean, std
        eval_s = time.perf_counter() - t
        for name, dt in (("rollout", rollout_s), ("train", train_s), ("eval", eval_s)):
            self.time_split[name] += dt
            row[f"time/{name}_s"] = dt
        row["perf/env_steps_per_s"] = (steps - self.last_steps) / (rollout_s + train_s)
        row["perf/max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.sinks.log(row, steps - self.last_steps)
        self.last_steps = steps


def start_folder(cfg: DictConfig, run_dir: Path) -> None:
    """Claim ``run_dir`` for this run; an unfinished earlier run of the same config there is discarded (it
    cannot be continued: module docstring), and the log says so."""
    run_dir.mkdir(parents=True, exist_ok=True)
    saved = read_saved_config(run_dir)
    if saved is not None or has_metrics(run_dir) or cfg.resume == "overwrite":
        if saved is not None and cfg.resume != "overwrite":
            log.warning("%s holds an unfinished sb3-contrib run: sb3 runs cannot be resumed bit-identically, "
                        "so it restarts from scratch", run_dir)
        discard_run(run_dir)
    claim_folder(cfg, run_dir, fresh=True)


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train sb3-contrib's TRPO with ``cfg`` into ``run_dir``; returns (and writes) ``summary.json``. Every update's
    row goes to the lab's sinks (:func:`~trpo_lab.sinks.build_sinks`): ``metrics.jsonl``, the progress lines and,
    unless ``logger.wandb.mode=disabled``, a W&B run in the folder with the lab's project, group and config
    layout."""
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    start_folder(cfg, run_dir)
    meta = run_metadata()
    meta["job_type"] = cfg.peer.name  # not the lab's step-rule × line-search cell
    meta["peer"] = {"name": cfg.peer.name, "versions": {p: _version(p) for p in ("sb3-contrib", "stable-baselines3")}}
    torch.manual_seed(cfg.seed)
    model = build(cfg)
    sinks = build_sinks(cfg, run_dir, meta)
    try:
        summary = _train(cfg, run_dir, model, meta, sinks)
        if sinks.wandb is not None:
            sinks.wandb.summary(summary)
        return summary
    finally:
        sinks.close()


def _train(cfg: DictConfig, run_dir: Path, model: TRPO, meta: dict[str, Any], sinks: Sinks) -> dict[str, Any]:
    """``model.learn`` with the lab's per-update rows, then the saved model and ``summary.json``."""
    recorder = Recorder()
    updates = UpdateLog(cfg, model, recorder, sinks)
    model.after_update = updates
    t0 = time.perf_counter()
    try:
        model.learn(total_timesteps=cfg.total_env_steps, callback=recorder)
    finally:
        model.after_update = None
    wall = time.perf_counter() - t0
    write_atomic(run_dir / PEER_POLICY, lambda f: torch.save(model.policy.state_dict(), f))
    write_atomic(run_dir / PEER_NORMALIZER, lambda f: torch.save(normalizer_state(model.get_vec_normalize_env()), f))
    model.get_env().close()
    returns = updates.window.mean
    summary = {
        "env_steps": int(model.num_timesteps), "updates": updates.updates,
        "final_return": None if np.isnan(returns) else returns,
        "final_eval": updates.final_eval,
        "wall_s": wall, "env_steps_per_s": model.num_timesteps / wall if wall > 0 else None,
        "time_split_s": dict(updates.time_split), "meta": meta,
    }
    write_summary(run_dir, summary)
    return summary


def _version(package: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
