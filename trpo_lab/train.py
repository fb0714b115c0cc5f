"""Entry point: ``python -m trpo_lab.train [hydra overrides]``.

Builds every object from the composed config (nothing else happens here) and runs the
:class:`~trpo_lab.trainer.Trainer`. See the README for the config keys.
"""
from __future__ import annotations

import json
import logging
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from trpo_lab import CONFIG_DIR
from trpo_lab.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint
from trpo_lab.config import ConfigError, validate
from trpo_lab.critic import CriticFitter
from trpo_lab.envs import ObservationNormalizer, RewardScaler, UnknownEnvError, check_env_id, make_vec_env
from trpo_lab.logging import ConsoleProgress, JsonlSink, WandbSink
from trpo_lab.metrics import MonotonicTracker
from trpo_lab.natural.update import NaturalGradientUpdate
from trpo_lab.policies import ValueFunction, make_policy
from trpo_lab.rollout import RolloutCollector
from trpo_lab.trainer import Evaluation, Sinks, Trainer, TrainingDiverged, TrainingInterrupted, truncate_metrics

log = logging.getLogger(__name__)

#: errors that mean "the input is wrong": one line on stderr, exit code 2, nothing started
INPUT_ERRORS = (ConfigError, UnknownEnvError, CheckpointError, InstantiationException, ValueError)


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
        fisher=hydra.utils.instantiate(algo.fisher),
        solver=hydra.utils.instantiate(algo.solver),
        step_rule=hydra.utils.instantiate(algo.step_rule),
        line_search=hydra.utils.instantiate(algo.line_search),
        max_kl=algo.max_kl,
        kl_direction=algo.kl_direction,
        constraint=algo.constraint,
        normalize_advantages=algo.normalize_advantages,
    )


def _resume_state(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint to continue from, per ``cfg.resume`` (false | true | auto)."""
    ckpt = run_dir / CHECKPOINT
    metrics = run_dir / "metrics.jsonl"
    mode = cfg.resume
    if mode is True or mode == "auto":
        if ckpt.exists():
            return load_checkpoint(ckpt)
        if mode is True:
            raise CheckpointError(f"resume=true, but there is no checkpoint at {ckpt}")
        truncate_metrics(metrics, 0)  # auto with rows but no checkpoint: nothing covers them, start over
        return None
    if metrics.exists() and metrics.stat().st_size > 0:
        raise ConfigError(
            f"{run_dir} already holds metrics.jsonl from a run; pass resume=true to continue it, or use a new folder"
        )
    return None


def build_trainer(cfg: DictConfig, run_dir: Path, run_meta: dict[str, Any] | None = None) -> Trainer:
    """Validate ``cfg`` and build the trainer.

    Every check that can fail (config values, env id, action space, checkpoint) runs before any
    W&B run is made or any metric is written.
    """
    validate(cfg)
    check_env_id(cfg.env.id)
    update = build_update(cfg.algo)
    run_dir = Path(run_dir)
    state = _resume_state(cfg, run_dir)
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
        truncate_metrics(run_dir / "metrics.jsonl", trainer.updates)
    trainer.sinks = _make_sinks(cfg, run_dir, dict(run_meta or {}), state, start=trainer.env_steps)
    return trainer


def _make_sinks(cfg: DictConfig, run_dir: Path, meta: dict[str, Any], state, start: int) -> Sinks:
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    lg = cfg.logger
    wandb_sink = None
    if lg.wandb.mode != "disabled":
        wandb_sink = WandbSink(
            run_dir, {**OmegaConf.to_container(cfg, resolve=True), "meta": meta}, mode=lg.wandb.mode,
            project=lg.wandb.project, entity=lg.wandb.entity, group=lg.wandb.group or meta.get("group"),
            job_type=meta.get("job_type"), name=meta.get("name"), tags=list(lg.wandb.tags),
            init_timeout=lg.wandb.init_timeout, run_id=(state or {}).get("wandb_run_id"),
        )
    console = lg.console
    if console == "auto" and meta.get("multirun"):
        console = "lines"
    return Sinks(
        jsonl=JsonlSink(run_dir / "metrics.jsonl"),
        console=ConsoleProgress(cfg.total_env_steps, console, lg.console_every, start=start),
        wandb=wandb_sink,
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
        multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
        meta["multirun"] = multirun
        meta["job_type"] = choices.get("algo")
        meta["name"] = hc.job.override_dirname or f"{choices.get('algo')}-{choices.get('env')}"
        meta["group"] = choices.get("experiment") or (Path(hc.sweep.dir).name if multirun else None)
        meta["choices"] = {k: v for k, v in choices.items() if not k.startswith("hydra/")}
    return meta


def _complete_summary(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The summary of an already finished run in ``run_dir`` (a re-launched sweep skips such jobs)."""
    path = run_dir / "summary.json"
    if cfg.resume in (True, "auto") and path.exists():
        summary = json.loads(path.read_text())
        if summary.get("env_steps", 0) >= cfg.total_env_steps:
            return summary
    return None


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train with ``cfg``, writing into ``run_dir``; returns (and writes) ``summary.json``."""
    done = _complete_summary(cfg, run_dir)
    if done is not None:
        log.info("%s is already complete (%d env steps): nothing to do", run_dir, done["env_steps"])
        return done
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


def resolve_resume_path(cfg: DictConfig, run_dir: Path) -> tuple[DictConfig, Path]:
    """``resume=PATH``: continue the run in PATH with its saved config plus this command's overrides."""
    if cfg.resume in (True, False, "auto"):
        return cfg, run_dir
    target = Path(str(cfg.resume))
    if target.name == CHECKPOINT:
        target = target.parent
    saved_path = target / "config.yaml"
    if not saved_path.exists():
        raise CheckpointError(f"resume={cfg.resume}: {saved_path} does not exist (expected a trpo-lab run folder)")
    try:
        merged = OmegaConf.load(saved_path)
    except Exception as e:  # noqa: BLE001 - a corrupt YAML file
        raise ConfigError(f"resume={cfg.resume}: {saved_path} is not a readable config ({e})") from None
    for o in HydraConfig.get().overrides.task:
        key = o.lstrip("+~").partition("=")[0]
        if key == "resume":
            continue
        if "/" in key or isinstance(OmegaConf.select(merged, key), DictConfig):
            raise ConfigError(f"resume=PATH continues the run with its own config groups; cannot apply '{o}'")
        # the value as Hydra parsed it on this command line
        OmegaConf.update(merged, key, OmegaConf.select(cfg, key), force_add=True)
    merged.resume = True
    return merged, target


def task(cfg: DictConfig) -> float | None:
    """Hydra's task function: one run, or one job of a sweep. Returns the final return (for sweepers)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode.name == "MULTIRUN"
    stale = run_dir / "error.txt"
    if stale.exists():  # a re-launched sweep retries this job: keep the old error, but not as the current one
        stale.replace(run_dir / "error.previous.txt")
    try:
        cfg, run_dir = resolve_resume_path(cfg, run_dir)
        summary = run(cfg, run_dir)
    except TrainingInterrupted as e:
        print(f"{e}. Continue with: python -m trpo_lab.train resume={run_dir}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except Exception as e:
        if multirun:
            # One job's failure must not end the sweep. Hydra 1.3's sweeper re-raises a failed job's exception
            # once its batch ends, which would cancel every later batch (hydra.sweeper.max_batch_size): record it
            # and return; SweepSummary.on_multirun_end (trpo_lab/sweep.py) exits 1 once every job has run.
            (run_dir / "error.txt").write_text(f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}")
            log.error("job failed (%s: %s); see %s", type(e).__name__, e, run_dir / "error.txt")
            return None
        if isinstance(e, (*INPUT_ERRORS, TrainingDiverged)):
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1 if isinstance(e, TrainingDiverged) else 2)
        raise
    log.info("done: %s", json.dumps({k: summary.get(k) for k in ("env_steps", "final_return", "wall_s")}))
    return summary.get("final_return")


#: the entry point (``python -m trpo_lab.train``, ``trpo-train``). Hydra hands ``task`` itself to the launcher,
#: which pickles it; undecorated under its own name, it is pickled by reference, so a requeued Slurm job
#: imports the code installed when it restarts instead of replaying the code as it was at submission.
main = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")(task)


if __name__ == "__main__":
    # Run the module's own entry point, not this __main__ copy: cloudpickle pickles the functions of __main__
    # by value, so the launcher would ship this file's code as it is now to every (requeued) job.
    from trpo_lab.train import main as _main

    _main()
