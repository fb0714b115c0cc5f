"""Run folders: what a folder holds, and the rules for continuing, skipping or refusing it.

A run folder holds ``config.yaml`` (the resolved config it was started with), ``metrics.jsonl``
(one row per update), ``checkpoint.pt`` (the state after the last checkpointed update) and, once
finished, ``summary.json``; in a sweep, a failed job also leaves ``error.txt``.

``resume`` (a config key) decides what happens to a folder that already holds a run:

* ``auto`` (default): continue from ``checkpoint.pt`` if there is one; a finished run is skipped;
* ``true``: continue, and fail if there is no checkpoint;
* ``false``: never continue; a folder that already holds metrics is refused;
* ``PATH``: continue the run in the folder PATH, with its saved config plus this command's values.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trpo_lab.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint
from trpo_lab.config import ConfigError
from trpo_lab.files import write_text_atomic

CONFIG, METRICS, SUMMARY, ERROR = "config.yaml", "metrics.jsonl", "summary.json", "error.txt"


def checkpoint_to_resume(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The checkpoint state to continue from, per ``cfg.resume``; None to start from scratch."""
    ckpt = run_dir / CHECKPOINT
    metrics = run_dir / METRICS
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


def finished_summary(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The summary of a run in ``run_dir`` that already reached ``cfg.total_env_steps`` (it is skipped), else None."""
    path = run_dir / SUMMARY
    if cfg.resume in (True, "auto") and path.exists():
        summary = json.loads(path.read_text())
        if summary.get("env_steps", 0) >= cfg.total_env_steps:
            return summary
    return None


def resolve_resume_path(cfg: DictConfig, run_dir: Path, task_overrides: list[str]) -> tuple[DictConfig, Path]:
    """``resume=PATH``: the config and folder of the run in PATH, with ``task_overrides`` applied.

    The saved config is the base; each ``key=value`` of this command line (as Hydra parsed it into
    ``cfg``) replaces the saved value. Group overrides (``algo=npg``) cannot be applied to a
    resolved config and are refused. Any other ``resume`` value returns ``(cfg, run_dir)`` unchanged.
    """
    if cfg.resume in (True, False, "auto"):
        return cfg, run_dir
    target = Path(str(cfg.resume))
    if target.name == CHECKPOINT:
        target = target.parent
    saved_path = target / CONFIG
    if not saved_path.exists():
        raise CheckpointError(f"resume={cfg.resume}: {saved_path} does not exist (expected a trpo-lab run folder)")
    try:
        merged = OmegaConf.load(saved_path)
    except Exception as e:  # noqa: BLE001 - a corrupt YAML file
        raise ConfigError(f"resume={cfg.resume}: {saved_path} is not a readable config ({e})") from None
    for o in task_overrides:
        key = o.lstrip("+~").partition("=")[0]
        if key == "resume":
            continue
        if "/" in key or isinstance(OmegaConf.select(merged, key), DictConfig):
            raise ConfigError(f"resume=PATH continues the run with its own config groups; cannot apply '{o}'")
        # the value as Hydra parsed it on this command line
        OmegaConf.update(merged, key, OmegaConf.select(cfg, key), force_add=True)
    merged.resume = True
    return merged, target


def retire_stale_error(run_dir: Path) -> None:
    """A re-launched sweep retries a failed job: keep its old ``error.txt``, but not as the current one."""
    stale = run_dir / ERROR
    if stale.exists():
        stale.replace(run_dir / "error.previous.txt")


def write_config(cfg: DictConfig, run_dir: Path) -> None:
    """Save the resolved config the run uses (``config.yaml``): what ``resume`` and the analysis read back."""
    (run_dir / CONFIG).write_text(OmegaConf.to_yaml(cfg, resolve=True))


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``summary.json``, whose presence marks the run as finished."""
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2, default=str))


def truncate_metrics(path: Path, updates: int) -> int:
    """Keep only the rows of ``metrics.jsonl`` with ``update`` ≤ ``updates`` (those the checkpoint covers).

    Rows written after the checkpoint belong to updates whose state was lost; they are redone.
    A torn last line (killed mid-write) is dropped too. Returns the number of rows kept.
    """
    path = Path(path)
    if not path.exists():
        return 0
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if row.get("update", math.inf) <= updates:
            kept.append(line)
    write_text_atomic(path, "".join(line + "\n" for line in kept))
    return len(kept)
