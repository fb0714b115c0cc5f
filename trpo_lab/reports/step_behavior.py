"""NPG-vs-TRPO step-behaviour report: what the steps did, update by update, per variant.

    python -m trpo_lab.reports.step_behavior multirun/2026-01-01/12-00-00 [MORE_DIRS ...] --out experiments/my_study
    (the same: python scripts/step_behavior.py ..., or the console script with entry point
    trpo_lab.reports.step_behavior:main)

Reads every run folder below the given folders (variants and tasks as in :mod:`trpo_lab.reports.curves`)
and writes into ``--out``, per task, ``step_behavior_<task>.png`` (:mod:`trpo_lab.reports.step_behavior_figure`)
and one ``step_behavior.md`` / ``step_behavior.json`` for all tasks:

- the paired evaluation (the honest measure of whether an update improved the stochastic policy): per
  variant the *resolved improved fraction* (improved / resolved updates, ``paired/outcome``), mean over
  runs with a bootstrap CI over runs, and how many updates were measured and resolved. Runs written
  before these keys existed say "not measured";
- per-update distributions: KL/δ of the step taken (``step/kl_over_delta``); KL/δ of the full KL-scaled step
  on the same batch (``full_step/kl_mean`` / δ, the counterfactual); actual / expected surrogate improvement;
  the damping share of the curvature (``natural/damping_share``) and the KL of each normaliser update
  (``normalizer/kl_shift``) where logged; the training-return deltas (``return/delta``, the change of a proxy,
  the mean of the last M finished episodes, that mixes in earlier policies' episodes). Each as the median over runs of each run's 5 %, 50 % and 95 % quantile,
  so that the middle number is the median of per-run medians;
- per-run rates (:mod:`trpo_lab.reports.run_stats`), then their mean over seeds with a percentile-bootstrap CI.

Every statistic is over the formed updates (``step/skipped`` ≠ 1; skipped updates are counted on their own)
and leaves out undefined (null) values, as :mod:`trpo_lab.reports.run_stats` defines. It also lists runs of
different variants with the same task and seed whose return sequences are identical: TRPO and TRPO without
line search coincide whenever the line search never shrinks a step. Incomplete runs are skipped and listed.
Statistics: :mod:`trpo_lab.stats`.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trpo_lab.reports import run_stats
from trpo_lab.reports.common import base_parser, run_report, skipped_json
from trpo_lab.reports.markdown import format_ci, markdown_table, skipped_report
from trpo_lab.reports.step_behavior_figure import draw_task, slug, step_values
from trpo_lab.runs import Groups, Run, display_path, labels_by_path
from trpo_lab.stats import mean_ci

#: per-run rates of :func:`step_rates` (defined in :mod:`trpo_lab.reports.run_stats`), in report order,
#: with their Markdown headings
STEP_RATES = {
    "violation_rate": "constraint violated",
    "line_search_rejected": "rejected (no candidate accepted)",
    "line_search_acted": "line search changed the step (fraction < 1)",
    "full_step_violation_rate": "full step would violate",
    "mean_backtracks": "backtracks per update",
    "surrogate_not_raised_rate": "actual surrogate ≤ 0",
    "return_rose_rate": "training return rose (proxy)",
    "collapses": "collapses",
}
#: per-update distributions: key → (column heading, digits); "not measured" where no run logged it
DISTRIBUTIONS = {
    "step/kl_over_delta": ("KL/δ (step taken)", 2),
    "full_step/kl_over_delta": ("full-step KL/δ", 2),
    "step/improvement_ratio": ("actual/expected surrogate", 2),
    "natural/damping_share": ("damping share λ‖x‖²/xᵀ(F+λI)x", 2),
    "normalizer/kl_shift": ("normaliser KL shift", 4),
    "return/delta": ("return Δ per update (proxy)", 1),
}
NOT_MEASURED = "not measured"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return base_parser(
        "Step-behaviour report (paired improvement, KL/δ, violations, line search, full-step counterfactual, "
        "return deltas) for the runs below SWEEP_DIR(s)."
    ).parse_args(argv)


def step_rates(run: Run) -> dict[str, float]:
    """One run's :data:`STEP_RATES` (each defined in :mod:`trpo_lab.reports.run_stats`)."""
    rows = run.rows
    rates = {k: run_stats.SHARES[k](rows).value for k in STEP_RATES if k in run_stats.SHARES}
    rates["mean_backtracks"] = run_stats.mean_of(rows, "line_search/backtracks")
    rates["collapses"] = run_stats.collapses(rows, run.summary)
    return {k: rates[k] for k in STEP_RATES}


def paired_record(runs: Sequence[Run], args: argparse.Namespace) -> dict[str, Any]:
    """Per variant: the resolved improved fraction and the resolved share (each a mean over the runs where it is
    defined, bootstrap CI over runs) and the counts summed over runs."""
    measured = [(r, c) for r, c in ((r, run_stats.paired_counts(r.rows)) for r in runs) if c is not None]
    counts = [c for _, c in measured]
    if not counts:
        return {"measured_runs": 0}
    fractions = [c.improved_fraction.value for c in counts]
    shares = [c.resolved_share.value for c in counts]
    m, lo, hi = mean_ci(fractions, args.resamples, args.confidence, args.seed)
    total = {k: int(sum(getattr(c, k) for c in counts)) for k in ("measured", "resolved", "improved", "worsened")}
    return {
        "measured_runs": len(counts),
        "runs_with_resolved": run_stats.defined_runs(fractions),
        "improved_fraction": {"mean": m, "ci": [lo, hi], "per_run": fractions},
        "resolved_share": {"mean": run_stats.mean_over_runs(shares), "per_run": shares},
        "updates": int(sum(len(r.rows) for r, _ in measured)),
        **total,
    }


def quantiles(runs: Sequence[Run], key: str, qs: tuple[float, ...] = (0.05, 0.5, 0.95)) -> list[float] | None:
    """``[q05, median, q95]``: the median over runs of each run's quantiles of ``key``; None for no data."""
    per_run = [np.quantile(v, qs) for v in (step_values(r, key) for r in runs) if v.size]
    return [run_stats.median_over_runs(q) for q in zip(*per_run)] if per_run else None


def variant_record(runs: Sequence[Run], args: argparse.Namespace) -> dict[str, Any]:
    """The numbers of one variant on one task."""
    per_run = [step_rates(r) for r in runs]
    rates = {}
    for key in STEP_RATES:
        m, lo, hi = mean_ci([p[key] for p in per_run], args.resamples, args.confidence, args.seed)
        rates[key] = {"mean": m, "ci": [lo, hi], "per_run": [p[key] for p in per_run]}
    skipped = [run_stats.skipped_updates(r.rows) for r in runs]
    return {
        "seeds": [r.seed for r in runs],
        "updates": int(sum(len(r.rows) for r in runs) - sum(skipped)),
        "skipped_updates": int(sum(skipped)),
        "distributions": {key: quantiles(runs, key) for key in DISTRIBUTIONS},
        "paired": paired_record(runs, args),
        "rates": rates,
    }


def _q(qs: list[float] | None, digits: int = 2) -> str:
    return NOT_MEASURED if qs is None else f"{qs[1]:.{digits}f} [{qs[0]:.{digits}f}, {qs[2]:.{digits}f}]"


def _paired_row(variant: str, p: dict[str, Any]) -> tuple[Any, ...]:
    if not p["measured_runs"]:
        return (variant, NOT_MEASURED, "—", "—", "—", "—")
    frac = p["improved_fraction"]
    share = p["resolved_share"]["mean"]
    share = f"{share:.2f}" if math.isfinite(share) else "—"
    return (variant, format_ci(frac["mean"], *frac["ci"], digits=2), f"{p['resolved']} of {p['measured']}", share,
            f"{p['improved']} / {p['worsened']}", f"{p['measured_runs']} ({p['runs_with_resolved']} with a resolved update)")


def markdown(report: dict[str, Any], args: argparse.Namespace, identical: list[list[Run]],
             skipped: list[tuple[Run, str]], labels: dict[Path, str]) -> str:
    pct = f"{args.confidence:.0%}"
    out = ["# Step behaviour\n"]
    for task, variants in report.items():
        out.append(f"## {task}\n")
        out.append(f"Paired evaluation (π_old vs π_new, stochastic, common random numbers): resolved improved "
                   f"fraction = improved / resolved updates per run, mean over runs [{pct} bootstrap CI over runs]; share "
                   f"resolved = resolved / measured updates per run, mean over runs; counts summed over runs.\n")
        out.append(markdown_table(
            ["variant", "resolved improved fraction", "updates resolved (of measured)", "share resolved",
             "improved / worsened", "runs measured"],
            [_paired_row(v, rec["paired"]) for v, rec in variants.items()],
        ))
        out.append("\nPer-update distributions: each run's median [5%, 95%] quantile over its updates, median over "
                   "runs (the middle number is the median of per-run medians).\n")
        out.append(markdown_table(
            ["variant", "seeds", "updates", *(h for h, _ in DISTRIBUTIONS.values())],
            [(v, len(rec["seeds"]), rec["updates"] + rec["skipped_updates"],
              *(_q(rec["distributions"][k], d) for k, (_, d) in DISTRIBUTIONS.items()))
             for v, rec in variants.items()],
        ))
        out.append(f"\nPer-run rates, mean over seeds [{pct} bootstrap CI over seeds]:\n")
        out.append(markdown_table(
            ["variant", *STEP_RATES.values()],
            [(v, *(format_ci(rec["rates"][k]["mean"], *rec["rates"][k]["ci"],
                             digits=1 if k in ("collapses", "mean_backtracks") else 2) for k in STEP_RATES))
             for v, rec in variants.items()],
        ))
        skipped_updates = {v: rec["skipped_updates"] for v, rec in variants.items() if rec["skipped_updates"]}
        if skipped_updates:
            out.append(f"\nUpdates without a step (step/skipped = 1), left out above: {skipped_updates}.")
        out.append("")
    out.append("## Identical trajectories\n")
    if identical:
        out.append("Runs of different variants with the same task and seed and identical `return/mean` at every update:\n")
        for g in identical:
            out.append(f"- {g[0].task}, seed {g[0].seed}: " + "; ".join(f"`{labels[r.path]}` ({r.path.name})" for r in g))
    else:
        out.append("None: every variant's runs differ from the other variants' runs with the same seed.")
    out.append(
        "\n## Definitions\n\n"
        "- resolved improved fraction: `paired/outcome` per update: +1 when the paired difference of returns "
        "η(π_new) − η(π_old) exceeds 2 standard errors, −1 when it is below −2 SE, 0 (unresolved) otherwise; "
        "per run improved / (improved + worsened). `not measured`: the runs predate the paired outcome.\n"
        "- KL/δ: `step/kl_over_delta` = the constrained KL statistic of the step taken / δ (`algo.max_kl`).\n"
        "- full-step KL/δ: `full_step/kl_mean` / δ, the full KL-scaled step evaluated on the same batch whatever the "
        "variant took.\n"
        "- actual/expected surrogate: `step/improvement_ratio` = (L(θ_new) − L(θ_old)) / gᵀΔ; actual surrogate ≤ 0: "
        "share of updates whose step did not raise the surrogate (`step/surrogate_actual` ≤ 0).\n"
        "- damping share: `natural/damping_share`; normaliser KL shift: `normalizer/kl_shift`, the KL that an "
        "observation-normaliser update alone causes.\n"
        "- return Δ / training return rose: `return/delta` = R̄_{k+1} − R̄_k for update k, > 0, with R̄_k "
        "(`return/mean`) the mean raw return of the last M finished episodes after batch k (`return_window`). Left out "
        "(never a fall): where batch k+1 finished no episode (the proxy did not move: no new evidence, logged as 0), "
        "before the first finished episode, on the last update and, in runs logged before the window, where either "
        "batch finished no episode. A proxy: the window "
        "mixes several policies' episodes, each partly collected by earlier policies.\n"
        "- constraint violated: `step/constraint_violated`; rejected: `line_search/accepted` = 0; line search changed "
        "the step: `step/fraction` < 1 (shrunk or rejected); full step would violate: `full_step/constraint_violated`; "
        "collapses: `monotonic/collapses` at the run's end.\n"
        "- every rate and distribution is over the updates that formed a step (`step/skipped` ≠ 1) and leaves out "
        "updates where its key is null; a rate over seeds is the mean over the runs where it is defined "
        "(`trpo_lab.reports.run_stats`).\n"
        f"- CIs: percentile bootstrap over runs (seeds), {args.resamples} resamples, seed {args.seed}.\n"
    )
    out.append("Sources: " + ", ".join(f"`{d}`" for d in args.sweep_dirs) + "\n")
    if skipped:
        out.append(f"Skipped {len(skipped)} run(s):\n\n" + skipped_report(skipped) + "\n")
    return "\n".join(out)


def identical_trajectories(groups: Groups, key: str = "return/mean") -> list[list[Run]]:
    """Groups of ≥ 2 runs on the same task and seed, of different variants, whose ``key`` sequences are identical.

    With the same seed, TRPO and TRPO without line search follow the same trajectory for as long as
    the line search never shrinks a step; this finds where that held for a whole run.
    """
    labels = labels_by_path(groups)
    buckets: dict[tuple[str, int | None, tuple[float, ...]], list[Run]] = {}
    for task, variants in groups.items():
        for r in (r for rs in variants.values() for r in rs):
            col = tuple(np.nan_to_num(r.column(key), nan=-np.inf).tolist())
            buckets.setdefault((task, r.seed, col), []).append(r)
    return [g for g in buckets.values() if len({labels[r.path] for r in g}) > 1]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def write(groups: Groups, skipped: list[tuple[Run, str]], out: Path) -> None:
        import matplotlib.pyplot as plt

        labels = labels_by_path(groups)
        report = {task: {v: variant_record(rs, args) for v, rs in variants.items()} for task, variants in groups.items()}
        identical = identical_trajectories(groups)
        text = markdown(report, args, identical, skipped, labels)
        (out / "step_behavior.md").write_text(text, encoding="utf-8")
        (out / "step_behavior.json").write_text(json.dumps({
            "tasks": report,
            "identical_trajectories": [[{"run": display_path(r.path), "variant": labels[r.path], "seed": r.seed}
                                        for r in g] for g in identical],
            "skipped": skipped_json(skipped),
        }, indent=2) + "\n", encoding="utf-8")
        pngs = []
        for task, variants in groups.items():
            fig = draw_task(task, variants, report[task], args)
            pngs.append(out / f"step_behavior_{slug(task)}.png")
            fig.savefig(pngs[-1], dpi=110)
            plt.close(fig)
        print(text)
        print("wrote " + ", ".join(str(p) for p in [*pngs, out / "step_behavior.md", out / "step_behavior.json"]))

    return run_report(args, write)

if __name__ == "__main__":
    sys.exit(main())
