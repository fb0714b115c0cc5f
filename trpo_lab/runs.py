"""Reading run folders for analysis, checking them against their config, and grouping them into variants.

What a run folder holds, and how each file is read: :mod:`trpo_lab.run_folder`. A run's overrides
describe its data when the config its latest launch asked for (``.hydra/config.yaml``) and the one its
data was trained with (``config.yaml``) agree: :func:`trpo_lab.run_folder.config_differences`.

Used by the sweep summary (:mod:`trpo_lab.sweep`, imported by every training job), so only numpy,
PyYAML and OmegaConf are imported here: never matplotlib or scipy.

Grouping (:func:`group_runs`): runs are pooled into one variant only when their saved configs are
equal in every key but the seed and the keys a resume may change (:func:`learns_the_same`), the budget
excepted. Runs that differ in anything else, e.g. the budget ``total_env_steps`` or ``debug=smoke``,
are separate groups, and :func:`pooling_warnings` says so. Labels name only what differs between groups.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trpo_lab.run_folder import (
    CONFIG, ERROR, METRICS, OVERRIDES, SUMMARY, config_differences, flatten_config, may_change_on_resume,
    read_metrics, read_requested_config, read_summary, read_yaml,
)

#: keys a resume may change (run_folder.MAY_CHANGE_ON_RESUME) that still separate variants: the budget. A 2k-step
#: smoke run and a 1M-step run are different experiments, though a run extended from one budget to the other
#: is one run. (max_consecutive_skips does not separate: a finished run never reached it, and one that did
#: failed and is not analysed.)
SEPARATES_VARIANTS = ("total_env_steps",)
#: override keys that never appear in a label, besides those of :func:`learns_the_same`: the task (one
#: panel/table block per task) and Hydra's own settings
NON_LABEL_OVERRIDES = ("env", "env.id")
NON_LABEL_PREFIXES = ("hydra.",)

#: groups a peer's run (``peer=...``, :mod:`trpo_lab.peers`) composes but ignores: they never label it
TRAINER_ONLY = ("algo", "sampling", "rollout", "policy", "critic")

#: folders that never hold runs (W&B's files, submitit's logs, Hydra's job metadata)
_SKIP_DIRS = {"wandb", ".submitit", ".hydra", "__pycache__"}


class NoRunsError(RuntimeError):
    """Raised when a folder holds no run folder at all (or, for the reports, no complete run)."""


def _natural_key(path: Path) -> list[Any]:
    """Sort key under which ``sweep/2`` comes before ``sweep/10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def parse_override(override: str) -> tuple[str, str]:
    """``"+algo.max_kl=0.03"`` → ``("algo.max_kl", "0.03")``; the ``+``/``++``/``~`` prefix is dropped."""
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def learns_the_same(key: str) -> bool:
    """Whether two runs that differ only in the dotted config key ``key`` are one variant: the seed (runs of
    one variant differ in it) and the keys a resume may change, but for :data:`SEPARATES_VARIANTS`."""
    return key == "seed" or (may_change_on_resume(key) and key.split(".", 1)[0] not in SEPARATES_VARIANTS)


@dataclass
class Run:
    """One run folder, read once.

    Attributes:
        path: the run folder.
        overrides: the job's command-line overrides as ``key → value`` (``.hydra/overrides.yaml``).
        config: the resolved config the data was trained with (``config.yaml``); empty if the job failed
            before writing it.
        requested: the resolved config of the job's latest launch (``.hydra/config.yaml``), or None.
        rows: the rows of ``metrics.jsonl`` in order (a torn last line of a killed job is dropped).
        summary: ``summary.json``, or None if the job did not finish.
        error: the last non-empty line of ``error.txt`` (the exception and its message), or None; an
            ``error.txt`` older than ``summary.json`` (from an earlier attempt) is ignored.
    """

    path: Path
    overrides: dict[str, str] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    requested: dict[str, Any] | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    error: str | None = None

    @property
    def mismatches(self) -> list[str]:
        """:func:`~trpo_lab.run_folder.config_differences` between the data's config (``config.yaml``, "saved")
        and the launch's (``.hydra/config.yaml``, what ``.hydra/overrides.yaml`` asked for, "requested");
        empty when either file is missing."""
        if self.requested is None or not self.config:
            return []
        return config_differences(self.config, self.requested)

    @property
    def status(self) -> str:
        """``failed`` (error.txt), ``mismatch`` (the overrides do not describe the data), ``ok`` (summary.json
        and at least one metrics row) or ``incomplete``."""
        if self.error is not None:
            return "failed"
        if self.mismatches:
            return "mismatch"
        if self.summary is not None and self.rows:
            return "ok"
        return "incomplete"

    @property
    def problem(self) -> str | None:
        """Why the run cannot be analysed, or None if it can."""
        if self.error is not None:
            return f"failed: {self.error}"
        if self.mismatches:
            return f"its overrides do not match its data (config.yaml): {'; '.join(self.mismatches)}"
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
    def peer(self) -> str | None:
        """``peer.name`` for a run of another implementation (:mod:`trpo_lab.peers`), None for the lab's trainer."""
        peer = self.config.get("peer")
        return str(peer["name"]) if isinstance(peer, dict) and "name" in peer else None

    @property
    def max_kl(self) -> float | None:
        """δ, the trust-region radius the run measured KL/δ against."""
        value = (self.config.get("algo") or {}).get("max_kl")
        return None if value is None else float(value)

    def setting(self) -> tuple[tuple[str, str], ...]:
        """What defines the run's variant: every config key but those of :func:`learns_the_same`
        (the overrides when there is no ``config.yaml``)."""
        leaves = flatten_config(self.config) if self.config else dict(self.overrides)
        return tuple(sorted((k, json.dumps(v, sort_keys=True, default=str))
                            for k, v in leaves.items() if not learns_the_same(k)))

    def has(self, key: str) -> bool:
        """Whether any row logged ``key`` (a key absent from every row was not measured by this run's code)."""
        return any(key in r for r in self.rows)

    def column(self, key: str) -> np.ndarray:
        """Values of ``key`` over the updates as floats; None/missing (e.g. early ``return/mean``) → NaN."""
        return np.array([as_float(r.get(key)) for r in self.rows], dtype=float)

    def last_value(self, key: str) -> float | None:
        """The last finite value of ``key`` in ``metrics.jsonl``, or None."""
        col = self.column(key)
        finite = col[np.isfinite(col)]
        return float(finite[-1]) if finite.size else None


def as_float(v: Any) -> float:
    """A logged value as a float; None, strings and other non-numbers → NaN."""
    if isinstance(v, (bool, int, float)):
        return float(v)
    return math.nan


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
    overrides = read_yaml(path / OVERRIDES) or []
    config = read_yaml(path / CONFIG)
    return Run(
        path=path,
        overrides=dict(parse_override(str(o)) for o in overrides),
        config=config if isinstance(config, dict) else {},
        requested=read_requested_config(path),
        rows=read_metrics(path / METRICS, metrics_tail_bytes),
        summary=read_summary(path),
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
    """Every run folder at or below ``roots`` (a sweep folder, a single run, or a folder of sweeps), in natural order.

    Each is an absolute path *as reached from its root*: a symbolic link on the way is kept, not resolved, so a
    sweep linked into the working directory is reported relative to it (:func:`display_path`). A folder reached
    twice (two roots, or a link to a folder already found) is listed once, at its first path."""
    found: dict[Path, Path] = {}  # the folder's real path -> the first path it was reached by

    def add(folder: Path) -> None:
        found.setdefault(folder.resolve(), absolute(folder))

    for root in roots:
        root = Path(root)
        if is_run_dir(root):
            add(root)
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
                    add(child)
                else:
                    stack.append(child)
    return sorted(found.values(), key=_natural_key)


def load_runs(roots: Iterable[Path]) -> tuple[list[Run], list[tuple[Run, str]]]:
    """``(usable, skipped)`` runs below ``roots``, each skipped one with its reason; raises :class:`NoRunsError`
    if there is no run folder.

    A run is skipped when it failed, its overrides do not match its data, it has no ``summary.json`` (it
    did not finish) or no metrics rows, or it repeats an earlier run's config *and* seed (a reused folder:
    counting it would count one seed twice).
    """
    roots = [Path(r) for r in roots]
    dirs = find_run_dirs(roots)
    if not dirs:
        raise NoRunsError(
            f"no run folders (with {OVERRIDES} or {METRICS}) under {', '.join(str(r) for r in roots)}"
        )
    usable: list[Run] = []
    skipped: list[tuple[Run, str]] = []
    first_of: dict[tuple[Any, ...], Run] = {}
    for run in map(read_run, dirs):
        if run.problem is not None:
            skipped.append((run, run.problem))
            continue
        same = (run.setting(), run.seed)
        if same in first_of and run.config:
            skipped.append((run, f"same config and seed as {display_path(first_of[same].path)} (counted once)"))
            continue
        first_of[same] = run
        usable.append(run)
    return usable, skipped


def load_complete_runs(roots: Sequence[Path]) -> tuple[list[Run], list[tuple[Run, str]]]:
    """:func:`load_runs` for the reports: :class:`NoRunsError` also when no run is usable, and each
    skipped run reported on stderr."""
    runs, skipped = load_runs(roots)
    if not runs:
        raise NoRunsError(
            f"no complete runs under {', '.join(map(str, roots))} ({len(skipped)} skipped: "
            f"{'; '.join(f'{r.path.name}: {why}' for r, why in skipped)})"
        )
    for r, why in skipped:
        print(f"skipped {display_path(r.path)}: {why}", file=sys.stderr)
    return runs, skipped


def absolute(path: Path | str) -> Path:
    """``path`` made absolute and normalised (``..`` removed) without resolving symbolic links."""
    return Path(os.path.abspath(path))


def display_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it (reports stay machine-independent),
    as given (a linked-in sweep stays below it) or else resolved."""
    cwd = Path.cwd()
    for candidate, base in ((absolute(path), absolute(cwd)), (Path(path).resolve(), cwd.resolve())):
        try:
            return str(candidate.relative_to(base))
        except ValueError:
            continue
    return str(path)


# -- variants -------------------------------------------------------------------------------------------

#: ``{task: {label: runs}}``
Groups = dict[str, dict[str, list[Run]]]


def is_label_override(key: str) -> bool:
    return key not in NON_LABEL_OVERRIDES and not key.startswith(NON_LABEL_PREFIXES) and not learns_the_same(key)


def _override_value(runs: Sequence[Run], key: str) -> str:
    values = sorted({r.overrides.get(key, "(default)") for r in runs})
    return "|".join(values)


def _uses(runs: Sequence[Run], key: str) -> bool:
    """Whether the runs' config holds ``key`` (a dotted leaf): a variant does not use, say, the fixed step's
    ``algo.step_rule.step_size`` under ``algo=trpo``. Group choices (``algo/line_search``), and runs without a
    saved config, count as using it; so does a key without a dot (a group choice such as ``debug``)."""
    if "/" in key or "." not in key:
        return True
    for r in runs:
        if not r.config:
            return True
        node: Any = r.config
        for part in key.lstrip("+~").split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return True
    return False


def _labels(sets: list[tuple[str, list[Run]]], always: Sequence[str] = ()) -> list[str]:
    """A label per ``(task, runs)`` set: the overrides whose values differ between the sets (and those of
    ``always`` that the runs override); where two sets of one task would still share a label, the config keys that
    differ between them are added."""
    keys = sorted({k for _, runs in sets for r in runs for k in r.overrides if is_label_override(k) and k != "peer"})
    differing = [k for k in keys if k in always or len({_override_value(runs, k) for _, runs in sets}) > 1]

    with_peer = any(runs[0].peer for _, runs in sets)

    def label(runs: list[Run]) -> str:
        peer = runs[0].peer
        parts = [f"{k}={_override_value(runs, k)}" for k in differing
                 if (_override_value(runs, k) != "(default)" or _uses(runs, k))
                 and not (peer and k.lstrip("+~").split("/")[0].split(".")[0] in TRAINER_ONLY)]
        return ", ".join(([peer] if peer else ["trpo-lab"] if with_peer else []) + parts)

    labels = [label(runs) for _, runs in sets]
    collisions: dict[tuple[str, str], list[int]] = {}
    for i, (task, _) in enumerate(sets):
        collisions.setdefault((task, labels[i]), []).append(i)
    for members in (m for m in collisions.values() if len(m) > 1):
        settings = [dict(sets[i][1][0].setting()) for i in members]
        config_keys = sorted({k for s in settings for k in s if len({s.get(k) for s in settings}) > 1})
        for i, s in zip(members, settings):
            extra = ", ".join(f"{k}={json.loads(s[k]) if k in s else '(absent)'}" for k in config_keys)
            labels[i] = f"{labels[i]}, {extra}" if labels[i] else extra
    return [label or "all runs" for label in labels]


def group_runs(runs: Sequence[Run], label_keys: Sequence[str] = ()) -> Groups:
    """``{task: {label: [runs]}}``: runs with the same :meth:`Run.setting` (config equal but for the keys of
    :func:`learns_the_same`) pooled, tasks sorted, variants and runs in the order first seen. ``label_keys``:
    overrides every label names even where all runs agree (e.g. the keys of a record's labels that new runs join).

    E.g. runs of ``algo=npg,trpo seed=0,1`` are labelled ``algo=npg`` and ``algo=trpo``. A peer's label starts
    with its ``peer.name`` (``sb3_contrib_trpo``); beside one, the lab's labels start with ``trpo-lab``. A key that a
    run does not override counts as its own value (``key=(default)``); a smoke run beside a full run
    is its own group (``debug=smoke``). If only the seed differs, the label is ``all runs``.
    """
    by_setting: dict[tuple[str, tuple[tuple[str, str], ...]], list[Run]] = {}
    for r in runs:
        by_setting.setdefault((r.task, r.setting()), []).append(r)
    sets = [(task, rs) for (task, _), rs in by_setting.items()]
    grouped: Groups = {}
    for (task, rs), label in zip(sets, _labels(sets, label_keys)):
        grouped.setdefault(task, {})[label] = rs
    return {task: grouped[task] for task in sorted(grouped)}


def labels_by_path(groups: Groups) -> dict[Path, str]:
    """The label of each run's group, by run folder."""
    return {r.path: label for variants in groups.values() for label, rs in variants.items() for r in rs}


def pooling_warnings(groups: Groups) -> list[str]:
    """One line per task whose groups differ in budget (``total_env_steps``) or debug settings (``debug=``):
    such groups are shown side by side, never pooled, and the reader should know they are not comparable."""
    warnings = []
    for task, variants in groups.items():
        runs = [r for rs in variants.values() for r in rs]
        budgets = sorted({str(r.config.get("total_env_steps", "?")) for r in runs})
        debug = sorted({r.overrides.get("debug", "none") for r in runs})
        parts = ([f"budgets total_env_steps ∈ {{{', '.join(budgets)}}}"] if len(budgets) > 1 else []) + (
            [f"debug ∈ {{{', '.join(debug)}}}"] if len(debug) > 1 else [])
        if parts:
            warnings.append(f"warning: {task}: runs differ in {' and '.join(parts)}; shown as separate groups, not pooled")
    return warnings
