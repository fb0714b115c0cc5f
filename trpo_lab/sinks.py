"""Where metrics go: ``metrics.jsonl`` (always), console progress, and Weights & Biases (the run
metadata they record comes from :func:`trpo_lab.launch.run_metadata`).

W&B modes (``logger.wandb.mode``): ``online``, ``offline``, ``disabled``, or ``auto`` (default):
online when an API key is configured (``WANDB_API_KEY`` or a ``~/.netrc`` entry for
api.wandb.ai), offline otherwise. A failing W&B never stops training: init falls back from
online to offline to disabled with one warning, and a failing ``log`` disables the sink.
"""
from __future__ import annotations

import json
import logging
import math
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STEP_KEY = "env_steps"
log = logging.getLogger(__name__)


def _json_default(x: Any) -> Any:
    return float(x) if hasattr(x, "__float__") else str(x)


def _finite_or_none(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


class JsonlSink:
    """Appends one JSON object per update to ``path`` (flushed each line, so a killed run keeps its rows)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.file = open(self.path, "a", encoding="utf-8")

    def log(self, row: dict[str, Any]) -> None:
        row = {k: _finite_or_none(v) for k, v in row.items()}
        self.file.write(json.dumps(row, default=_json_default) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def wandb_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def resolve_wandb_mode(mode: str) -> str:
    modes = ("auto", "online", "offline", "disabled")
    if mode not in modes:
        raise ValueError(f"logger.wandb.mode={mode!r} must be one of {modes}")
    if mode == "auto":
        return "online" if wandb_key_configured() else "offline"
    return mode


class WandbSink:
    """One W&B run per training job, its files inside the job's run folder.

    Args:
        run_dir: the Hydra run folder (W&B writes ``run_dir/wandb``).
        config: the resolved config as a plain dict.
        mode: ``auto``, ``online``, ``offline`` or ``disabled``.
        project, entity, group, job_type, name, tags: W&B run attributes.
        init_timeout: seconds to wait for an online init before falling back to offline.
        run_id: resume this W&B run id (a resumed training run logs into its original W&B run).
        silent: W&B prints nothing itself; this sink logs one line with the run's URL (online) or
            its folder and the ``wandb sync`` command (offline).
    """

    def __init__(
        self,
        run_dir: Path,
        config: dict[str, Any],
        mode: str = "auto",
        project: str = "trpo-lab",
        entity: str | None = None,
        group: str | None = None,
        job_type: str | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
        init_timeout: float = 15.0,
        run_id: str | None = None,
        silent: bool = True,
    ) -> None:
        self.run = None
        mode = resolve_wandb_mode(mode)
        if mode == "disabled":
            return
        import wandb

        self._wandb = wandb
        kwargs = dict(
            dir=str(run_dir), config=config, project=project, entity=entity, group=group,
            job_type=job_type, name=name, tags=list(tags or []), reinit="finish_previous",
        )
        if run_id:
            kwargs.update(id=run_id, resume="allow")
        for try_mode in ([mode, "offline"] if mode == "online" else [mode]):
            try:
                settings = wandb.Settings(init_timeout=init_timeout, silent=silent)
                self.run = wandb.init(mode=try_mode, settings=settings, **kwargs)
                break
            except Exception as e:  # noqa: BLE001 - any W&B failure must not stop training
                nxt = "offline" if try_mode == "online" else "disabled"
                warnings.warn(f"W&B init in mode {try_mode!r} failed ({e}); continuing with W&B {nxt}")
        if self.run is not None:
            self.run.define_metric(STEP_KEY)
            self.run.define_metric("*", step_metric=STEP_KEY)
            log.info("%s", self.where())

    def where(self) -> str:
        """One line: the run's URL (online) or its folder and how to upload it (offline)."""
        if self.run is None:
            return "W&B: off"
        if self.run.offline:
            folder = Path(self.run.dir).parent
            return f"W&B: offline run in {folder} (upload with: wandb sync {folder})"
        return f"W&B: {self.run.url}"

    def log(self, row: dict[str, Any]) -> None:
        if self.run is None:
            return
        try:
            self.run.log({k: v for k, v in row.items() if isinstance(v, (int, float)) and v is not None})
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"W&B log failed ({e}); W&B is off for the rest of this run, metrics.jsonl continues")
            self.run = None

    def summary(self, summary: dict[str, Any]) -> None:
        if self.run is not None:
            try:
                self.run.summary.update(summary)
            except Exception as e:  # noqa: BLE001
                warnings.warn(f"W&B summary failed ({e})")

    def close(self) -> None:
        if self.run is not None:
            try:
                self.run.finish()
            finally:
                self.run = None


def wandb_sink(cfg: Any, run_dir: Path, meta: dict[str, Any], run_id: str | None = None) -> WandbSink | None:
    """The run's W&B sink from ``cfg.logger.wandb`` (None when disabled); its config is the resolved ``cfg`` plus
    ``meta``; its group, job type and name come from ``meta`` unless the logger config sets the group. ``cfg``:
    the run's DictConfig (the lab's trainer or a peer)."""
    from omegaconf import OmegaConf

    w = cfg.logger.wandb
    if w.mode == "disabled":
        return None
    return WandbSink(
        run_dir, {**OmegaConf.to_container(cfg, resolve=True), "meta": meta}, mode=w.mode,
        project=w.project, entity=w.entity, group=w.group or meta.get("group"),
        job_type=meta.get("job_type"), name=meta.get("name"), tags=list(w.tags),
        init_timeout=w.init_timeout, run_id=run_id, silent=w.silent,
    )


def done_line(summary: dict[str, Any]) -> str:
    """The last line of a run: env steps, time, and the final deterministic evaluation."""
    ev = summary.get("final_eval")
    if ev:
        result = (f"deterministic evaluation {ev['return_mean']:.1f} ± {ev['return_std']:.1f} "
                  f"over {ev['episodes']} episodes")
    else:
        result = "no deterministic evaluation (eval.every=0)"
    wall = summary.get("wall_s")
    took = f" in {wall:.1f} s" if isinstance(wall, (int, float)) else ""
    return f"done: {summary.get('env_steps')} env steps{took}; {result}"


def progress_file_logger() -> logging.Logger | None:
    """A logger that writes to the run's log files only (Hydra's ``train.log``), not the console; None without one."""
    files = [h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    if not files:
        return None
    logger = logging.getLogger("trpo_lab.progress")
    logger.propagate = False
    logger.handlers = files
    logger.setLevel(logging.INFO)
    return logger


class ConsoleProgress:
    """A tqdm bar over env steps on a terminal; otherwise one line every ``every`` updates.

    Args:
        total: total env steps.
        mode: ``auto`` (bar on a TTY, lines otherwise), ``bar``, ``lines`` or ``off``.
        every: the line interval in updates.
        start: env steps already done (a resumed run).
        file_logger: also write each line here, whatever ``mode`` is (the run's ``train.log``).
        label: prefixes each line and names the bar (``job N`` in a multirun, where workers share a console).
    """

    def __init__(
        self, total: int, mode: str = "auto", every: int = 10, start: int = 0,
        file_logger: logging.Logger | None = None, label: str | None = None,
    ) -> None:
        if mode == "auto":
            mode = "bar" if sys.stderr.isatty() else "lines"
        self.mode, self.every = mode, max(1, int(every))
        self.file_logger = file_logger
        self.prefix = f"{label} | " if label else ""
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", unit_scale=True, dynamic_ncols=True,
                            desc=label)

    @staticmethod
    def _fmt(row: dict[str, Any]) -> str:
        ret = row.get("return/mean")
        ret_s = "   n/a" if ret is None or not math.isfinite(ret) else f"{ret:8.1f}"
        kl = row.get("step/kl_mean")  # a peer's rows have none (sb3-contrib's KL is not the lab's)
        kl_s = "" if kl is None else f" | kl {kl:.4f}"
        return (
            f"return {ret_s}{kl_s} | accepted {int(row['line_search/accepted'])} "
            f"| {row['perf/env_steps_per_s']:.0f} steps/s"
        )

    def log(self, row: dict[str, Any], new_steps: int) -> None:
        if self.bar is not None:
            self.bar.update(new_steps)
            self.bar.set_postfix_str(self._fmt(row), refresh=False)
        if row["update"] % self.every:
            return
        line = f"[{self.prefix}{row[STEP_KEY]:>9d} steps | update {row['update']:>5d}] {self._fmt(row)}"
        if self.mode == "lines":
            print(line, flush=True)
        if self.file_logger is not None:
            self.file_logger.info(line)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass
class Sinks:
    """Every sink of one run: metrics.jsonl, the console (and train.log), and W&B if on."""

    jsonl: JsonlSink
    console: ConsoleProgress
    wandb: WandbSink | None = None

    def log(self, row: dict[str, Any], new_steps: int, provisional: bool = False) -> None:
        """Write ``row`` to every sink; a ``provisional`` row (see :meth:`trpo_lab.trainer.Trainer._checkpoint_at_signal`) skips
        W&B, whose history cannot take the row again when a resumed run completes it."""
        self.jsonl.log(row)
        self.console.log(row, new_steps)
        if self.wandb is not None and not provisional:
            self.wandb.log(row)

    def close(self) -> None:
        self.console.close()
        self.jsonl.close()
        if self.wandb is not None:
            self.wandb.close()


def build_sinks(cfg: Any, run_dir: Path, meta: dict[str, Any], wandb_run_id: str | None = None,
                start: int = 0) -> Sinks:
    """A run's sinks from ``cfg.logger`` (the lab's trainer or a peer): ``metrics.jsonl`` in ``run_dir``, console
    progress (``auto`` is ``lines`` in a multirun, each line prefixed ``job N``; train.log always) and, unless
    disabled, a W&B run (``wandb_run_id`` to continue a resumed run's). ``start``: env steps already done."""
    from trpo_lab.launch import job_label
    from trpo_lab.run_folder import METRICS

    lg = cfg.logger
    console = "lines" if lg.console == "auto" and meta.get("multirun") else lg.console
    return Sinks(
        jsonl=JsonlSink(run_dir / METRICS),
        console=ConsoleProgress(cfg.total_env_steps, console, lg.console_every, start=start,
                                file_logger=progress_file_logger(), label=job_label()),
        wandb=wandb_sink(cfg, run_dir, meta, wandb_run_id),
    )
