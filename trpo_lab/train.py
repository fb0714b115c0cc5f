"""Entry point: ``python -m trpo_lab.train [hydra overrides]``.

The composition root: builds every object from the composed config and runs the
:class:`~trpo_lab.trainer.Trainer`. Run-folder and resume rules live in :mod:`trpo_lab.resume`,
config checks in :mod:`trpo_lab.config`. See the README for the config keys.
"""
from __future__ import annotations

import json
import logging
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from trpo_lab.checkpoint import CheckpointError
from trpo_lab.config import ConfigError, validate
from trpo_lab.critic import CriticFitter
from trpo_lab.envs import ObservationNormalizer, RewardScaler, UnknownEnvError, check_env_id, make_vec_env
from trpo_lab.resume import (
    ERROR, METRICS, checkpoint_to_resume, finished_summary, resolve_resume_path, retire_stale_error,
    truncate_metrics, write_config, write_summary,
)
from trpo_lab.metrics import MonotonicTracker
from trpo_lab.natural.update import NaturalGradientUpdate
from trpo_lab.policies import ValueFunction, make_policy
from trpo_lab.rollout import RolloutCollector
from trpo_lab.sinks import ConsoleProgress, JsonlSink, WandbSink, run_metadata
from trpo_lab.trainer import Evaluation, Sinks, Trainer, TrainingDiverged, TrainingInterrupted

log = logging.getLogger(__name__)

#: errors that mean "the input is wrong": one line on stderr, exit code 2, nothing started
INPUT_ERRORS = (ConfigError, UnknownEnvError, CheckpointError, InstantiationException, ValueError)


def build_update(algo: DictConfig) -> NaturalGradientUpdate:
    """The policy update from the ``algo`` group: its four pieces are instantiated from their sub-groups."""
    return NaturalGradientUpdate(
        fisher=hydra.utils.instantiate(algo.fisher),
        solver=hydra.utils.instantiate(algo.solver),
        step_rule=hydra.utils.instantiate(algo.step_rule),
        line_search=hydra.utils.instantiate(algo.line_search),
        max_kl=algo.max_kl,
        kl_direction=algo.kl_direction,
        constraint=algo.constraint,
        normalize_advantages=algo.normalize_advantages,
    )


def build_trainer(cfg: DictConfig, run_dir: Path, run_meta: dict[str, Any] | None = None) -> Trainer:
    """Validate ``cfg`` and build the trainer.

    Every check that can fail (config values, env id, action space, checkpoint) runs before any
    W&B run is made or any metric is written.
    """
    validate(cfg)
    check_env_id(cfg.env.id)
    update = build_update(cfg.algo)
    run_dir = Path(run_dir)
    state = checkpoint_to_resume(cfg, run_dir)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)

    env_kwargs = OmegaConf.to_container(cfg.env.kwargs)
    envs = make_vec_env(cfg.env.id, cfg.rollout.num_envs, env_kwargs, backend=cfg.rollout.vector_env)
    try:
        policy = make_policy(envs.single_observation_space, envs.single_action_space, **cfg.policy)
    except ValueError:
        envs.close()
        raise
    obs_dim = envs.single_observation_space.shape[0]
    critic = ValueFunction(obs_dim, cfg.critic.hidden_sizes, cfg.critic.activation)
    critic_fitter = CriticFitter(
        critic, cfg.critic.lr, cfg.critic.epochs, cfg.critic.minibatch_size, cfg.critic.implementation
    )
    obs_normalizer = ObservationNormalizer((obs_dim,), enabled=cfg.rollout.normalize_obs)
    reward_scaler = RewardScaler(cfg.rollout.num_envs, cfg.rollout.gamma, enabled=cfg.rollout.normalize_reward)
    collector = RolloutCollector(
        envs, policy, critic,
        steps_per_env=cfg.rollout.batch_size // cfg.rollout.num_envs,
        gamma=cfg.rollout.gamma, gae_lambda=cfg.rollout.gae_lambda,
        obs_normalizer=obs_normalizer, reward_scaler=reward_scaler, seed=cfg.seed,
        numpy_actor=cfg.rollout.numpy_actor,
    )
    ev = cfg.eval
    evaluation = Evaluation(
        envs=make_vec_env(cfg.env.id, ev.episodes, env_kwargs) if ev.every > 0 else None,
        every=ev.every,
        seed=cfg.seed + ev.seed_offset,
        paired_envs=make_vec_env(cfg.env.id, ev.paired_episodes, env_kwargs) if ev.paired else None,
    )
    trainer = Trainer(
        collector=collector, update=update, critic_fitter=critic_fitter, policy=policy, critic=critic,
        obs_normalizer=obs_normalizer, reward_scaler=reward_scaler, gamma=cfg.rollout.gamma,
        total_env_steps=cfg.total_env_steps, run_dir=run_dir, seed=cfg.seed,
        checkpoint_every=cfg.checkpoint_every, max_consecutive_skips=cfg.max_consecutive_skips,
        evaluation=evaluation, monotonic=MonotonicTracker(cfg.collapse_share),
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    if state is not None:
        trainer.load_state_dict(state)
        truncate_metrics(run_dir / METRICS, trainer.updates)
    write_config(cfg, run_dir)
    wandb_run_id = (state or {}).get("wandb_run_id")
    trainer.sinks = build_sinks(cfg, run_dir, dict(run_meta or {}), wandb_run_id, start=trainer.env_steps)
    return trainer


def build_sinks(cfg: DictConfig, run_dir: Path, meta: dict[str, Any], wandb_run_id: str | None, start: int) -> Sinks:
    """metrics.jsonl, console progress and (unless disabled) a W&B run, from ``cfg.logger``."""
    lg = cfg.logger
    wandb_sink = None
    if lg.wandb.mode != "disabled":
        wandb_sink = WandbSink(
            run_dir, {**OmegaConf.to_container(cfg, resolve=True), "meta": meta}, mode=lg.wandb.mode,
            project=lg.wandb.project, entity=lg.wandb.entity, group=lg.wandb.group or meta.get("group"),
            job_type=meta.get("job_type"), name=meta.get("name"), tags=list(lg.wandb.tags),
            init_timeout=lg.wandb.init_timeout, run_id=wandb_run_id,
        )
    console = lg.console
    if console == "auto" and meta.get("multirun"):
        console = "lines"
    return Sinks(
        jsonl=JsonlSink(run_dir / METRICS),
        console=ConsoleProgress(cfg.total_env_steps, console, lg.console_every, start=start),
        wandb=wandb_sink,
    )


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train with ``cfg``, writing into ``run_dir``; returns (and writes) ``summary.json``."""
    done = finished_summary(cfg, run_dir)
    if done is not None:
        log.info("%s is already complete (%d env steps): nothing to do", run_dir, done["env_steps"])
        return done
    meta = run_metadata()
    trainer = build_trainer(cfg, run_dir, meta)
    try:
        summary = trainer.run_updates()
    finally:
        trainer.collector.envs.close()
    summary["meta"] = meta
    write_summary(run_dir, summary)
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode.name == "MULTIRUN"
    retire_stale_error(run_dir)
    try:
        cfg, run_dir = resolve_resume_path(cfg, run_dir, list(HydraConfig.get().overrides.task))
        summary = run(cfg, run_dir)
    except TrainingInterrupted as e:
        print(f"{e}. Continue with: python -m trpo_lab.train resume={run_dir}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except Exception as e:
        if multirun:  # one job's failure must not end the sweep: record it and let the others run
            (run_dir / ERROR).write_text(f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}")
            log.error("job failed (%s: %s); see %s", type(e).__name__, e, run_dir / ERROR)
            return None
        if isinstance(e, (*INPUT_ERRORS, TrainingDiverged)):
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1 if isinstance(e, TrainingDiverged) else 2)
        raise
    log.info("done: %s", json.dumps({k: summary.get(k) for k in ("env_steps", "final_return", "wall_s")}))
    return summary.get("final_return")


if __name__ == "__main__":
    main()
