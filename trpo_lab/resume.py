"""The resume policy: what a launch does with a run folder that already holds a run.

``resume`` (a config key):

* ``auto`` (default): continue from ``checkpoint.pt`` if there is one; a finished run is skipped;
  metrics without a checkpoint cover no saved state and are discarded;
* ``true``: the same, but a folder without a checkpoint is refused;
* ``false``: never continue; a folder that already holds metrics is refused;
* ``overwrite``: discard the run in the folder (:data:`~trpo_lab.run_folder.RUN_FILES`; any other file
  stays) and start afresh;
* ``PATH``: continue the run in the folder PATH (or PATH's folder, for ``PATH/checkpoint.pt``), with
  its saved config plus this command's ``key=value`` overrides.

A folder is bound to the config it was started with: continuing or skipping it with a config that
differs in any key outside :data:`~trpo_lab.run_folder.MAY_CHANGE_ON_RESUME` is refused, naming the
differing keys (:func:`~trpo_lab.run_folder.config_differences`); ``resume=overwrite`` discards the old
run instead. What the folder holds and how it is read: :mod:`trpo_lab.run_folder`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from trpo_lab.config import ConfigError
from trpo_lab.run_folder import (
    CHECKPOINT, CONFIG, METRICS, CheckpointError, RunFolderError, check_writable_folder, config_differences, has_metrics,
    load_checkpoint, one_line, read_saved_config, read_summary, truncate_metrics,
)

#: the ``resume`` values that are not a PATH
KEYWORDS: tuple[bool | str, ...] = (True, False, "auto", "overwrite")


def is_resume_path(mode: Any) -> bool:
    """Whether ``resume`` names a run folder (or its checkpoint) rather than a mode."""
    return mode not in KEYWORDS


def checkpoint_to_resume(cfg: DictConfig, run_dir: Path, dry_run: bool = False) -> dict[str, Any] | None:
    """The checkpoint state to continue from, per ``cfg.resume``; None to start from scratch.

    ``dry_run``: only check (the checkpoint loads; nothing in the folder is changed)."""
    ckpt = Path(run_dir) / CHECKPOINT
    mode = cfg.resume
    if mode is True or mode == "auto":
        if ckpt.exists():
            return load_checkpoint(ckpt)
        if mode is True:
            raise CheckpointError(
                f"resume=true, but there is no checkpoint at {ckpt}; to continue a run, name its folder: "
                "resume=RUN_FOLDER (or hydra.run.dir=RUN_FOLDER)"
            )
        if not dry_run:
            truncate_metrics(Path(run_dir) / METRICS, 0)  # rows no checkpoint covers: start over
        return None
    if mode == "overwrite":
        return None
    if has_metrics(run_dir):
        raise RunFolderError(
            f"{run_dir} already holds metrics.jsonl from a run; pass resume=true to continue it, "
            "resume=overwrite to discard it, or use a new folder"
        )
    return None


def finished_summary(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The summary of a run in ``run_dir`` that already reached ``cfg.total_env_steps`` (it is skipped), else None."""
    if cfg.resume in (True, "auto"):
        summary = read_summary(run_dir)
        if summary is not None and summary.get("env_steps", 0) >= cfg.total_env_steps:
            return summary
    return None


def resolve_resume_path(cfg: DictConfig, run_dir: Path, task_overrides: list[str]) -> tuple[DictConfig, Path]:
    """``resume=PATH``: the config and folder of the run in PATH, with ``task_overrides`` applied.

    The saved config is the base; each ``key=value`` of this command line (as Hydra parsed it into
    ``cfg``) replaces the saved value. Group overrides (``algo=npg``) cannot be applied to a
    resolved config and are refused. Any other ``resume`` value returns ``(cfg, run_dir)`` unchanged.
    """
    if not is_resume_path(cfg.resume):
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
        raise ConfigError(f"resume={cfg.resume}: {saved_path} is not a readable config ({one_line(e)})") from None
    for o in task_overrides:
        key = o.lstrip("+~").partition("=")[0]
        if key == "resume":
            continue
        if "/" in key or isinstance(OmegaConf.select(merged, key), DictConfig):
            raise ConfigError(f"resume=PATH continues the run with its own config groups; cannot apply '{o}'")
        # the value as Hydra parsed it on this command line
        OmegaConf.update(merged, key, OmegaConf.select(cfg, key), force_add=True)
    if not (target / CHECKPOINT).exists() and read_summary(target) is None:
        raise CheckpointError(f"resume={cfg.resume}: {target} holds no checkpoint.pt to continue from")
    merged.resume = True
    return merged, target


def check_folder_binding(cfg: DictConfig, run_dir: Path) -> None:
    """Refuse to continue or skip a run folder whose saved config differs from ``cfg`` (see the module docstring)."""
    if cfg.resume == "overwrite":
        return
    saved = read_saved_config(run_dir)
    if saved is None:
        return
    diffs = config_differences(
        OmegaConf.to_container(saved, resolve=True), OmegaConf.to_container(cfg, resolve=True)
    )
    if diffs:
        shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
        raise RunFolderError(
            f"{run_dir} holds a run with another config: {shown}. Use another folder, "
            "or resume=overwrite to discard that run"
        )


def check_run_folder(cfg: DictConfig, run_dir: Path, folder_key: str) -> None:
    """``run_dir`` is writable (an error names it ``folder_key``), bound to ``cfg``, and unless its run is
    finished, its checkpoint loads as ``cfg.resume`` asks. Creates and changes nothing."""
    check_writable_folder(folder_key, run_dir)
    check_folder_binding(cfg, run_dir)
    if finished_summary(cfg, run_dir) is None:
        checkpoint_to_resume(cfg, run_dir, dry_run=True)
