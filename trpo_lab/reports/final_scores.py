"""A study's record of final scores: one row per run (``runs.csv``) and one per task and variant
(``final_scores.md`` and ``.json``).

    python -m trpo_lab.reports.final_scores SWEEP_DIR [MORE_DIRS ...] --out experiments/NAME
    (the same: python scripts/final_scores.py ..., or the console script trpo-final-scores)

The protocol, per run:

- ``eval_final``: the deterministic evaluation of the final policy, the mean return over its episodes
  (``summary.json``'s ``final_eval``; a study sets ``eval.episodes=10``). NaN if the run never evaluated.
- ``train_final``: the training return (``return/mean``) averaged over the last ``--final-window`` updates.

and the run's step statistics, as :mod:`trpo_lab.reports.run_stats` defines them (over the updates that formed a
step, nulls left out), each a share of those updates unless said otherwise:

- ``collapses``: updates after which the training return fell by more than ``collapse_share`` of the best
  return so far (a count); ``worst_drop``: the largest such drop.
- ``violation_rate``: the step taken broke the constraint (its KL statistic > δ); ``accepted_rate``: a
  step was taken (not the old parameters kept).
- ``full_step_violation_rate``: the full KL-scaled step √(2δ/κ)·x, before any line search, broke the
  constraint (for a fixed step rule this step is counterfactual: measured, not taken).
- ``line_search_acted``: the step taken was shorter than the full step (``step/fraction`` < 1: the line
  search backtracked or rejected); ``line_search_rejected``: no candidate was accepted.
- ``kl_over_delta_median``: the median over updates of the taken step's KL statistic / δ.
- ``paired_measured``, ``paired_resolved``, ``paired_improved``: updates the paired evaluation measured,
  resolved (|mean| > 2·SE) and found improving (counts; ``eval.paired.every`` = 0 leaves them 0).

Per task and variant (runs are pooled only when their configs are equal but for the seed, as in
:func:`trpo_lab.runs.group_runs`): the interquartile mean (IQM) over seeds of ``eval_final`` and of
``train_final``, each with a percentile-bootstrap CI over seeds (the stratified bootstrap of
:func:`trpo_lab.stats.bootstrap_ci` with one stratum: tasks are never pooled, raw returns of different
tasks are not on one scale); mean ± std (ddof = 1) and the per-seed values; and the step statistics across
runs by the rules of :mod:`trpo_lab.reports.run_stats`: counts summed, rates (the resolved improved fraction
too) the mean over the runs where they are defined, median KL/δ the median of the per-run medians.

``peer``: the peer library a run is of (its config's ``peer.name``, e.g. ``sb3_contrib_trpo``), empty for ours; an
older ``runs.csv`` without the column reads as ours. Comparisons (:mod:`trpo_lab.reports.comparisons`): where a task
holds a peer's runs, each of our variants beside the peer (both sides' IQM with a CI, the unpaired difference of
means, the probability of improvement); with ``--reference VARIANT``, each of our variants against it, **paired by
seed** where both ran the same seeds, unpaired otherwise, each row saying which. With ≥ 2 tasks, the aggregate IQM
of normalised scores and the performance profile ``performance_profile.png`` (:mod:`trpo_lab.reports.across_tasks`).

Every table can be rebuilt from ``runs.csv``: given a study's ``runs.csv`` instead of sweep folders, the
report rewrites ``final_scores.md`` and ``.json`` from its rows (and leaves ``runs.csv`` as it is); given several
(e.g. our runs of one study and the peer's of another), it reads them as one::

    python -m trpo_lab.reports.final_scores experiments/NAME/runs.csv --out experiments/NAME [--reference VARIANT]

Given a ``runs.csv`` and sweep folders together, the report adds the new runs to the record: their rows after the
CSV's, ``runs.csv`` rewritten with both (a record whose older runs' folders are gone grows by new runs). The new
runs are grouped among themselves, and their labels name every key the record's labels name (:func:`label_keys`)
besides the keys that differ between them; a new (task, variant) already in the CSV is an error (a label does not
prove the same config, so a group is never extended this way)::

    python -m trpo_lab.reports.final_scores experiments/NAME/runs.csv NEW_SWEEP [NEW_SWEEP ...] --out experiments/NAME
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from trpo_lab.reports import across_tasks, run_stats
from trpo_lab.reports.common import base_parser, run_report, skipped_json
from trpo_lab.reports.comparisons import (
    Bootstrap, Table, difference_records, differences_table, find_reference, peer_records, peer_table,
)
from trpo_lab.reports.curves import final_score
from trpo_lab.reports.markdown import format_ci, markdown_table, sources_and_skipped
from trpo_lab.runs import Groups, Run, display_path
from trpo_lab.stats import bootstrap_ci, iqm

#: the per-run columns of ``runs.csv``, in order
COLUMNS = (
    "task", "variant", "seed", "run", "git_commit", "env_steps", "updates", "wall_s",
    "eval_final", "eval_final_std", "eval_episodes", "train_final",
    "collapses", "worst_drop", "violation_rate", "accepted_rate", "full_step_violation_rate",
    "line_search_acted", "line_search_rejected", "kl_over_delta_median",
    "paired_measured", "paired_resolved", "paired_improved", "peer",
)
#: columns a ``runs.csv`` written before they existed may lack (read as empty): ``peer``
OPTIONAL_COLUMNS = ("peer",)
#: the columns that are shares of a run's updates (:data:`trpo_lab.reports.run_stats.SHARES`)
SHARE_COLUMNS = ("violation_rate", "accepted_rate", "full_step_violation_rate", "line_search_acted", "line_search_rejected")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = base_parser(
        "Per-run CSV and a per-task, per-variant table of the final scores (deterministic evaluation of the final "
        "policy; training return of the last updates) with IQM and percentile-bootstrap CIs over seeds."
    )
    p.add_argument("--final-window", type=int, default=10, help="updates averaged for train_final (default: 10)")
    p.add_argument("--reference", default=None, help="a variant label, or a substring naming one variant per task: "
                   "adds each other variant's difference to it (paired by seed where they share seeds)")
    return p.parse_args(argv)


def run_record(run: Run, variant: str, final_window: int) -> dict[str, Any]:
    """One ``runs.csv`` row (see the module docstring for each column)."""
    summary = run.summary or {}
    final_eval = summary.get("final_eval") or {}
    paired = run_stats.paired_counts(run.rows) or run_stats.PairedCounts(0, 0, 0, 0)
    collapses = run_stats.collapses(run.rows, summary)
    return {
        "task": run.task,
        "variant": variant,
        "seed": run.seed,
        "run": display_path(run.path),
        "git_commit": (summary.get("meta") or {}).get("git_commit"),
        "env_steps": summary.get("env_steps"),
        "updates": summary.get("updates"),
        "wall_s": summary.get("wall_s"),
        "eval_final": final_eval.get("return_mean", math.nan),
        "eval_final_std": final_eval.get("return_std", math.nan),
        "eval_episodes": final_eval.get("episodes"),
        "train_final": final_score(run, "return/mean", final_window),
        "collapses": int(collapses) if math.isfinite(collapses) else None,
        "worst_drop": summary.get("worst_drop"),
        **{k: run_stats.SHARES[k](run.rows).value for k in SHARE_COLUMNS},
        "kl_over_delta_median": run_stats.kl_over_delta_median(run.rows),
        "paired_measured": paired.measured,
        "paired_resolved": paired.resolved,
        "paired_improved": paired.improved,
        "peer": peer_name(run.config),
    }


def peer_name(config: dict[str, Any]) -> str | None:
    """The peer library a run's config names (``peer=sb3_contrib`` composes ``peer: {name: sb3_contrib_trpo, ...}``;
    ``peer=none`` adds no key), or None for the lab's own trainer."""
    peer = config.get("peer")
    if isinstance(peer, dict):
        return str(peer.get("name") or "peer")
    return str(peer) if peer not in (None, "", "none") else None


def _score_stats(values: list[float], args: argparse.Namespace) -> dict[str, Any]:
    x = np.array([v for v in values if math.isfinite(v)], dtype=float)
    lo, hi = bootstrap_ci([x], iqm, args.resamples, args.confidence, args.seed)
    return {
        "n": int(x.size), "iqm": iqm(x), "iqm_ci": [lo, hi],
        "mean": float(x.mean()) if x.size else math.nan,
        "std": float(x.std(ddof=1)) if x.size > 1 else math.nan,
        "per_seed": x.tolist(),
    }


def variant_record(task: str, variant: str, rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """One task × variant: the score statistics of ``eval_final`` and ``train_final``, and the step statistics
    across its runs (:mod:`trpo_lab.reports.run_stats`: counts summed, rates the mean over the runs where they are
    defined, median KL/δ the median of the per-run medians)."""
    fractions = [r["paired_improved"] / r["paired_resolved"] if r["paired_resolved"] else math.nan for r in rows]
    return {
        "task": task, "variant": variant, "peer": next((r["peer"] for r in rows if r.get("peer")), None),
        "seeds": [r["seed"] for r in rows],
        "eval_final": _score_stats([r["eval_final"] for r in rows], args),
        "train_final": _score_stats([r["train_final"] for r in rows], args),
        "collapses": (None if all(r["collapses"] is None for r in rows)  # e.g. a peer: not measured, not 0
                      else int(sum(r["collapses"] or 0 for r in rows))),
        **{k: run_stats.mean_over_runs(r[k] for r in rows) for k in SHARE_COLUMNS},
        "kl_over_delta_median": run_stats.median_over_runs(r["kl_over_delta_median"] for r in rows),
        "paired_measured": sum(r["paired_measured"] for r in rows),
        "paired_resolved": sum(r["paired_resolved"] for r in rows),
        "paired_improved": sum(r["paired_improved"] for r in rows),
        "resolved_improved_fraction": run_stats.mean_over_runs(fractions),
    }


def _mean_std(stats: dict[str, Any]) -> str:
    if not math.isfinite(stats["mean"]):
        return "n/a"
    return f"{stats['mean']:.0f} ± {stats['std']:.0f}" if math.isfinite(stats["std"]) else f"{stats['mean']:.0f}"


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.0%}" if x == 0 or x >= 0.01 else f"{x:.1%}"


def write(groups: Groups, skipped: list[tuple[Run, str]], out: Path, args: argparse.Namespace,
          prior: dict[tuple[str, str], list[dict[str, Any]]] | None = None) -> str:
    """Write ``runs.csv``, ``final_scores.md`` and ``final_scores.json`` into ``out``; return the Markdown.
    ``prior``: a record's rows (:func:`read_runs_csvs`) to keep ahead of the new runs' (then the tables are read
    back from the written ``runs.csv``, so that they equal a rebuild from it); ValueError, before anything is
    written, when a new (task, variant) is already among them."""
    new = {(task, variant): [run_record(r, variant, args.final_window) for r in runs]
           for task, variants in groups.items() for variant, runs in variants.items()}
    if prior and (both := [f"{t} / {v}" for t, v in new if (t, v) in prior]):
        raise ValueError(f"new runs of {', '.join(both)} are already in the runs.csv: give them a sweep of their own "
                         "and label, or rebuild the record from all of its sweep folders")
    rows_by_group = {**(prior or {}), **new}
    with open(out / "runs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for rows in rows_by_group.values():
            writer.writerows(sorted(rows, key=lambda r: (r["seed"] is None, r["seed"])))
    if prior:
        rows_by_group = read_runs_csv(out / "runs.csv")
    return write_tables(rows_by_group, skipped, out, args)


#: the ``runs.csv`` columns that hold integers; every other column but the strings holds a float
_INT_COLUMNS = ("seed", "env_steps", "updates", "eval_episodes", "collapses", "paired_measured", "paired_resolved",
                "paired_improved")
_STR_COLUMNS = ("task", "variant", "run", "git_commit", "peer")


def _natural_key(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def read_runs_csv(path: Path) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """A study's ``runs.csv`` back as the :func:`run_record` rows of each (task, variant), in the order the report
    read them: groups as first seen in the file, runs in the natural order of their folders (``runs.csv`` lists
    them by seed). An empty cell is None. Raises ValueError when a column is missing."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or []) and c not in OPTIONAL_COLUMNS]
        if missing:
            raise ValueError(f"{path}: not a runs.csv of this report (missing columns: {', '.join(missing)})")
        table = list(reader)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for raw in table:
        row: dict[str, Any] = {}
        for c in COLUMNS:
            v = raw.get(c, "")
            row[c] = None if v == "" else v if c in _STR_COLUMNS else int(v) if c in _INT_COLUMNS else float(v)
        groups.setdefault((row["task"], row["variant"]), []).append(row)
    return {k: sorted(rows, key=lambda r: _natural_key(r["run"] or "")) for k, rows in groups.items()}


def read_runs_csvs(paths: Sequence[Path]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """:func:`read_runs_csv` of several studies' ``runs.csv`` as one (e.g. our runs of one study beside the peer's of
    another); ValueError when two of them hold the same (task, variant)."""
    merged: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for path in paths:
        for key, rows in read_runs_csv(path).items():
            if key in merged:
                raise ValueError(f"{path}: {key[0]} / {key[1]} is also in an earlier runs.csv")
            merged[key] = rows
    return merged


def write_tables(rows_by_group: dict[tuple[str, str], list[dict[str, Any]]], skipped: list[tuple[Run, str]],
                 out: Path, args: argparse.Namespace) -> str:
    """Write ``final_scores.md`` and ``final_scores.json`` into ``out`` from the ``runs.csv`` rows; return the Markdown."""
    table = comparison_table(rows_by_group)
    boot = Bootstrap(args.resamples, args.confidence, args.seed)
    diff_records = difference_records(table, args.reference, boot) if args.reference else []  # ValueError before any file
    peers = peer_records(table, boot)
    records = [variant_record(task, variant, rows, args) for (task, variant), rows in rows_by_group.items()]
    pct = f"{args.confidence:.0%}"
    scores = markdown_table(
        ["task", "variant", "runs", f"eval: IQM [{pct} CI]", "eval: mean ± std", "eval: per seed",
         f"train: IQM [{pct} CI]", "train: mean ± std"],
        [(r["task"], r["variant"] + (" (peer)" if r["peer"] else ""), len(r["seeds"]),
          format_ci(r["eval_final"]["iqm"], *r["eval_final"]["iqm_ci"], digits=0), _mean_std(r["eval_final"]),
          ", ".join(f"{v:.0f}" for v in r["eval_final"]["per_seed"]),
          format_ci(r["train_final"]["iqm"], *r["train_final"]["iqm_ci"], digits=0), _mean_std(r["train_final"]))
         for r in records])
    steps = markdown_table(
        ["task", "variant", "collapses", "improved / resolved (paired)", "measured", "violation", "full step violates",
         "line search acts", "rejects", "accepted", "median KL/δ"],
        [(r["task"], r["variant"], "n/a" if r["collapses"] is None else r["collapses"],
          f"{r['paired_improved']}/{r['paired_resolved']} ({_pct(r['resolved_improved_fraction'])})" if r["paired_resolved"] else "n/a",
          r["paired_measured"], _pct(r["violation_rate"]), _pct(r["full_step_violation_rate"]), _pct(r["line_search_acted"]),
          _pct(r["line_search_rejected"]), _pct(r["accepted_rate"]),
          f"{r['kl_over_delta_median']:.2f}" if math.isfinite(r["kl_over_delta_median"]) else "n/a")
         for r in records])
    text = (
        "# Final scores\n\n"
        "**eval**: the deterministic evaluation of each run's final policy (mean return over its episodes). "
        f"**train**: the training return averaged over each run's last {args.final_window} updates. "
        f"IQM: interquartile mean over seeds with a {pct} percentile-bootstrap CI over seeds ({args.resamples} "
        f"resamples, seed {args.seed}); mean ± std over seeds (ddof = 1). *(peer)*: another library's runs under "
        "the lab's protocol.\n\n" + scores
        + (f"\n\n## Against the peer\n\n{peer_table(peers, boot)}" if peers else "")
        + (f"\n\n## Differences between variants\n\n{differences_table(diff_records, args.reference, boot)}"
           if args.reference else "")
        + (f"\n\n{across}" if (across := across_tasks.section(table, boot, out / across_tasks.PROFILE_FIGURE)) else "\n")
        + "\n\n## Step statistics\n\nShares of the updates that formed a step, per run, averaged over seeds; "
        "counts summed over seeds; *median KL/δ*: the median over seeds of each run's median. "
        "*improved / resolved*: updates whose paired old-vs-new evaluation resolved a change (|mean| > 2·SE) "
        "and, of those, the ones that improved (counts summed; the percentage: each run's improved / resolved, "
        "averaged over the runs with a resolved update). *violation*: the step taken broke the KL constraint; *full step "
        "violates*: the full KL-scaled step, before any line search, did (counterfactual for a fixed step); *line search acts*: the step taken is shorter than the "
        "full step; *rejects*: no candidate accepted (old parameters kept).\n\n" + steps
        + sources_and_skipped(args.sweep_dirs, skipped)
    )
    (out / "final_scores.md").write_text(text, encoding="utf-8")
    (out / "final_scores.json").write_text(json.dumps({
        "final_window": args.final_window, "confidence": args.confidence, "resamples": args.resamples,
        "seed": args.seed, "records": records, "reference": args.reference, "differences": diff_records,
        "against_peer": peers, "skipped": skipped_json(skipped),
    }, indent=2) + "\n", encoding="utf-8")
    return text


def label_keys(rows_by_group: dict[tuple[str, str], Any]) -> list[str]:
    """The override keys a record's variant labels name (``algo=trpo, seed=0`` → ``algo``, ``seed``; a peer's name or
    ``all runs`` names none), in order of first appearance."""
    keys = [part.split("=", 1)[0] for _, variant in rows_by_group for part in variant.split(", ") if "=" in part]
    return list(dict.fromkeys(keys))


def check_reference(rows_by_group: dict[tuple[str, str], Any], reference: str | None) -> None:
    """ValueError (naming the task) unless ``reference`` names exactly one variant of every task."""
    if reference is None:
        return
    for task, variants in comparison_table(rows_by_group).items():
        try:
            find_reference(list(variants), reference)
        except ValueError as e:
            raise ValueError(f"--reference: {task}: {e}") from None


def comparison_table(rows_by_group: dict[tuple[str, str], list[dict[str, Any]]]) -> Table:
    """``{task: {variant: rows}}`` in the report's order, for :mod:`~trpo_lab.reports.comparisons`."""
    table: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for (task, variant), rows in rows_by_group.items():
        table.setdefault(task, {})[variant] = rows
    return table


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tables = [d for d in args.sweep_dirs if d.suffix == ".csv"]
    if missing := [str(t) for t in tables if not t.is_file()]:
        print(f"error: no such runs.csv: {', '.join(missing)}", file=sys.stderr)
        return 2
    prior = None
    if tables:
        try:
            prior = read_runs_csvs(tables)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    if tables and len(tables) == len(args.sweep_dirs):
        rows_by_group = prior
        out = args.out or tables[0].parent
        try:
            check_reference(rows_by_group, args.reference)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        out.mkdir(parents=True, exist_ok=True)
        print(write_tables(rows_by_group, [], out, args))
        print(f"wrote {out / 'final_scores.md'}, {out / 'final_scores.json'}")
        return 0

    def _write(groups: Groups, skipped: list[tuple[Run, str]], out: Path) -> None:
        try:
            check_reference({**(prior or {}), **{(t, v): [] for t, vs in groups.items() for v in vs}}, args.reference)
            text = write(groups, skipped, out, args, prior)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        print(text)
        print(f"wrote {out / 'runs.csv'}, {out / 'final_scores.md'}, {out / 'final_scores.json'}")

    sweeps = argparse.Namespace(**{**vars(args), "sweep_dirs": [d for d in args.sweep_dirs if d not in tables],
                                   "out": args.out or (tables[0].parent if tables else None)})
    try:
        return run_report(sweeps, _write, label_keys(prior or {}))
    except SystemExit as e:  # _write's one-line refusals
        return int(e.code or 0)


if __name__ == "__main__":
    sys.exit(main())
