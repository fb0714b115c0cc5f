"""Reading run folders, and the statistics used to compare runs across seeds.

Shared by ``scripts/plot_curves.py``, ``scripts/step_behavior.py`` and the sweep summary
(:mod:`trpo_lab.sweep`). Only numpy and PyYAML (which OmegaConf already needs) are used here, so
importing this module never needs the ``analysis`` extra.

A *run folder* is what one training job writes (README, "Command line"): ``config.yaml`` (the
resolved config), ``metrics.jsonl`` (one JSON object per update), ``summary.json`` (written at the
end; absent if the job died), ``.hydra/overrides.yaml`` (the job's command-line overrides) and, for
a job that failed inside a multirun, ``error.txt``.

Statistics (why not rliable): checked with rliable 1.2.0 and arch 7.2.0, rliable does not import
next to pandas 3 (arch fails), and with pandas < 3 three calls of ``get_interval_estimates`` with
``random_state=np.random.RandomState(0)`` gave three different CIs (arch deprecates that argument),
while a published table should come out the same when re-run. The three functions needed (interquartile mean, a percentile bootstrap
over seeds, its stratified form over tasks) are a few lines of numpy each, seeded with
:class:`numpy.random.Generator`, and tested against independent computations
(``scipy.stats.trim_mean``, ``scipy.stats.bootstrap``) in ``tests/test_analysis.py``.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

#: files of a run folder
METRICS, SUMMARY, CONFIG, OVERRIDES, ERROR = "metrics.jsonl", "summary.json", "config.yaml", ".hydra/overrides.yaml", "error.txt"

#: override keys that never define a variant: the seed (runs of one variant differ in it), the task (one
#: panel/table block per task) and settings that do not change what is learned
NON_VARIANT_KEYS = ("seed", "env", "env.id", "torch_threads", "checkpoint_every", "resume")
NON_VARIANT_PREFIXES = ("logger.", "hydra.", "debug")

#: folders that never hold runs (W&B's files, submitit's logs, Hydra's job metadata)
_SKIP_DIRS = {"wandb", ".submitit", ".hydra", "__pycache__"}


class NoRunsError(RuntimeError):
    """Raised when a folder holds no run folder at all."""


def _natural_key(path: Path) -> list[Any]:
    """Sort key under which ``sweep/2`` comes before ``sweep/10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def parse_override(override: str) -> tuple[str, str]:
    """``"+algo.max_kl=0.03"`` → ``("algo.max_kl", "0.03")``; the ``+``/``++``/``~`` prefix is dropped."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


@dataclass
class Run:
    """One run folder, read once.

    Attributes:
        path: the run folder.
        overrides: the job's command-line overrides as ``key → value`` (``.hydra/overrides.yaml``).
        config: the resolved config (``config.yaml``); empty if the job failed before writing it.
        rows: the rows of ``metrics.jsonl`` in order (a torn last line of a killed job is dropped).
        summary: ``summary.json``, or None if the job did not finish.
        error: the last non-empty line of ``error.txt`` (the exception and its message), or None; an
            ``error.txt`` older than ``summary.json`` (from an earlier attempt) is ignored.
    """

    path: Path
    overrides: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        """``failed`` (error.txt), ``ok`` (summary.json and at least one metrics row) or ``incomplete``."""
        if self.error is not None:
            return "failed"
        if self.summary is not None and self.rows:
            return "ok"
        return "incomplete"

    @property
    def problem(self) -> str | None:
        """Why the run cannot be analysed, or None if it can."""
        if self.error is not None:
            return f"failed: {self.error}"
        if not self.rows:
            return "metrics.jsonl is missing or empty"
        if self.summary is None:
            return f"no summary.json (the job stopped after {self.rows[-1].get('env_steps')} env steps)"
        return None

    @property
    def task(self) -> str:
        """The env id (from the resolved config, else from an ``env.id``/``env`` override)."""
        env = self.config.get("env") or {}
        return str(env.get("id") or self.overrides.get("env.id") or self.overrides.get("env") or "unknown")

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed", self.overrides.get("seed"))
        return None if seed is None else int(seed)

    @property
    def max_kl(self) -> float | None:
        """δ, the trust-region radius the run measured KL/δ against."""
        value = (self.config.get("algo") or {}).get("max_kl")
        return None if value is None else float(value)

    def column(self, key: str) -> np.ndarray:
        """Values of ``key`` over the updates as floats; None/missing (e.g. early ``return/mean``) → NaN."""
        return np.array([_as_float(r.get(key)) for r in self.rows], dtype=float)

    def last_value(self, key: str) -> float | None:
        """The last finite value of ``key`` in ``metrics.jsonl``, or None."""
        col = self.column(key)
        finite = col[np.isfinite(col)]
        return float(finite[-1]) if finite.size else None


def _as_float(v: Any) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)):
        return float(v)
    return math.nan


def read_metrics(path: Path, tail_bytes: int | None = None) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl``; lines that are not complete JSON objects (a killed writer) are dropped.

    With ``tail_bytes``, only the rows in the file's last ``tail_bytes`` bytes are read (cheap for a
    status check of a long run).
    """
    rows: list[dict[str, Any]] = []
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - tail_bytes) if tail_bytes else 0
            f.seek(start)
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return rows
    lines = text.splitlines()
    if start > 0:
        lines = lines[1:]  # the first line was cut by the offset
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def last_line(path: Path) -> str | None:
    """The last non-empty line of a text file (for a Python traceback: ``ExcType: message``), or None."""
    try:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    return lines[-1] if lines else "(error.txt is empty)"


def read_run(path: Path, metrics_tail_bytes: int | None = None) -> Run:
    """Read one run folder (any of its files may be missing); see :func:`read_metrics` for the tail."""
    path = Path(path)
    overrides = _read_yaml(path / OVERRIDES) or []
    config = _read_yaml(path / CONFIG)
    summary = None
    try:
        summary = json.loads((path / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        pass
    return Run(
        path=path,
        overrides=dict(parse_override(str(o)) for o in overrides),
        config=config if isinstance(config, dict) else {},
        rows=read_metrics(path / METRICS, metrics_tail_bytes),
        summary=summary if isinstance(summary, dict) else None,
        error=last_line(path / ERROR) if _current_error(path) else None,
    )


def _current_error(path: Path) -> bool:
    """Whether ``error.txt`` belongs to the job's latest attempt.

    A re-launched sweep re-runs a failed job in the same folder; if that attempt finishes, its
    ``summary.json`` is newer than the old ``error.txt``, which then no longer describes the run.
    """
    try:
        error_mtime = (path / ERROR).stat().st_mtime
    except OSError:
        return False
    try:
        return error_mtime >= (path / SUMMARY).stat().st_mtime
    except OSError:
        return True


def is_run_dir(path: Path) -> bool:
    return (path / OVERRIDES).is_file() or (path / METRICS).is_file()


def find_run_dirs(roots: Iterable[Path]) -> list[Path]:
    """Every run folder at or below ``roots`` (a sweep folder, a single run, or a folder of sweeps), in natural order."""
    found: set[Path] = set()
    for root in roots:
        root = Path(root)
        if is_run_dir(root):
            found.add(root.resolve())
            continue
        if not root.is_dir():
            continue
        stack = [root]
        while stack:
            d = stack.pop()
            for child in d.iterdir():
                if not child.is_dir() or child.name in _SKIP_DIRS:
                    continue
                if is_run_dir(child):
                    found.add(child.resolve())
                else:
                    stack.append(child)
    return sorted(found, key=_natural_key)


def load_runs(roots: Iterable[Path]) -> tuple[list[Run], list[Run]]:
    """``(complete, skipped)`` runs below ``roots``; raises :class:`NoRunsError` if there is no run folder.

    A run is skipped (and reported by the caller) when it failed, has no ``summary.json`` (it did
    not finish) or has no metrics rows.
    """
    roots = [Path(r) for r in roots]
    dirs = find_run_dirs(roots)
    if not dirs:
        raise NoRunsError(
            f"no run folders (with {OVERRIDES} or {METRICS}) under {', '.join(str(r) for r in roots)}"
        )
    runs = [read_run(d) for d in dirs]
    return [r for r in runs if r.problem is None], [r for r in runs if r.problem is not None]


def load_complete_runs(roots: Sequence[Path]) -> tuple[list[Run], list[Run]]:
    """:func:`load_runs` for the analysis scripts: :class:`NoRunsError` also when no run is complete, and
    each skipped (incomplete) run reported on stderr."""
    runs, skipped = load_runs(roots)
    if not runs:
        raise NoRunsError(
            f"no complete runs under {', '.join(map(str, roots))} ({len(skipped)} skipped: "
            f"{'; '.join(f'{r.path.name}: {r.problem}' for r in skipped)})"
        )
    for r in skipped:
        print(f"skipped {display_path(r.path)}: {r.problem}", file=sys.stderr)
    return runs, skipped


def is_variant_key(key: str) -> bool:
    return key not in NON_VARIANT_KEYS and not key.startswith(NON_VARIANT_PREFIXES)


def variant_labels(runs: Sequence[Run]) -> dict[Path, str]:
    """Label each run by the overrides that differ across ``runs``, leaving out the seed and the task.

    E.g. runs of ``algo=npg,trpo seed=0,1`` are labelled ``algo=npg`` and ``algo=trpo``. A key that a
    run does not override counts as its own value (``key=(default)``). If nothing differs, every run
    is labelled ``all runs``.
    """
    keys = sorted({k for r in runs for k in r.overrides if is_variant_key(k)})
    differing = [k for k in keys if len({r.overrides.get(k) for r in runs}) > 1]
    labels = {}
    for r in runs:
        parts = [f"{k}={r.overrides.get(k, '(default)')}" for k in differing]
        labels[r.path] = ", ".join(parts) if parts else "all runs"
    return labels


def group_runs(runs: Sequence[Run]) -> dict[str, dict[str, list[Run]]]:
    """``{task: {variant label: [runs]}}``, tasks sorted, variants and runs in the order first seen."""
    labels = variant_labels(runs)
    grouped: dict[str, dict[str, list[Run]]] = {}
    for r in runs:
        grouped.setdefault(r.task, {}).setdefault(labels[r.path], []).append(r)
    return {task: grouped[task] for task in sorted(grouped)}


# -- statistics ---------------------------------------------------------------------------------------


def interquartile_mean(x: Sequence[float] | np.ndarray) -> float:
    """The mean of the middle 50%: sort, drop ⌊n/4⌋ values at each end, average the rest.

    The convention of ``scipy.stats.trim_mean(x, 0.25)`` and of rliable's IQM.
    """
    x = np.sort(np.asarray(x, dtype=float).ravel())
    if x.size == 0:
        return math.nan
    cut = int(0.25 * x.size)
    return float(x[cut : x.size - cut].mean())


def stratified_bootstrap_ci(
    strata: Sequence[Sequence[float] | np.ndarray],
    statistic: Callable[[np.ndarray], float],
    n_resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` over all scores, resampling within each stratum.

    Each resample draws, for every stratum (e.g. one task's seeds), as many scores as it holds, with
    replacement and independently of the other strata, and applies ``statistic`` to the concatenation
    (Agarwal et al. 2021's stratified bootstrap). With one stratum it is the ordinary bootstrap.

    Args:
        strata: the scores of each stratum.
        statistic: maps a 1-D array of scores to a number (e.g. :func:`interquartile_mean`, ``np.mean``).
        n_resamples: bootstrap resamples.
        confidence: the CI's coverage, e.g. 0.95.
        seed: seeds :func:`numpy.random.default_rng`, so the same call gives the same CI.
    Returns:
        ``(lower, upper)``: the (1−c)/2 and (1+c)/2 percentiles of the resampled statistic.
    """
    arrays = [np.asarray(s, dtype=float).ravel() for s in strata]
    if not arrays or any(a.size == 0 for a in arrays):
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, a.size, size=(n_resamples, a.size)) for a in arrays]
    samples = np.concatenate([a[idx] for a, idx in zip(arrays, draws)], axis=1)
    stats = np.array([statistic(s) for s in samples])
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_mean_band(
    curves: np.ndarray, n_resamples: int = 2_000, confidence: float = 0.95, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean across seeds of ``curves`` (seeds × points) and a percentile bootstrap band at each point.

    The same resampled seed sets are used at every point (seeds are resampled as whole curves).
    Points where any seed is NaN get NaN.
    """
    curves = np.asarray(curves, dtype=float)
    mean = curves.mean(axis=0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, curves.shape[0], size=(n_resamples, curves.shape[0]))
    resampled = curves[idx].mean(axis=1)  # (n_resamples, points)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(resampled, [alpha, 1.0 - alpha], axis=0)
    bad = ~np.isfinite(mean)
    lo[bad] = hi[bad] = np.nan
    return mean, lo, hi


def mean_ci(values: Sequence[float], n_resamples: int = 10_000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """``(mean, lower, upper)``: the mean of ``values`` (one per seed) and its percentile bootstrap CI."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    lo, hi = stratified_bootstrap_ci([v], np.mean, n_resamples, confidence, seed)
    return float(v.mean()), lo, hi


# -- curves and final scores --------------------------------------------------------------------------


def curve(run: Run, key: str = "return/mean", x_key: str = "env_steps") -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of ``key`` against ``x_key`` over the run's updates (y is NaN where not yet logged)."""
    return run.column(x_key), run.column(key)


def aligned_curves(runs: Sequence[Run], key: str = "return/mean", x_key: str = "env_steps") -> tuple[np.ndarray, np.ndarray]:
    """Curves of ``runs`` on one x grid: ``(x, Y)`` with Y of shape (runs, points).

    The grid is the x values of the first run up to the shortest run's last x; runs logged at other
    x values are linearly interpolated onto it. A point before a run's first logged value is NaN.
    """
    curves = [curve(r, key, x_key) for r in runs]
    end = min(float(np.nanmax(x)) for x, _ in curves)
    x0 = curves[0][0]
    grid = x0[np.isfinite(x0) & (x0 <= end)]
    ys = []
    for x, y in curves:
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() == 0:
            ys.append(np.full(grid.shape, np.nan))
        elif np.array_equal(x, x0) and x.size == grid.size:
            ys.append(y.copy())
        else:
            ys.append(np.interp(grid, x[ok], y[ok], left=np.nan))
    return grid, np.vstack(ys)


def final_score(run: Run, key: str = "return/mean", window: int = 10) -> float:
    """The mean of ``key`` over the run's last ``window`` updates with a logged value (NaN if none)."""
    col = run.column(key)
    col = col[np.isfinite(col)]
    return float(col[-window:].mean()) if col.size else math.nan


def format_ci(value: float, lo: float, hi: float, digits: int = 1) -> str:
    """``"12.3 [10.1, 14.0]"``; ``"n/a"`` for NaN."""
    if not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` inside cells escaped)."""
    esc = lambda c: str(c).replace("|", "\\|")
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (reports stay machine-independent)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def skipped_report(skipped: Sequence[Run]) -> str:
    """One Markdown bullet per skipped run: its folder and why."""
    return "\n".join(f"- `{display_path(r.path)}`: {r.problem}" for r in skipped)


# -- step behaviour -----------------------------------------------------------------------------------

#: per-run rates of :func:`step_rates`, in report order, with their Markdown headings
STEP_RATES = {
    "violation_rate": "constraint violated",
    "rejected_rate": "rejected (1 − accepted)",
    "ls_changed_rate": "line search changed the step (fraction < 1)",
    "full_step_violation_rate": "full step would violate",
    "mean_backtracks": "backtracks per update",
    "improved_fraction": "return improved",
    "collapses": "collapses",
}


def formed_steps(run: Run) -> np.ndarray:
    """Mask of the updates where a step was formed (``step/skipped`` ≠ 1); skipped updates carry no step."""
    skipped = run.column("step/skipped")
    return ~(np.nan_to_num(skipped, nan=0.0) > 0)


def step_rates(run: Run) -> dict[str, float]:
    """One run's step-behaviour rates over its updates with a formed step.

    - ``violation_rate``: mean of ``step/constraint_violated`` (the step taken broke KL ≤ δ).
    - ``rejected_rate``: 1 − mean of ``line_search/accepted``.
    - ``ls_changed_rate``: share of updates with ``step/fraction`` < 1 (shrunk or rejected).
    - ``full_step_violation_rate``: mean of ``full_step/constraint_violated`` (the full KL-scaled step would have).
    - ``mean_backtracks``: mean of ``line_search/backtracks``.
    - ``improved_fraction``, ``collapses``: the run's monotonic accounting at its last update.
    """
    formed = formed_steps(run)

    def mean_of(values: np.ndarray) -> float:
        v = values[formed & np.isfinite(values)]
        return float(v.mean()) if v.size else math.nan

    summary = run.summary or {}
    improved = summary.get("improved_fraction")
    collapses = summary.get("collapses")
    return {
        "violation_rate": mean_of(run.column("step/constraint_violated")),
        "rejected_rate": 1.0 - mean_of(run.column("line_search/accepted")),
        "ls_changed_rate": mean_of((run.column("step/fraction") < 1.0).astype(float)),
        "full_step_violation_rate": mean_of(run.column("full_step/constraint_violated")),
        "mean_backtracks": mean_of(run.column("line_search/backtracks")),
        "improved_fraction": _as_float(improved if improved is not None else run.last_value("monotonic/improved_fraction")),
        "collapses": _as_float(collapses if collapses is not None else run.last_value("monotonic/collapses")),
    }


def fresh_return_deltas(run: Run) -> np.ndarray:
    """``return/delta`` on the updates whose batch ended episodes, after the first such update.

    Updates with no finished episode carry the return forward (delta 0) and are left out, as is the
    first measured return (it has no predecessor).
    """
    delta = run.column("return/delta")
    episodes = run.column("return/episodes")
    fresh = np.nan_to_num(episodes, nan=1.0) > 0 if np.isfinite(episodes).any() else np.isfinite(delta)
    idx = np.flatnonzero(fresh & np.isfinite(run.column("return/mean")))
    return delta[idx[1:]] if idx.size > 1 else np.array([])


def identical_trajectories(runs: Sequence[Run], key: str = "return/mean") -> list[list[Run]]:
    """Groups of ≥ 2 runs on the same task and seed, of different variants, whose ``key`` sequences are identical.

    With the same seed, TRPO and TRPO without line search follow the same trajectory for as long as
    the line search never shrinks a step; this finds where that held for a whole run.
    """
    buckets: dict[tuple[str, int | None, tuple[float, ...]], list[Run]] = {}
    for r in runs:
        col = tuple(np.nan_to_num(r.column(key), nan=-np.inf).tolist())
        buckets.setdefault((r.task, r.seed, col), []).append(r)
    labels = variant_labels(runs)
    return [g for g in buckets.values() if len({labels[r.path] for r in g}) > 1]
