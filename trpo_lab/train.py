"""Entry point: ``python -m trpo_lab.train [hydra overrides]``.

The composition root: builds every object from the composed config and runs the
:class:`~trpo_lab.trainer.Trainer`. What a run folder holds lives in :mod:`trpo_lab.run_folder`, the
resume policy in :mod:`trpo_lab.resume`, the Hydra runtime (preflight, one-line failures, run metadata)
in :mod:`trpo_lab.launch`, config checks in :mod:`trpo_lab.config`. See the README for the config keys.
"""
from __future__ import annotations

import logging
import os
import sys
import traceback
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException, InstantiationException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from trpo_lab import CONFIG_DIR
from trpo_lab.critic import CriticFitter
from trpo_lab.envs import ObservationNormalizer, RewardScaler, make_vec_env
from trpo_lab.launch import INPUT_ERRORS, check_run, fail, hydra_error_line, job_label, run_metadata
from trpo_lab.metrics import MonotonicTracker
from trpo_lab.return_window import ReturnWindow
from trpo_lab.natural.update import NaturalGradientUpdate
from trpo_lab.policies import Policy, ValueFunction, make_policy
from trpo_lab.resume import check_folder_binding, checkpoint_to_resume, finished_summary, resolve_resume_path
from trpo_lab.rollout import RolloutCollector
from trpo_lab.run_folder import (
    METRICS, claim_folder, discard_run, read_saved_config, retire_stale_error, truncate_metrics, write_error,
    write_summary,
)
from trpo_lab.schedule import Checkpoints, Evaluation, PairedEvaluation
from trpo_lab.sinks import build_sinks, done_line
from trpo_lab.trainer import Trainer, TrainingDiverged, TrainingInterrupted
from trpo_lab.vine import VineCollector

log = logging.getLogger(__name__)

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


def build_collector(cfg: DictConfig, envs: Any, policy: Policy, critic: ValueFunction,
                    obs_normalizer: ObservationNormalizer, reward_scaler: RewardScaler, vec_env: Any) -> RolloutCollector:
    """The sampler of ``cfg.sampling``: single path (:class:`RolloutCollector`) or vine (:class:`VineCollector`,
    with its branch vector env from ``vec_env``: K sub-envs, or |A| for discrete actions)."""
    sampling = OmegaConf.to_container(cfg.sampling)
    target = sampling.pop("_target_")
    extra: dict[str, Any] = {}
    if target == "trpo_lab.vine.VineCollector":
        space = envs.single_action_space
        k = int(space.n) if hasattr(space, "n") else sampling["actions_per_state"]
        extra = {"branch_envs": vec_env(k), "normalize": cfg.algo.normalize_advantages}
    cls = VineCollector if target == "trpo_lab.vine.VineCollector" else RolloutCollector
    return cls(
        envs, policy, critic,
        steps_per_env=cfg.rollout.batch_size // cfg.rollout.num_envs,
        gamma=cfg.rollout.gamma, gae_lambda=cfg.rollout.gae_lambda,
        obs_normalizer=obs_normalizer, reward_scaler=reward_scaler, seed=cfg.seed,
        numpy_actor=cfg.rollout.numpy_actor, **sampling, **extra,
    )


def build_policy(cfg: DictConfig, observation_space: Any, action_space: Any) -> tuple[Policy, ObservationNormalizer]:
    """The policy (``cfg.policy``) and the observation normaliser it acts through (``cfg.rollout.normalize_obs``)
    for these spaces; the trainer and :func:`~trpo_lab.run_folder.build_from_folder` both build them here."""
    policy = make_policy(observation_space, action_space, **cfg.policy)
    return policy, ObservationNormalizer(observation_space.shape, enabled=cfg.rollout.normalize_obs)


def build_trainer(cfg: DictConfig, run_dir: Path, run_meta: dict[str, Any] | None = None) -> Trainer:
    """Check ``cfg`` and ``run_dir`` (:func:`~trpo_lab.launch.check_run`) and build the trainer.

    Every check that can fail (config values, env, run folder, checkpoint) runs before the run
    folder is claimed, any W&B run is made or any metric is written. The trainer owns the envs it
    holds (use it as a context manager: ``with build_trainer(...) as trainer``); if a step after an
    env was made raises, every env made so far is closed before the error propagates.
    """
    with ExitStack() as made:
        trainer = _assemble_trainer(cfg, Path(run_dir), run_meta, made)
        made.pop_all()  # built: the trainer closes them from now on
    return trainer


def _assemble_trainer(cfg: DictConfig, run_dir: Path, run_meta: dict[str, Any] | None, made: ExitStack) -> Trainer:
    """:func:`build_trainer`'s steps; every env is entered into ``made``."""
    check_run(cfg, run_dir)
    update = build_update(cfg.algo)
    state = checkpoint_to_resume(cfg, run_dir)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)

    env_kwargs = OmegaConf.to_container(cfg.env.kwargs)

    def vec_env(num_envs: int, **kwargs: Any) -> Any:
        return made.enter_context(closing(make_vec_env(cfg.env.id, num_envs, env_kwargs, **kwargs)))

    envs = vec_env(cfg.rollout.num_envs, backend=cfg.rollout.vector_env)
    policy, obs_normalizer = build_policy(cfg, envs.single_observation_space, envs.single_action_space)
    obs_dim = envs.single_observation_space.shape[0]
    critic = ValueFunction(obs_dim, cfg.critic.hidden_sizes, cfg.critic.activation)
    critic_fitter = CriticFitter(
        critic, cfg.critic.lr, cfg.critic.epochs, cfg.critic.minibatch_size, cfg.critic.implementation
    )
    reward_scaler = RewardScaler(cfg.rollout.num_envs, cfg.rollout.gamma, enabled=cfg.rollout.normalize_reward)
    collector = build_collector(cfg, envs, policy, critic, obs_normalizer, reward_scaler, vec_env)
    ev, eval_seed = cfg.eval, cfg.seed + cfg.eval.seed_offset
    measurements = [
        Evaluation(vec_env(ev.episodes) if ev.every > 0 else None, ev.every, eval_seed),
        PairedEvaluation(vec_env(ev.paired.episodes) if ev.paired.every > 0 else None, ev.paired.every, eval_seed),
    ]
    trainer = Trainer(
        collector=collector, update=update, critic_fitter=critic_fitter, policy=policy, critic=critic,
        obs_normalizer=obs_normalizer, reward_scaler=reward_scaler, gamma=cfg.rollout.gamma,
        total_env_steps=cfg.total_env_steps, run_dir=run_dir, seed=cfg.seed, measurements=measurements,
        checkpoints=Checkpoints(cfg.checkpoint_every), max_consecutive_skips=cfg.max_consecutive_skips,
        monotonic=MonotonicTracker(cfg.collapse_share), return_window=ReturnWindow(cfg.return_window),
        normalizer_warmup=cfg.rollout.normalizer_warmup if cfg.rollout.normalize_obs else 0,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.resume == "overwrite":
        discard_run(run_dir)
    claim_folder(cfg, run_dir, fresh=state is None and read_saved_config(run_dir) is None)
    if state is not None:
        trainer.load_state_dict(state)
        truncate_metrics(run_dir / METRICS, trainer.rows_written)
        log.info("resuming at update %d, env step %d of %d", trainer.updates, trainer.env_steps, cfg.total_env_steps)
    wandb_run_id = (state or {}).get("wandb_run_id")
    trainer.sinks = build_sinks(cfg, run_dir, dict(run_meta or {}), wandb_run_id, start=trainer.env_steps)
    return trainer


def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train with ``cfg`` (the lab's trainer, or the peer of ``cfg.peer``), writing into ``run_dir``; returns (and
    writes) ``summary.json``.

    A finished run of the same config in ``run_dir`` is not run again (its summary is returned)."""
    run_dir = Path(run_dir)
    check_folder_binding(cfg, run_dir)
    done = finished_summary(cfg, run_dir)
    if done is not None:
        log.info("%s is already complete (%d env steps): nothing to do", run_dir, done["env_steps"])
        return done
    if "peer" in cfg:  # another implementation under the lab's protocol (trpo_lab/peers/)
        from trpo_lab.peers import run_peer

        return run_peer(cfg, run_dir)
    meta = run_metadata()
    with build_trainer(cfg, run_dir, meta) as trainer:
        summary = trainer.run_updates()
    summary["meta"] = meta
    write_summary(run_dir, summary)
    return summary


_job_started = False  # set once Hydra calls the task function: later errors are not composition errors


def task(cfg: DictConfig) -> float | None:
    """Hydra's task function: one training job in Hydra's run folder (or the one ``resume=PATH`` names).
    Returns the final return (for sweepers)."""
    global _job_started
    _job_started = True
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode.name == "MULTIRUN"
    retire_stale_error(run_dir)
    try:
        cfg, run_dir = resolve_resume_path(cfg, run_dir, list(hc.overrides.task))
        log.info("run folder: %s", run_dir)
        summary = run(cfg, run_dir)
    except TrainingInterrupted as e:
        print(f"{e}. Continue with: python -m trpo_lab.train resume={run_dir}", file=sys.stderr)
        sys.exit(128 + e.signum)
    except Exception as e:
        if multirun:
            # One job's failure must not end the sweep. Hydra 1.3's sweeper re-raises a failed job's exception
            # once its batch ends, which would cancel every later batch (hydra.sweeper.max_batch_size): record it
            # and return; SweepSummary.on_multirun_end (trpo_lab/sweep.py) exits 1 once every job has run.
            error = write_error(run_dir, f"{type(e).__name__}: {e}\n\n{traceback.format_exc()}")
            log.error("job failed (%s: %s); see %s", type(e).__name__, e, error)
            return None
        if isinstance(e, TrainingDiverged):
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        if isinstance(e, (*INPUT_ERRORS, InstantiationException)):
            fail(str(e))
        raise
    log.info("%s", done_line(summary))
    return summary.get("final_return")


#: Hydra hands ``task`` itself to the launcher, which pickles it; undecorated under its own name, it is
#: pickled by reference, so a requeued Slurm job imports the code installed when it restarts instead of
#: replaying the code as it was at submission.
run_job = hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")(task)


def main() -> None:
    """``python -m trpo_lab.train``: Hydra's errors before any job starts (an unknown preset, a bad
    override) become one line and exit code 2, like every other rejected input."""
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")  # let composition errors reach us instead of Hydra's report
    try:
        run_job()
    except (HydraException, OmegaConfBaseException) as e:
        if _job_started:
            raise
        fail(hydra_error_line(e))
    except ValueError as e:  # Hydra's check of its own flags (e.g. -m with --cfg), before any job
        if _job_started or "can be specified" not in str(e):
            raise
        fail(f"{hydra_error_line(e)} (--cfg prints one job's config: drop -m, e.g. python -m trpo_lab.train seed=0 --cfg job)")


if __name__ == "__main__":
    # Run the module's own entry point, not this __main__ copy: cloudpickle pickles the functions of __main__
    # by value, so the launcher would ship this file's code as it is now to every (requeued) job.
    from trpo_lab.train import main as _main

    _main()
