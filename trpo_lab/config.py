"""Checks on the composed config, run before any env, network or W&B run is made.

Each error names the key, its value and what is allowed, so a typo in a sweep fails in
milliseconds instead of hours into a job.
"""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig


class ConfigError(ValueError):
    pass


def _get(cfg: DictConfig, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if part not in node:
            raise ConfigError(f"{key} is missing from the config")
        node = node[part]
    return node


def _check(cfg: DictConfig, key: str, ok, allowed: str) -> None:
    value = _get(cfg, key)
    try:
        good = ok(value)
    except TypeError:
        good = False
    if not good:
        raise ConfigError(f"{key}={value!r} is invalid: must be {allowed}")


def validate(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` for the first invalid value."""
    num = (int, float)
    _check(cfg, "algo.max_kl", lambda v: isinstance(v, num) and v > 0, "> 0")
    _check(cfg, "algo.kl_direction", lambda v: v in ("old_new", "new_old"), "'old_new' or 'new_old'")
    _check(cfg, "algo.constraint", lambda v: v in ("mean", "max"), "'mean' or 'max'")
    _check(cfg, "rollout.gamma", lambda v: isinstance(v, num) and 0 <= v <= 1, "in [0, 1]")
    _check(cfg, "rollout.gae_lambda", lambda v: isinstance(v, num) and 0 <= v <= 1, "in [0, 1]")
    _check(cfg, "rollout.num_envs", lambda v: isinstance(v, int) and v >= 1, "an integer ≥ 1")
    n = cfg.rollout.num_envs
    _check(cfg, "rollout.batch_size", lambda v: isinstance(v, int) and v >= n, f"an integer ≥ rollout.num_envs ({n})")
    _check(cfg, "rollout.batch_size", lambda v: v % n == 0, f"a multiple of rollout.num_envs ({n})")
    b = cfg.rollout.batch_size
    _check(cfg, "total_env_steps", lambda v: isinstance(v, int) and v >= b, f"an integer ≥ rollout.batch_size ({b})")
    _check(cfg, "torch_threads", lambda v: isinstance(v, int) and v >= 0, "an integer ≥ 0 (0 leaves torch's default)")
    _check(cfg, "seed", lambda v: isinstance(v, int), "an integer")
    _check(cfg, "checkpoint_every", lambda v: isinstance(v, int) and v >= 0, "an integer ≥ 0 (0: only at the end)")
    _check(cfg, "max_consecutive_skips", lambda v: isinstance(v, int) and v >= 1, "an integer ≥ 1")
    _check(cfg, "collapse_share", lambda v: isinstance(v, num) and v > 0, "> 0")
    _check(cfg, "resume", lambda v: v in (True, False, "auto") or isinstance(v, str), "true, false, auto or a run folder")
    _check(cfg, "eval.every", lambda v: isinstance(v, int) and v >= 0, "an integer ≥ 0 (0: off)")
    _check(cfg, "eval.episodes", lambda v: isinstance(v, int) and v >= 1, "an integer ≥ 1")
    _check(cfg, "eval.paired.every", lambda v: isinstance(v, int) and v >= 0, "an integer ≥ 0 (0: off)")
    _check(cfg, "eval.paired.episodes", lambda v: isinstance(v, int) and v >= 2, "an integer ≥ 2 (for a standard error)")
    _check(cfg, "rollout.normalizer_warmup", lambda v: isinstance(v, int) and v >= 0, "an integer ≥ 0 (0: off)")
    w = cfg.rollout.normalizer_warmup if cfg.rollout.normalize_obs else 0
    _check(cfg, "total_env_steps", lambda v: v >= w + b,
           f"≥ rollout.normalizer_warmup + rollout.batch_size ({w} + {b}): the warm-up counts toward it")
    ls = cfg.algo.line_search
    if "backtrack_coef" in ls:
        _check(cfg, "algo.line_search.backtrack_coef", lambda v: 0 < v < 1, "in (0, 1)")
        _check(cfg, "algo.line_search.max_backtracks", lambda v: isinstance(v, int) and v >= 1, "an integer ≥ 1")
    if "curvature" in cfg.algo.step_rule:
        _check(cfg, "algo.step_rule.curvature", lambda v: v in ("damped", "undamped"), "'damped' or 'undamped'")
    if "step_size" in cfg.algo.step_rule:
        _check(cfg, "algo.step_rule.step_size", lambda v: isinstance(v, num) and v > 0, "> 0")
    _check(cfg, "algo.solver.iters", lambda v: isinstance(v, int) and v >= 1, "an integer ≥ 1")
    _check(cfg, "algo.solver.damping", lambda v: isinstance(v, num) and v >= 0, "≥ 0")
    _check(cfg, "rollout.vector_env", lambda v: v in ("inprocess", "gymnasium"), "'inprocess' or 'gymnasium'")
    _check(cfg, "critic.implementation", lambda v: v in ("fused", "autograd"), "'fused' or 'autograd'")
    _check(cfg, "algo.fisher.subsample", lambda v: isinstance(v, num) and 0 < v <= 1, "in (0, 1]")
