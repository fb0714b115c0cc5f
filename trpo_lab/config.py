"""The config schema: one dataclass per config group, checked before any folder, env or W&B run is made.

Each field's annotation is its type and its ``key(...)`` metadata its allowed range, so every rule
is written once, here. :func:`validate` walks the composed config against :class:`TrainConfig`:
unknown keys, wrong types and out-of-range values all raise :class:`ConfigError` with one line
that names the key, the value and what is allowed. Integers may be written in float notation
(``total_env_steps=1e6``) when the value is a whole number; they are stored back as ``int``.

The schema checks values, not the outside world: the env is checked beside it
(:func:`trpo_lab.envs.check_env`), the run folder by :mod:`trpo_lab.run_folder` and
:mod:`trpo_lab.resume`. The library classes import nothing from here: they take plain typed
arguments, validated here before they are built.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal

from omegaconf import DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """An input (config value, env, run folder, CLI argument) is not allowed: exit code 2."""


@dataclass(frozen=True)
class Range:
    """A value range: ``ok(value)`` and its description for the error message."""

    ok: Callable[[Any], bool]
    allowed: str


def at_least(lo: float, note: str = "") -> Range:
    return Range(lambda v: v >= lo, f"≥ {lo}" + (f" ({note})" if note else ""))


def interval(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Range:
    def ok(v: float) -> bool:
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return Range(ok, f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


POSITIVE = Range(lambda v: v > 0, "> 0")


def key(rng: Range | None = None, default: Any = None) -> Any:
    """A schema field whose value must also lie in ``rng``."""
    return field(default=default, metadata={"range": rng})


# -- the schema --------------------------------------------------------------------------------------


@dataclass
class PairedEvalConfig:
    every: int = key(at_least(0, "0: off"))
    episodes: int = key(at_least(2, "for a standard error"))


@dataclass
class EvalConfig:
    every: int = key(at_least(0, "0: off"))
    episodes: int = key(at_least(1))
    seed_offset: int = key(at_least(0))
    paired: PairedEvalConfig = key()


@dataclass
class RolloutConfig:
    num_envs: int = key(at_least(1))
    batch_size: int = key(at_least(1))
    gamma: float = key(interval(0, 1))
    gae_lambda: float = key(interval(0, 1))
    normalize_obs: bool = key()
    normalizer_warmup: int = key(at_least(0, "0: off"))
    normalize_reward: bool = key()
    vector_env: Literal["inprocess", "gymnasium"] = key()
    numpy_actor: bool = key()


@dataclass
class SinglePathConfig:
    TARGET: ClassVar[str] = "trpo_lab.rollout.RolloutCollector"
    _target_: str = key()
    baseline: Literal["critic", "none"] = key()


@dataclass
class VineConfig:
    TARGET: ClassVar[str] = "trpo_lab.vine.VineCollector"
    _target_: str = key()
    states: int = key(at_least(1))
    actions_per_state: int = key(at_least(2, "self-normalised Eq. 16 needs two branches"))
    branch_length: int = key(at_least(1))
    bootstrap: bool = key()
    baseline: Literal["state_mean", "none"] = key()


@dataclass
class KLScaledStepConfig:
    TARGET: ClassVar[str] = "trpo_lab.natural.step_rules.KLScaledStep"
    _target_: str = key()
    max_kl: float = key(POSITIVE)
    curvature: Literal["damped", "undamped"] = key(default="damped")


@dataclass
class FixedStepConfig:
    TARGET: ClassVar[str] = "trpo_lab.natural.step_rules.FixedStep"
    _target_: str = key()
    step_size: float = key(POSITIVE)


@dataclass
class BacktrackingLineSearchConfig:
    TARGET: ClassVar[str] = "trpo_lab.natural.line_search.BacktrackingLineSearch"
    _target_: str = key()
    max_kl: float = key(POSITIVE)
    constraint: Literal["mean", "max"] = key()
    backtrack_coef: float = key(interval(0, 1, lo_open=True, hi_open=True))
    max_backtracks: int = key(at_least(1))
    accept_ratio: float = key(at_least(0))


@dataclass
class NoLineSearchConfig:
    TARGET: ClassVar[str] = "trpo_lab.natural.line_search.NoLineSearch"
    _target_: str = key()


@dataclass
class AnalyticFisherConfig:
    TARGET: ClassVar[str] = "trpo_lab.natural.fisher.AnalyticFisher"
    _target_: str = key()
    subsample: float = key(interval(0, 1, lo_open=True))
    method: Literal["jmj", "double_backprop"] = key()


@dataclass
class EmpiricalFisherConfig:
    TARGET: ClassVar[str] = "trpo_lab.natural.fisher.EmpiricalFisher"
    _target_: str = key()
    subsample: float = key(interval(0, 1, lo_open=True))


@dataclass
class ConjugateGradientConfig:
    TARGET: ClassVar[str] = "trpo_lab.natural.cg.ConjugateGradient"
    _target_: str = key()
    iters: int = key(at_least(1))
    damping: float = key(at_least(0))
    residual_tol: float = key(at_least(0))


@dataclass
class AlgoConfig:
    # the algo-level keys first: the sub-configs interpolate max_kl and constraint, and an error
    # should name the key the user wrote
    max_kl: float = key(POSITIVE)
    kl_direction: Literal["old_new", "new_old"] = key()
    constraint: Literal["mean", "max"] = key()
    normalize_advantages: bool = key()
    step_rule: KLScaledStepConfig | FixedStepConfig = key()
    line_search: BacktrackingLineSearchConfig | NoLineSearchConfig = key()
    fisher: AnalyticFisherConfig | EmpiricalFisherConfig = key()
    solver: ConjugateGradientConfig = key()


@dataclass
class EnvConfig:
    id: str = key()
    kwargs: dict[str, Any] = key()  # checked by making the env: trpo_lab.envs.check_env


@dataclass
class PolicyConfig:
    hidden_sizes: list[int] = key(at_least(1))  # [] = a linear policy
    activation: Literal["tanh", "relu", "elu", "softplus"] = key()
    log_std_init: float = key()


@dataclass
class CriticConfig:
    hidden_sizes: list[int] = key(at_least(1))
    activation: Literal["tanh", "relu", "elu", "softplus"] = key()
    lr: float = key(POSITIVE)
    epochs: int = key(at_least(1))
    minibatch_size: int = key(at_least(1))
    implementation: Literal["fused", "autograd"] = key()


@dataclass
class WandbConfig:
    mode: Literal["auto", "online", "offline", "disabled"] = key()
    project: str = key()
    entity: str | None = key()
    group: str | None = key()
    tags: list[str] = key()
    init_timeout: float = key(POSITIVE)
    silent: bool = key()


@dataclass
class LoggerConfig:
    console: Literal["auto", "bar", "lines", "off"] = key()
    console_every: int = key(at_least(1))
    wandb: WandbConfig = key()


RESUME_MODES = ("auto", "overwrite")
#: top-level groups that may be absent (``peer=none`` adds no key); each is checked by its own module
OPTIONAL_GROUPS = ("peer",)
RESUME_ALLOWED = "true, false, auto, overwrite or a run folder"


@dataclass
class TrainConfig:
    seed: int = key(at_least(0))
    total_env_steps: int = key(at_least(1))
    torch_threads: int = key(at_least(0, "0 leaves torch's default"))
    checkpoint_every: int = key(at_least(0, "0: only at the end"))
    collapse_share: float = key(POSITIVE)
    return_window: int = key(at_least(1))
    resume: bool | str = key(Range(lambda v: isinstance(v, bool) or v in RESUME_MODES or bool(v), RESUME_ALLOWED))
    max_consecutive_skips: int = key(at_least(1))
    eval: EvalConfig = key()
    rollout: RolloutConfig = key()
    sampling: SinglePathConfig | VineConfig = key()
    algo: AlgoConfig = key()
    env: EnvConfig = key()
    policy: PolicyConfig = key()
    critic: CriticConfig = key()
    logger: LoggerConfig = key()


@dataclass
class EvaluateArgs:
    """The arguments of ``python -m trpo_lab.evaluate``."""

    episodes: int = key(at_least(1))
    seed: int = key(at_least(0))


# -- checking ----------------------------------------------------------------------------------------

_NUMBER = (int, float)


def _fail(path: str, value: Any, allowed: str) -> ConfigError:
    shown = OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value
    return ConfigError(f"{path}={shown!r} is invalid: must be {allowed}")


def _check_type(path: str, value: Any, tp: Any) -> Any:
    """``value`` checked against the annotation ``tp`` (and coerced: 1e6 → 1000000 for an int)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is bool:
        if not isinstance(value, bool):
            raise _fail(path, value, "true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, _NUMBER):
            raise _fail(path, value, "an integer")
        if isinstance(value, float):
            if not (math.isfinite(value) and value.is_integer()):
                raise _fail(path, value, "an integer")
            return int(value)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, _NUMBER) or not math.isfinite(value):
            raise _fail(path, value, "a finite number")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _fail(path, value, "a string")
        return value
    if origin is Literal:
        if value not in args:
            raise _fail(path, value, "one of " + ", ".join(map(str, args)))
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        if all(dataclasses.is_dataclass(a) for a in args):  # a variant group: _check_node picks the schema
            if not isinstance(value, (dict, DictConfig)):
                raise _fail(path, value, "a mapping")
            return value
        if bool in args and isinstance(value, bool):
            return value
        rest = [a for a in args if a not in (type(None), bool)]
        return _check_type(path, value, rest[0])
    if origin is list:
        if not isinstance(value, (list, ListConfig)):
            raise _fail(path, value, f"a list of {args[0].__name__}")
        return [_check_type(f"{path}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if origin is dict or dataclasses.is_dataclass(tp):
        if not isinstance(value, (dict, DictConfig)):
            raise _fail(path, value, "a mapping")
        return value
    raise TypeError(f"schema annotation {tp!r} of {path} is not handled")  # a bug in this module, not input


def _schema_for(path: str, node: Any, tp: Any) -> type:
    """The dataclass that describes ``node``: ``tp`` itself, or the variant whose TARGET is ``node._target_``."""
    if dataclasses.is_dataclass(tp):
        return tp
    variants = {a.TARGET: a for a in typing.get_args(tp)}
    target = node.get("_target_") if isinstance(node, (dict, DictConfig)) else None
    if target not in variants:
        raise _fail(f"{path}._target_", target, "one of " + ", ".join(variants))
    return variants[target]


def _check_range(path: str, value: Any, rng: Range | None, tp: Any) -> None:
    if rng is None:
        return
    whole = tp is int or typing.get_args(tp) == (int,)
    allowed = f"an integer {rng.allowed}" if whole else rng.allowed
    for i, v in enumerate(value if isinstance(value, list) else [value]):
        if not rng.ok(v):
            raise _fail(path if not isinstance(value, list) else f"{path}[{i}]", v, allowed)


def _check_node(path: str, node: DictConfig, schema: type) -> None:
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for name in node:
        if name not in fields and not (path == "" and name in OPTIONAL_GROUPS):
            where = path or "the config"
            raise ConfigError(f"{_join(path, name)} is not a config key of {where} (known: {', '.join(fields)})")
    for name, f in fields.items():
        sub = _join(path, name)
        if name not in node:
            raise ConfigError(f"{sub} is missing from the config")
        tp = hints[name]
        raw = node[name]
        value = _check_type(sub, raw, tp)
        if isinstance(raw, DictConfig) and not typing.get_origin(tp) is dict:
            _check_node(sub, raw, _schema_for(sub, raw, tp))
            continue
        _check_range(sub, value, f.metadata.get("range"), tp)
        if value is not raw and not OmegaConf.is_interpolation(node, name) and not isinstance(value, list):
            node[name] = value  # store 1e6 as 1000000


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def validate(cfg: DictConfig) -> None:
    """Check every key of the training config (types, ranges, cross-key rules); raise :class:`ConfigError`.

    Environment-level checks (the id is registered, ``env.kwargs`` are accepted, its dependencies
    and renderer load) are :func:`trpo_lab.envs.check_env`.
    """
    _check_node("", cfg, TrainConfig)
    if "peer" in cfg:  # another implementation runs (trpo_lab/peers/): the trainer's cross-key rules do not apply
        from trpo_lab.peers import Sb3ContribConfig

        _check_node("peer", cfg.peer, Sb3ContribConfig)  # whole rollouts run until total_env_steps is reached
        return
    n, b = cfg.rollout.num_envs, cfg.rollout.batch_size
    if b < n or b % n:
        raise _fail("rollout.batch_size", b, f"a multiple of rollout.num_envs ({n}), at least {n}")
    if cfg.total_env_steps < b:
        raise _fail("total_env_steps", cfg.total_env_steps, f"≥ rollout.batch_size ({b})")
    if cfg.sampling._target_ == VineConfig.TARGET:
        if cfg.sampling.states > b:
            raise _fail("sampling.states", cfg.sampling.states, f"≤ rollout.batch_size ({b}): states are drawn from the trunk")
        if cfg.rollout.vector_env != "inprocess":
            raise _fail("rollout.vector_env", cfg.rollout.vector_env, "inprocess with sampling=vine (it snapshots sub-envs)")
    w = cfg.rollout.normalizer_warmup if cfg.rollout.normalize_obs else 0
    if cfg.total_env_steps < w + b:
        raise _fail("total_env_steps", cfg.total_env_steps,
                    f"≥ rollout.normalizer_warmup + rollout.batch_size ({w} + {b}): the warm-up counts toward it")


def check_values(schema: type, values: dict[str, Any], name: Callable[[str], str]) -> dict[str, Any]:
    """Check ``values`` against the fields of ``schema``; ``name(field)`` is how a message names it.
    Returns the values, coerced (1e6 → 1000000 for integers)."""
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}
    out = {}
    for field_name, value in values.items():
        shown = name(field_name)
        out[field_name] = _check_type(shown, value, hints[field_name])
        _check_range(shown, out[field_name], fields[field_name].metadata.get("range"), hints[field_name])
    return out
