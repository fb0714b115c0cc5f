"""Entry point: ``python -m trpo_lab.train [hydra overrides]``.

Builds every object from the composed config (nothing else happens here) and runs the
:class:`~trpo_lab.trainer.Trainer`. See the README for the config keys.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from trpo_lab.config import ConfigError, validate
from trpo_lab.critic import CriticFitter
from trpo_lab.envs import ObservationNormalizer, RewardScaler, UnknownEnvError, check_env_id, make_vec_env
from trpo_lab.logging import ConsoleProgress, JsonlSink, WandbSink
from trpo_lab.metrics import MonotonicTracker
from trpo_lab.natural.update import NaturalGradientUpdate
from trpo_lab.policies import ValueFunction, make_policy
from trpo_lab.rollout import RolloutCollector
from trpo_lab.trainer import Sinks, Trainer

log = logging.getLogger(__name__)


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def build_update(algo: DictConfig) -> NaturalGradientUpdate:
    """The policy update from the ``algo`` group: its four pieces are instantiated from their sub-groups."""
    return NaturalGradientUpdate(
        fisher=instantiate(algo.fisher),
        solver=instantiate(algo.solver),
        step_rule=instantiate(algo.step_rule),
        line_search=instantiate(algo.line_search),
        max_kl=algo.max_kl,
        kl_direction=algo.kl_direction,
        constraint=algo.constraint,
        normalize_advantages=algo.normalize_advantages,
    )


def build_trainer(cfg: DictConfig, run_dir: Path, run_meta: dict[str, Any] | None = None) -> Trainer:
    """Validate ``cfg`` and build the trainer. Every check that can fail runs before any env is made."""
    validate(cfg)
    check_env_id(cfg.env.id)
    update = build_update(cfg.algo)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)

    envs = make_vec_env(cfg.env.id, cfg.rollout.num_envs, OmegaConf.to_container(cfg.env.kwargs))
    try:
        policy = make_policy(envs.single_observation_space, envs.single_action_space, **cfg.policy)
    except ValueError:
        envs.close()
        raise
    obs_dim = envs.single_observation_space.shape[0]
    critic = ValueFunction(obs_dim, cfg.critic.hidden_sizes, cfg.critic.activation)
    critic_fitter = CriticFitter(critic, cfg.critic.lr, cfg.critic.epochs, cfg.critic.minibatch_size)
    obs_normalizer = ObservationNormalizer((obs_dim,), enabled=cfg.rollout.normalize_obs)
    reward_scaler = RewardScaler(cfg.rollout.num_envs, cfg.rollout.gamma, enabled=cfg.rollout.normalize_reward)
    collector = RolloutCollector(
        envs, policy, critic,
        steps_per_env=cfg.rollout.batch_size // cfg.rollout.num_envs,
        gamma=cfg.rollout.gamma, gae_lambda=cfg.rollout.gae_lambda,
        obs_normalizer=obs_normalizer, reward_scaler=reward_scaler, seed=cfg.seed,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    plain = OmegaConf.to_container(cfg, resolve=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    meta = dict(run_meta or {})
    wandb_sink = None
    lg = cfg.logger
    if lg.wandb.mode != "disabled":
        wandb_sink = WandbSink(
            run_dir, {**plain, "meta": meta}, mode=lg.wandb.mode, project=lg.wandb.project,
            entity=lg.wandb.entity, group=lg.wandb.group or meta.get("group"),
            job_type=meta.get("job_type"), name=meta.get("name"), tags=list(lg.wandb.tags),
            init_timeout=lg.wandb.init_timeout,
        )
    sinks = Sinks(
        jsonl=JsonlSink(run_dir / "metrics.jsonl"),
        console=ConsoleProgress(cfg.total_env_steps, lg.console, lg.console_every),
        wandb=wandb_sink,
    )
    return Trainer(
        collector=collector, update=update, critic_fitter=critic_fitter, policy=policy, critic=critic,
        obs_normalizer=obs_normalizer, reward_scaler=reward_scaler, gamma=cfg.rollout.gamma,
        total_env_steps=cfg.total_env_steps, run_dir=run_dir, sinks=sinks,
        checkpoint_every=cfg.checkpoint_every, monotonic=MonotonicTracker(cfg.collapse_share),
    )


def run_metadata() -> dict[str, Any]:
    """Run name, group and job type from Hydra's recorded choices (never a hand-written name)."""
    import gymnasium
    import mujoco

    meta: dict[str, Any] = {
        "git_commit": git_commit(),
        "versions": {"torch": torch.__version__, "gymnasium": gymnasium.__version__, "mujoco": mujoco.__version__},
    }
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        choices = hc.runtime.choices
        meta["job_type"] = choices.get("algo")
        meta["name"] = hc.job.override_dirname or f"{choices.get('algo')}-{choices.get('env')}"
        meta["group"] = choices.get("experiment") or (Path(hc.sweep.dir).name if hc.mode.name == "MULTIRUN" else None)
        meta["choices"] = dict(choices)
    return meta


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train with ``cfg``, writing into ``run_dir``; returns (and writes) ``summary.json``."""
    meta = run_metadata()
    return train(build_trainer(cfg, run_dir, meta), run_dir, meta)


def train(trainer: Trainer, run_dir: Path, meta: dict[str, Any]) -> dict[str, Any]:
    try:
        summary = trainer.train()
    finally:
        trainer.collector.envs.close()
    summary["meta"] = meta
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    meta = run_metadata()
    try:
        trainer = build_trainer(cfg, run_dir, meta)
    except (ConfigError, UnknownEnvError, ValueError, InstantiationException) as e:
        if HydraConfig.get().mode.name == "MULTIRUN":
            (run_dir / "error.txt").write_text(f"{type(e).__name__}: {e}\n")
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    summary = train(trainer, run_dir, meta)
    log.info("done: %s", json.dumps({k: summary[k] for k in ("env_steps", "final_return", "wall_s")}))
    return summary.get("final_return")


if __name__ == "__main__":
    main()
