"""Run folders written by hand, as a training job writes them (README: config.yaml, metrics.jsonl,
summary.json, .hydra/overrides.yaml, .hydra/config.yaml), for the tests of runs, reports and the sweep summary."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml


def config_for(overrides: list[str], *, seed: int, env_id: str, max_kl: float, total_env_steps: int) -> dict[str, Any]:
    """A resolved config that holds what ``overrides`` ask for.

    A leaf override ``a.b=v`` sets ``a.b`` to ``v`` (parsed as YAML); a group choice ``algo=npg`` stands for
    the group's contents, written as the leaf ``algo.preset: npg``.
    """
    config: dict[str, Any] = {"seed": seed, "total_env_steps": total_env_steps, "env": {"id": env_id},
                              "algo": {"max_kl": max_kl}, "logger": {"wandb": {"mode": "offline"}}}
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key == "seed":
            continue
        path = key.replace("/", ".").split(".")
        if len(path) == 1 and (key not in config or isinstance(config[key], dict)):
            path = [key, "preset"]
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {o} replaces a leaf")
        node[path[-1]] = yaml.safe_load(value)
    return config


def write_run(
    path: Path,
    overrides: list[str],
    rows: list[dict],
    *,
    env_id: str = "Hopper-v5",
    seed: int = 0,
    max_kl: float = 0.01,
    total_env_steps: int = 1_000_000,
    config: dict[str, Any] | None = None,
    requested: dict[str, Any] | None = None,
    summary: dict | None = None,
    finished: bool = True,
    error: str | None = None,
) -> Path:
    """A run folder; ``config`` (default: :func:`config_for` the overrides) is the data's config.yaml and
    ``requested`` (default: the same) the launch's .hydra/config.yaml."""
    if config is None:
        config = config_for(overrides, seed=seed, env_id=env_id, max_kl=max_kl, total_env_steps=total_env_steps)
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(copy.deepcopy(requested if requested is not None else config)))
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        (path / "summary.json").write_text(json.dumps(summary or {"env_steps": rows[-1]["env_steps"] if rows else 0}))
    if error is not None:
        (path / "error.txt").write_text(error)
    return path


def return_rows(returns: list[float | None], batch: int = 1000, **columns: list) -> list[dict]:
    """One row per update with ``return/mean`` = returns[i]; other keys from ``columns``."""
    rows = []
    for i, ret in enumerate(returns):
        row = {"env_steps": (i + 1) * batch, "update": i + 1, "return/mean": ret}
        row.update({k: v[i] for k, v in columns.items()})
        rows.append(row)
    return rows
