"""Run folders: what a folder holds, and the rules for continuing, skipping or refusing it.

A run folder holds ``config.yaml`` (the resolved config it was started with), ``metrics.jsonl``
(one row per update), ``checkpoint.pt`` (the state after the last checkpointed update) and, once
finished, ``summary.json``; in a sweep, a failed job also leaves ``error.txt``.

``resume`` (a config key) decides what happens to a folder that already holds a run:

* ``auto`` (default): continue from ``checkpoint.pt`` if there is one; a finished run is skipped;
* ``true``: continue, and fail if there is no checkpoint;
* ``false``: never continue; a folder that already holds metrics is refused;
* ``overwrite``: discard the run in the folder (its config, metrics, checkpoint, summary, W&B files)
  and start afresh;
* ``PATH``: continue the run in the folder PATH, with its saved config plus this command's values.

A folder is bound to the config it was started with: continuing or skipping it with a config that
differs in any key outside :data:`~trpo_lab.config.MAY_CHANGE_ON_RESUME` is refused, naming the differing keys
(``resume=overwrite`` discards the old run instead). New folders never collide: the default
``hydra.run.dir`` and ``hydra.sweep.dir`` end in ``${unique:}``, a random suffix, and a fresh
run claims its folder by creating ``config.yaml`` exclusively.

:class:`Preflight` (a Hydra callback) runs all of these checks, and :mod:`trpo_lab.config`'s, for
every job of a run or a basic sweep before Hydra creates any folder.
"""
from __future__ import annotations

import json
import math
import secrets
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from trpo_lab.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint
from trpo_lab.config import (
    ConfigError, check_env, check_writable_folder, flatten_config, may_change_on_resume, validate,
)
from trpo_lab.files import write_text_atomic
from trpo_lab.runs import CONFIG, ERROR, METRICS, SUMMARY, metrics_rows

#: what a run writes into its folder (``resume=overwrite`` removes exactly these)
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, SUMMARY, ERROR, "error.previous.txt", "video.gif", "wandb")
#: input errors: one line on stderr, exit code 2, nothing created
INPUT_ERRORS: tuple[type[Exception], ...] = (ConfigError, CheckpointError, ValueError)

# A random suffix for new run folders, the same for every use within one config (use_cache), so a
# sweep's jobs share their sweep folder; two commands started in the same second get different ones.
OmegaConf.register_new_resolver("unique", lambda: secrets.token_hex(3), use_cache=True, replace=True)


class RunFolderError(ConfigError):
    """A run folder holds another run (a different config), or was claimed by another process."""


def checkpoint_to_resume(cfg: DictConfig, run_dir: Path, dry_run: bool = False) -> dict[str, Any] | None:
    """The checkpoint state to continue from, per ``cfg.resume``; None to start from scratch.

    ``dry_run``: only check (the checkpoint loads; nothing in the folder is changed)."""
    ckpt = run_dir / CHECKPOINT
    metrics = run_dir / METRICS
    mode = cfg.resume
    if mode is True or mode == "auto":
        if ckpt.exists():
            return load_checkpoint(ckpt)
        if mode is True:
            raise CheckpointError(f"resume=true, but there is no checkpoint at {ckpt}")
        if not dry_run:
            truncate_metrics(metrics, 0)  # auto with rows but no checkpoint: nothing covers them, start over
        return None
    if mode == "overwrite":
        return None
    if metrics.exists() and metrics.stat().st_size > 0:
        raise RunFolderError(
            f"{run_dir} already holds metrics.jsonl from a run; pass resume=true to continue it, "
            "resume=overwrite to discard it, or use a new folder"
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
        raise ConfigError(f"resume={cfg.resume}: {saved_path} is not a readable config ({_one_line(e)})") from None
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


def config_differences(saved: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """``key (saved X, requested Y)`` for every key whose value differs, but for those of
    :func:`~trpo_lab.config.may_change_on_resume`.

    A sub-config whose ``_target_`` differs (another step rule, say) is one entry, named by its class."""
    a, b = flatten_config(saved), flatten_config(requested)
    absent = "<absent>"
    differing = [k for k in sorted(set(a) | set(b))
                 if not may_change_on_resume(k) and a.get(k, absent) != b.get(k, absent)]
    swapped = [k[: -len("._target_")] for k in differing if k.endswith("._target_")]
    out = []
    for k in differing:
        if any(k.startswith(p + ".") and not k.endswith("._target_") for p in swapped):
            continue  # reported with the _target_ that replaced its whole sub-config
        x, y = a.get(k, absent), b.get(k, absent)
        if k.endswith("._target_"):
            k, x, y = k[: -len("._target_")], str(x).rsplit(".", 1)[-1], str(y).rsplit(".", 1)[-1]
        out.append(f"{k} (saved {x!r}, requested {y!r})")
    return out


def read_saved_config(run_dir: Path) -> DictConfig | None:
    """The ``config.yaml`` a run folder was started with (None if it has none)."""
    path = run_dir / CONFIG
    if not path.exists():
        return None
    try:
        saved = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001 - corrupt YAML of any kind
        raise RunFolderError(f"{path} is not a readable config ({_one_line(e)}); resume=overwrite discards that run") from None
    if not isinstance(saved, DictConfig):
        raise RunFolderError(f"{path} is not a trpo-lab config; resume=overwrite discards that run")
    return saved


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


def check_run(cfg: DictConfig, run_dir: Path) -> None:
    """Every check on one job, in the order a user would fix them: config keys, the env, the folder
    (writable, bound to this config) and the checkpoint to continue from. Creates nothing."""
    validate(cfg)
    check_env(cfg.env.id, OmegaConf.to_container(cfg.env.kwargs))
    check_run_folder(cfg, run_dir, "run folder")


def check_run_folder(cfg: DictConfig, run_dir: Path, folder_key: str) -> None:
    """The folder checks of :func:`check_run`: ``run_dir`` is writable (an error names it ``folder_key``),
    bound to ``cfg``, and unless its run is finished, its checkpoint loads as ``cfg.resume`` asks."""
    check_writable_folder(folder_key, run_dir)
    check_folder_binding(cfg, run_dir)
    if finished_summary(cfg, run_dir) is None:
        checkpoint_to_resume(cfg, run_dir, dry_run=True)


def discard_run(run_dir: Path) -> None:
    """``resume=overwrite``: remove what an earlier run wrote into ``run_dir`` (:data:`RUN_FILES`)."""
    for name in RUN_FILES:
        path = run_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def claim_folder(cfg: DictConfig, run_dir: Path, fresh: bool) -> None:
    """Write ``config.yaml``; a fresh run creates it exclusively, so two runs never share a folder."""
    text = OmegaConf.to_yaml(cfg, resolve=True)
    if not fresh:
        write_text_atomic(run_dir / CONFIG, text)
        return
    try:
        with open(run_dir / CONFIG, "x") as f:
            f.write(text)
    except FileExistsError:
        raise RunFolderError(f"{run_dir} was claimed by another run started at the same time; use another folder") from None


def retire_stale_error(run_dir: Path) -> None:
    """A re-launched sweep retries a failed job: keep its old ``error.txt``, but not as the current one."""
    stale = run_dir / ERROR
    if stale.exists():
        stale.replace(run_dir / "error.previous.txt")


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``summary.json``, whose presence marks the run as finished."""
    write_text_atomic(run_dir / SUMMARY, json.dumps(summary, indent=2, default=str))


def truncate_metrics(path: Path, updates: int) -> int:
    """Keep only the rows of ``metrics.jsonl`` with ``update`` ≤ ``updates`` (those the checkpoint covers).

    Rows written after the checkpoint belong to updates whose state was lost; they are redone.
    A torn last line (killed mid-write) is dropped too. Returns the number of rows kept.
    """
    path = Path(path)
    if not path.exists():
        return 0
    kept = [line for line, row in metrics_rows(path.read_text().splitlines()) if row.get("update", math.inf) <= updates]
    write_text_atomic(path, "".join(line + "\n" for line in kept))
    return len(kept)


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300]}" if text else type(e).__name__


def fail(message: str) -> None:
    """The one exit for rejected input: ``error: MESSAGE`` on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def _job_folder(cfg: DictConfig, dir_key: str, subdir_key: str | None) -> Path:
    """The folder Hydra will create for the job whose full config (with ``hydra``) is ``cfg``."""
    HydraConfig.instance().set_config(cfg)  # what Hydra does before it resolves the folder
    folder = Path(str(OmegaConf.select(cfg, dir_key)))
    return folder / str(OmegaConf.select(cfg, subdir_key)) if subdir_key else folder


@contextmanager
def open_hydra(config: DictConfig) -> Iterator[None]:
    """The ``hydra`` node of a full config, writable for the block (Hydra keeps it read-only)."""
    with read_write(config.hydra), open_dict(config.hydra):
        yield


def _task_config(cfg: DictConfig) -> DictConfig:
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    OmegaConf.copy_cache(from_config=cfg, to_config=task)
    return task


class Preflight(Callback):
    """Hydra callback: :func:`check_run` for the run, or for every job of a basic sweep, before Hydra
    creates any folder. A failed check prints one line and exits with code 2; nothing is left behind.

    ``resume=PATH`` also points Hydra at PATH (``hydra.run.dir``) without rewriting PATH's ``.hydra``.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        task = _task_config(config)
        try:
            if task.resume not in (True, False, "auto", "overwrite"):
                task, target = resolve_resume_path(task, Path("."), list(config.hydra.overrides.task))
                with open_hydra(config):
                    config.hydra.run.dir = str(target.absolute())
                    config.hydra.output_subdir = None
            check_run(task, _job_folder(config, "hydra.run.dir", None))
        except INPUT_ERRORS as e:
            fail(str(e))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from hydra.core.global_hydra import GlobalHydra

        sweeper = OmegaConf.select(config, "hydra.sweeper._target_") or ""
        if not sweeper.endswith("BasicSweeper"):  # other sweepers choose jobs as they go: each job checks itself
            return
        jobs = sweep_jobs(config)
        loader = GlobalHydra.instance().config_loader()
        envs_checked: set[str] = set()
        refused: list[tuple[int, str]] = []
        for num, overrides in enumerate(jobs):
            job = loader.load_sweep_config(config, list(overrides))
            with open_hydra(job):
                job.hydra.job.num = num
                job.hydra.job.id = num
            task = _task_config(job)
            label = " ".join(overrides) or "(no overrides)"
            try:
                validate(task)
                env_key = f"{task.env.id} {OmegaConf.to_container(task.env.kwargs)}"
                if env_key not in envs_checked:
                    check_env(task.env.id, OmegaConf.to_container(task.env.kwargs))
                    envs_checked.add(env_key)
                check_run_folder(task, _job_folder(job, "hydra.sweep.dir", "hydra.sweep.subdir"), "hydra.sweep.dir")
            except INPUT_ERRORS as e:
                refused.append((num, f"job {num} ({label}): {e}"))
            finally:
                HydraConfig.instance().set_config(config)
        if refused:
            others = ", ".join(str(n) for n, _ in refused[1:])
            fail(refused[0][1] + (f" [also refused: job(s) {others}]" if others else ""))


def sweep_jobs(config: DictConfig) -> list[list[str]]:
    """The override list of every job of a basic sweep, in Hydra's job order (``hydra.sweeper.params``,
    then the command line)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)
    parsed = OverridesParser.create().parse_overrides(lines)
    return [job for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]
