"""The Hydra runtime around a training job: checks before any folder exists, sweep-job discovery, run
metadata, and the one-line failure.

* :class:`Preflight` (a Hydra callback, ``conf/train.yaml``): :func:`check_run` for the run, or for
  every job of a basic sweep, before Hydra creates any folder;
* :func:`fail`: the one exit for rejected input, ``error: MESSAGE`` on stderr and exit code 2;
  :func:`hydra_error_line` puts Hydra's multi-line composition errors into that line;
* :func:`run_metadata`: the code and library versions and Hydra's recorded choices a run records;
* the ``${unique:}`` resolver of the default ``hydra.run.dir`` and ``hydra.sweep.dir``: a random suffix,
  the same for every use within one config (so a sweep's jobs share their sweep folder), different for
  two commands started in the same second.
"""
from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from trpo_lab.config import ConfigError, validate
from trpo_lab.envs import check_env
from trpo_lab.files import git_commit
from trpo_lab.peers import check_peer_available
from trpo_lab.resume import check_run_folder, is_resume_path, resolve_resume_path
from trpo_lab.run_folder import CheckpointError

#: input errors: one line on stderr, exit code 2, nothing created
INPUT_ERRORS: tuple[type[Exception], ...] = (ConfigError, CheckpointError, ValueError)

OmegaConf.register_new_resolver("unique", lambda: secrets.token_hex(3), use_cache=True, replace=True)


def fail(message: str) -> None:
    """The one exit for rejected input: ``error: MESSAGE`` on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def hydra_error_line(e: BaseException) -> str:
    """Hydra's multi-line composition error in one line (the options it lists joined with commas)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    head = lines[0] if lines else type(e).__name__
    if any("Available options" in ln for ln in lines):
        end = next((i for i, ln in enumerate(lines) if "search path" in ln.lower()), len(lines))
        options = [ln for ln in lines[1:end] if not ln.endswith(":")]
        return f"{head} (available: {', '.join(options)})"
    return head


def check_run(cfg: DictConfig, run_dir: Path) -> None:
    """Every check on one job, in the order a user would fix them: config keys, the env, the folder
    (writable, bound to this config) and the checkpoint to continue from. Creates nothing."""
    validate(cfg)
    check_peer_available(cfg)
    check_env(cfg.env.id, OmegaConf.to_container(cfg.env.kwargs))
    check_run_folder(cfg, run_dir, "run folder")


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
            if is_resume_path(task.resume):
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
                check_peer_available(task)
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


def run_metadata() -> dict[str, Any]:
    """Code and library versions; under Hydra also the run name, group and W&B job type, from
    Hydra's recorded choices (never a hand-written name). The job type is the step-rule ×
    line-search cell of the variant grid, e.g. ``kl_scaled-backtracking`` (TRPO) or ``fixed-none`` (NPG)."""
    meta: dict[str, Any] = {
        "git_commit": git_commit(),
        # versions from package metadata: importing mujoco would load the MUJOCO_GL renderer
        "versions": {p: _version(p) for p in ("torch", "gymnasium", "mujoco")},
    }
    if HydraConfig.initialized():
        hc = HydraConfig.get()
        choices = hc.runtime.choices
        multirun = hc.mode is not None and hc.mode.name == "MULTIRUN"
        meta["multirun"] = multirun
        meta["job_type"] = f"{choices.get('algo/step_rule')}-{choices.get('algo/line_search')}"
        meta["name"] = hc.job.override_dirname or f"{choices.get('algo')}-{choices.get('env')}"
        meta["group"] = choices.get("experiment") or (Path(hc.sweep.dir).name if multirun else None)
        meta["choices"] = {k: v for k, v in choices.items() if not k.startswith("hydra/")}
    return meta


def job_label() -> str | None:
    """``job N`` (Hydra's job number) in a multirun, else None: it prefixes the job's progress lines, which
    interleave with the other workers' on one console."""
    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    if hc.mode is None or hc.mode.name != "MULTIRUN":
        return None
    return f"job {hc.job.num}"


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
