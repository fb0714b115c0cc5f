"""A study's record of final scores: one row per run (``runs.csv``) and one per task and variant
(``final_scores.md`` and ``.json``).

    python -m trpo_lab.reports.final_scores SWEEP_DIR [MORE_DIRS ...] --out experiments/NAME
    (the same: python scripts/final_scores.py ..., or the console script trpo-final-scores)

The protocol, per run:

- ``eval_final``: the deterministic evaluation of the final policy, the mean return over its episodes
  (``summary.json``'s ``final_eval``; a study sets ``eval.episodes=10``). NaN if the run never evaluated.
- ``train_final``: the training return (``return/mean``) averaged over the last ``--final-window`` updates.

and the run's step statistics, each a share of its updates unless said otherwise:

- ``collapses``: updates after which the training return fell by more than ``collapse_share`` of the best
  return so far (a count); ``worst_drop``: the largest such drop.
- ``violation_rate``: the accepted step broke the constraint (its KL statistic > δ); ``accepted_rate``: a
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
tasks are not on one scale); mean ± std (ddof = 1) and the per-seed values; and the step statistics
summed or averaged over seeds. Every table can be rebuilt from ``runs.csv``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from trpo_lab.reports.common import base_parser, run_report, skipped_json
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
    "paired_measured", "paired_resolved", "paired_improved",
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = base_parser(
        "Per-run CSV and a per-task, per-variant table of the final scores (deterministic evaluation of the final "
        "policy; training return of the last updates) with IQM and percentile-bootstrap CIs over seeds."
    )
    p.add_argument("--final-window", type=int, default=10, help="updates averaged for train_final (default: 10)")
    return p.parse_args(argv)


def _share(run: Run, key: str, predicate) -> float:
    """The share of updates whose ``key`` satisfies ``predicate`` (NaN if no update logged it)."""
    col = run.column(key)
    col = col[np.isfinite(col)]
    return float(np.mean(predicate(col))) if col.size else math.nan


def _median(run: Run, key: str) -> float:
    col = run.column(key)
    col = col[np.isfinite(col)]
    return float(np.median(col)) if col.size else math.nan


def run_record(run: Run, variant: str, final_window: int) -> dict[str, Any]:
    """One ``runs.csv`` row (see the module docstring for each column)."""
    summary = run.summary or {}
    final_eval = summary.get("final_eval") or {}
    outcomes = run.column("paired/outcome")
    outcomes = outcomes[np.isfinite(outcomes)]
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
        "collapses": summary.get("collapses"),
        "worst_drop": summary.get("worst_drop"),
        "violation_rate": _share(run, "step/constraint_violated", lambda c: c > 0),
        "accepted_rate": _share(run, "line_search/accepted", lambda c: c > 0),
        "full_step_violation_rate": _share(run, "full_step/constraint_violated", lambda c: c > 0),
        "line_search_acted": _share(run, "step/fraction", lambda c: c < 1),
        "line_search_rejected": _share(run, "line_search/accepted", lambda c: c == 0),
        "kl_over_delta_median": _median(run, "step/kl_over_delta"),
        "paired_measured": int(outcomes.size),
        "paired_resolved": int(np.sum(outcomes != 0)),
        "paired_improved": int(np.sum(outcomes > 0)),
    }


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
    pooled over its runs (counts summed, shares averaged over runs)."""
    mean_of = lambda k: float(np.nanmean([r[k] for r in rows])) if any(math.isfinite(r[k]) for r in rows) else math.nan
    resolved = sum(r["paired_resolved"] for r in rows)
    improved = sum(r["paired_improved"] for r in rows)
    return {
        "task": task, "variant": variant, "seeds": [r["seed"] for r in rows],
        "eval_final": _score_stats([r["eval_final"] for r in rows], args),
        "train_final": _score_stats([r["train_final"] for r in rows], args),
        "collapses": int(sum(r["collapses"] or 0 for r in rows)),
        **{k: mean_of(k) for k in ("violation_rate", "accepted_rate", "full_step_violation_rate", "line_search_acted",
                                   "line_search_rejected", "kl_over_delta_median")},
        "paired_measured": sum(r["paired_measured"] for r in rows),
        "paired_resolved": resolved,
        "paired_improved": improved,
        "resolved_improved_fraction": improved / resolved if resolved else math.nan,
    }


def _mean_std(stats: dict[str, Any]) -> str:
    if not math.isfinite(stats["mean"]):
        return "n/a"
    return f"{stats['mean']:.0f} ± {stats['std']:.0f}" if math.isfinite(stats["std"]) else f"{stats['mean']:.0f}"


def _pct(x: float) -> str:
    return "n/a" if not math.isfinite(x) else f"{x:.0%}" if x == 0 or x >= 0.01 else f"{x:.1%}"


def write(groups: Groups, skipped: list[tuple[Run, str]], out: Path, args: argparse.Namespace) -> str:
    """Write ``runs.csv``, ``final_scores.md`` and ``final_scores.json`` into ``out``; return the Markdown."""
    rows_by_group = {(task, variant): [run_record(r, variant, args.final_window) for r in runs]
                     for task, variants in groups.items() for variant, runs in variants.items()}
    with open(out / "runs.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        for rows in rows_by_group.values():
            writer.writerows(sorted(rows, key=lambda r: (r["seed"] is None, r["seed"])))
    records = [variant_record(task, variant, rows, args) for (task, variant), rows in rows_by_group.items()]
    pct = f"{args.confidence:.0%}"
    scores = markdown_table(
        ["task", "variant", "runs", f"eval: IQM [{pct} CI]", "eval: mean ± std", "eval: per seed",
         f"train: IQM [{pct} CI]", "train: mean ± std"],
        [(r["task"], r["variant"], len(r["seeds"]),
          format_ci(r["eval_final"]["iqm"], *r["eval_final"]["iqm_ci"], digits=0), _mean_std(r["eval_final"]),
          ", ".join(f"{v:.0f}" for v in r["eval_final"]["per_seed"]),
          format_ci(r["train_final"]["iqm"], *r["train_final"]["iqm_ci"], digits=0), _mean_std(r["train_final"]))
         for r in records])
    steps = markdown_table(
        ["task", "variant", "collapses", "improved / resolved (paired)", "measured", "violation", "full step violates",
         "line search acts", "rejects", "accepted", "median KL/δ"],
        [(r["task"], r["variant"], r["collapses"],
          f"{r['paired_improved']}/{r['paired_resolved']} ({_pct(r['resolved_improved_fraction'])})" if r["paired_resolved"] else "n/a",
          r["paired_measured"], _pct(r["violation_rate"]), _pct(r["full_step_violation_rate"]), _pct(r["line_search_acted"]),
          _pct(r["line_search_rejected"]), _pct(r["accepted_rate"]), f"{r['kl_over_delta_median']:.2f}")
         for r in records])
    text = (
        "# Final scores\n\n"
        "**eval**: the deterministic evaluation of each run's final policy (mean return over its episodes). "
        f"**train**: the training return averaged over each run's last {args.final_window} updates. "
        f"IQM: interquartile mean over seeds with a {pct} percentile-bootstrap CI over seeds ({args.resamples} "
        f"resamples, seed {args.seed}); mean ± std over seeds (ddof = 1).\n\n" + scores
        + "\n\n## Step statistics\n\nShares of updates, averaged over seeds; counts summed over seeds. "
        "*improved / resolved*: updates whose paired old-vs-new evaluation resolved a change (|mean| > 2·SE) "
        "and, of those, the ones that improved. *violation*: the step taken broke the KL constraint; *full step "
        "violates*: the full KL-scaled step, before any line search, did (counterfactual for a fixed step); *line search acts*: the step taken is shorter than the "
        "full step; *rejects*: no candidate accepted (old parameters kept).\n\n" + steps
        + sources_and_skipped(args.sweep_dirs, skipped)
    )
    (out / "final_scores.md").write_text(text, encoding="utf-8")
    (out / "final_scores.json").write_text(json.dumps({
        "final_window": args.final_window, "confidence": args.confidence, "resamples": args.resamples,
        "seed": args.seed, "records": records, "skipped": skipped_json(skipped),
    }, indent=2) + "\n", encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def _write(groups: Groups, skipped: list[tuple[Run, str]], out: Path) -> None:
        print(write(groups, skipped, out, args))
        print(f"wrote {out / 'runs.csv'}, {out / 'final_scores.md'}, {out / 'final_scores.json'}")

    return run_report(args, _write)


if __name__ == "__main__":
    sys.exit(main())
