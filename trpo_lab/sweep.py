"""The sweep summary: one file that says which jobs of a multirun finished, failed or stopped.

Registered as a Hydra callback in ``conf/train.yaml``::

    hydra:
      callbacks:
        sweep_summary:
          _target_: trpo_lab.sweep.SweepSummary

It writes ``sweep_summary.json`` and ``sweep_summary.md`` into the sweep folder
(``hydra.sweep.dir``) at the end of a multirun, listing every job folder with its overrides, its
status, env steps reached, final return and what went wrong. Status:

- ``ok``: ``summary.json`` written;
- ``failed``: ``error.txt`` written;
- ``mismatch``: the job's overrides do not describe its data: the config its latest launch asked for
  (``.hydra/config.yaml``) differs from the one its data was trained with (``config.yaml``) in a key
  a resume may not change (:func:`trpo_lab.run_folder.config_differences`: a run extended to a larger
  ``total_env_steps`` is no mismatch), e.g. a reused folder whose finished run was skipped; the differing
  keys are listed;
- ``incomplete``: none of these, e.g. killed.

It also rewrites them after each job, and when the sweep process exits without reaching the end of the
multirun (the launcher raised, e.g. on a cancelled Slurm job), so the summary always covers the jobs
that ended. A multirun with a job that is not ``ok`` exits with status 1, after every job has run and
the summary is written (:meth:`SweepSummary.on_multirun_end`).

A job that raises an exception out of the task function gets its traceback written to its
``error.txt`` by :meth:`SweepSummary.on_job_end` (unless the job wrote one itself).

After the fact, or for a sweep run without the callback::

    python -m trpo_lab.sweep multirun/2026-01-01/12-00-00
"""
from __future__ import annotations

import argparse
import atexit
import json
import sys
import traceback
from pathlib import Path
from typing import Any

from hydra.core.utils import JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from trpo_lab.files import write_text_atomic
from trpo_lab.reports.markdown import markdown_table
from trpo_lab.run_folder import ERROR, write_error
from trpo_lab.runs import Run, absolute, display_path, find_run_dirs, read_run

SUMMARY_JSON, SUMMARY_MD = "sweep_summary.json", "sweep_summary.md"
STATUSES = ("ok", "failed", "mismatch", "incomplete")
#: only the end of each metrics.jsonl is read (a row is ~2 kB), so a summary of a large sweep stays cheap
METRICS_TAIL_BYTES = 64 * 1024


def job_record(run: Run, sweep_dir: Path) -> dict[str, Any]:
    """What the summary says about one job folder."""
    summary = run.summary or {}
    final = summary.get("final_return") if run.status == "ok" else run.last_value("return/mean")
    env_steps = summary.get("env_steps") if run.summary else (run.rows[-1].get("env_steps") if run.rows else 0)
    try:
        folder = str(run.path.relative_to(absolute(sweep_dir)))
    except ValueError:
        folder = str(run.path)
    return {
        "job": folder,
        "overrides": [f"{k}={v}" for k, v in run.overrides.items()],
        "status": run.status,
        "env_steps": env_steps,
        "final_return": final,
        "error": run.error,
        "mismatch": run.mismatches if run.error is None else [],
    }


def summarize_sweep(sweep_dir: Path) -> dict[str, Any]:
    """The summary of every job folder below ``sweep_dir`` (see the module docstring)."""
    sweep_dir = Path(sweep_dir)
    jobs = [job_record(read_run(d, METRICS_TAIL_BYTES), sweep_dir) for d in find_run_dirs([sweep_dir])]
    counts = {s: sum(j["status"] == s for j in jobs) for s in STATUSES}
    return {"sweep_dir": display_path(sweep_dir), "jobs_total": len(jobs), **counts, "jobs": jobs}


def _fmt_return(v: Any) -> str:
    return "—" if v is None else f"{v:.1f}"


def counts_line(summary: dict[str, Any]) -> str:
    """``"3 jobs — 1 ok, 1 failed, 0 mismatch, 1 incomplete"``."""
    return f"{summary['jobs_total']} jobs — " + ", ".join(f"{summary[s]} {s}" for s in STATUSES)


def _problem(job: dict[str, Any]) -> str:
    if job["error"]:
        return job["error"]
    if job["mismatch"]:
        return "overrides ≠ data (config.yaml): " + "; ".join(job["mismatch"])
    return ""


def summary_markdown(summary: dict[str, Any]) -> str:
    """A short Markdown rendering of :func:`summarize_sweep`'s result."""
    head = (
        f"# Sweep summary\n\n`{summary['sweep_dir']}`: {counts_line(summary)}.\n\n"
        "`final return` is `summary.json`'s `final_return` for finished jobs, else the last logged `return/mean` "
        "(both the mean of the last `return_window` finished episodes). "
        "`mismatch`: the job's overrides (`.hydra/`) do not describe the data in its folder (`config.yaml`).\n\n"
    )
    rows = [
        (j["job"], " ".join(j["overrides"]), j["status"], j["env_steps"], _fmt_return(j["final_return"]), _problem(j))
        for j in summary["jobs"]
    ]
    header = ["job", "overrides", "status", "env steps", "final return", "error / mismatch"]
    return head + markdown_table(header, rows) + "\n"


def write_sweep_summary(sweep_dir: Path) -> dict[str, Any]:
    """Write ``sweep_summary.json`` and ``sweep_summary.md`` into ``sweep_dir``; returns the summary."""
    sweep_dir = Path(sweep_dir)
    summary = summarize_sweep(sweep_dir)
    write_text_atomic(sweep_dir / SUMMARY_JSON, json.dumps(summary, indent=2, default=str) + "\n")
    write_text_atomic(sweep_dir / SUMMARY_MD, summary_markdown(summary))
    return summary


class SweepSummary(Callback):
    """Hydra callback: ``error.txt`` for a job that raised, the sweep summary after each job and at the end,
    and exit status 1 for a sweep with a job that is not ``ok``.

    ``on_job_end`` runs in the process that ran the job (a joblib worker, a submitit job), so it only
    writes files; the summary is always recomputed from the job folders, never from in-memory state.
    """

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Hydra calls no callback when the launcher raises (a cancelled Slurm job, a lost worker): the
        # summary is then written when this process exits. on_multirun_end unregisters it.
        atexit.register(_summary_at_exit, Path(config.hydra.sweep.dir))

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if config.hydra.mode != RunMode.MULTIRUN:
            return
        run_dir = Path(config.hydra.runtime.output_dir)
        error = getattr(job_return, "_return_value", None)  # JobReturn.return_value re-raises for a failed job
        failed = getattr(job_return, "status", None) == JobStatus.FAILED
        if failed and isinstance(error, BaseException) and not (run_dir / ERROR).exists():
            text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            write_error(run_dir, text)
        try:
            write_sweep_summary(Path(config.hydra.sweep.dir))
        except OSError as e:  # a summary must never fail a job
            print(f"warning: could not write the sweep summary: {e}", file=sys.stderr)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        atexit.unregister(_summary_at_exit)
        if not sweep_dir.is_dir():
            return
        summary = write_sweep_summary(sweep_dir)
        print(f"sweep summary: {counts_line(summary)} → {sweep_dir / SUMMARY_MD}", file=sys.stderr)
        not_ok = summary["jobs_total"] - summary["ok"]
        if not_ok:
            # Jobs catch their own exceptions (trpo_lab/train.py), so that every job of every batch runs; the
            # sweep's exit status is set here, once all have. SystemExit passes through Hydra's callback runner,
            # which calls on_multirun_end in reverse order: this callback, listed first in conf/train.yaml, runs last.
            print(f"error: {not_ok} of {summary['jobs_total']} jobs are not ok; see {sweep_dir / SUMMARY_MD}",
                  file=sys.stderr)
            sys.exit(1)


def _summary_at_exit(sweep_dir: Path) -> None:
    """The summary of a multirun that ended without on_multirun_end (its launcher raised)."""
    if not sweep_dir.is_dir():
        return
    try:
        summary = write_sweep_summary(sweep_dir)
    except OSError as e:
        print(f"warning: could not write the sweep summary: {e}", file=sys.stderr)
        return
    print(f"sweep stopped early; summary: {counts_line(summary)} → {sweep_dir / SUMMARY_MD}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="(Re)write sweep_summary.json/.md for a multirun folder.")
    parser.add_argument("sweep_dir", type=Path)
    args = parser.parse_args(argv)
    if not find_run_dirs([args.sweep_dir]):
        print(f"error: no run folders under {args.sweep_dir}", file=sys.stderr)
        return 1
    summary = write_sweep_summary(args.sweep_dir)
    print(summary_markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
