"""δ × line search × curvature: a table and a figure from this study's runs.csv (trpo_lab.reports.final_scores).

    python experiments/delta_sweep/delta_table.py experiments/delta_sweep/runs.csv experiments/delta_sweep

Writes delta_table.md and delta_sweep.png. Per δ and curvature: the final scores with and without the line
search, what the line search buys (the final deterministic evaluation, backtracking − none, **paired by seed**: both ran seeds 0–2 from
the same initial conditions, so the mean over seeds of the per-seed difference, with a 95 % percentile-bootstrap CI
resampling the seed pairs; trpo_lab.reports.comparisons, 10 000 resamples, seed 0), and how often it
acts (the step taken is shorter than the full step), rejects (keeps the old parameters) and how often the
full step violates δ at all (in the runs without a line search: what a line search would have had to catch).
Per-run statistics across seeds follow trpo_lab.reports.run_stats: a share is the mean over runs, median KL/δ
the median over runs of each run's median, collapses the sum.
"""
from __future__ import annotations

import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from trpo_lab.reports import run_stats
from trpo_lab.reports.markdown import format_ci
from trpo_lab.reports.comparisons import compare
from trpo_lab.stats import mean_ci


def parse_variant(label: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in label.split(", "))


def main(csv_path: str, out: str) -> None:
    cells: dict[tuple[float, str, str], list[dict]] = defaultdict(list)
    with open(csv_path, newline="") as f:
        for r in csv.DictReader(f):
            v = parse_variant(r["variant"])
            cells[(float(v["algo.max_kl"]), v["algo.step_rule.curvature"], v["algo/line_search"])].append(r)
    col = lambda rows, k: np.array([float(r[k]) for r in rows])
    deltas = sorted({k[0] for k in cells})
    lines = ["| δ | curvature | eval, no line search | eval, backtracking | line search buys (Δ eval, paired by seed [95 % CI]) "
             "| train, none / backtracking | full step violates δ (none / backtracking runs) | line search acts | rejects "
             "| median KL/δ taken (none / backtracking) | collapses (none / backtracking) | runs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for curvature in ("damped", "undamped"):
        for delta in deltas:
            none, bt = cells.get((delta, curvature, "none"), []), cells.get((delta, curvature, "backtracking"), [])
            if not none or not bt:
                continue
            d = compare(bt, none, "eval_final").difference
            pct = lambda x: f"{run_stats.mean_over_runs(x):.0%}"
            lines.append(
                f"| {delta:g} | {curvature} | {col(none, 'eval_final').mean():.0f} ± {col(none, 'eval_final').std(ddof=1):.0f} "
                f"| {col(bt, 'eval_final').mean():.0f} ± {col(bt, 'eval_final').std(ddof=1):.0f} | {format_ci(*d, digits=0, signed=True)} "
                f"| {col(none, 'train_final').mean():.0f} / {col(bt, 'train_final').mean():.0f} "
                f"| {pct(col(none, 'full_step_violation_rate'))} / {pct(col(bt, 'full_step_violation_rate'))} "
                f"| {pct(col(bt, 'line_search_acted'))} | {pct(col(bt, 'line_search_rejected'))} "
                f"| {run_stats.median_over_runs(col(none, 'kl_over_delta_median')):.2f} "
                f"/ {run_stats.median_over_runs(col(bt, 'kl_over_delta_median')):.2f} "
                f"| {col(none, 'collapses').sum():.0f} / {col(bt, 'collapses').sum():.0f} | {len(none)} + {len(bt)} |")
    Path(out, "delta_table.md").write_text(
        "# δ × line search × curvature (Hopper-v5, 300k env steps)\n\n"
        "eval: deterministic evaluation of the final policy over 10 episodes, mean ± std over seeds; *line search buys*: "
        "backtracking − none, paired by seed (mean over seeds 0–2 of the per-seed difference, seed pairs resampled); train: training "
        "return of the last 10 updates; shares of updates averaged over seeds; collapses summed over seeds.\n\n"
        + "\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_score, ax_rate) = plt.subplots(1, 2, figsize=(11, 3.8))
    styles = {("damped", "none"): ("C0", "--"), ("damped", "backtracking"): ("C0", "-"),
              ("undamped", "none"): ("C3", "--"), ("undamped", "backtracking"): ("C3", "-")}
    for (curvature, ls), (color, ls_style) in styles.items():
        xs, ms, los, his = [], [], [], []
        for delta in deltas:
            rows = cells.get((delta, curvature, ls))
            if rows:
                m, lo, hi = mean_ci(col(rows, "eval_final"))
                xs.append(delta), ms.append(m), los.append(lo if np.isfinite(lo) else m), his.append(hi if np.isfinite(hi) else m)
        ax_score.plot(xs, ms, color=color, ls=ls_style, marker="o", label=f"{curvature}, {ls}")
        ax_score.fill_between(xs, los, his, color=color, alpha=0.12 if ls == "none" else 0.22, lw=0)
        rate_key = "line_search_acted" if ls == "backtracking" else "full_step_violation_rate"
        rates = [(d, run_stats.mean_over_runs(col(cells[(d, curvature, ls)], rate_key))) for d in deltas
                 if (d, curvature, ls) in cells]
        if rates:
            ax_rate.plot(*zip(*rates), color=color, ls=ls_style, marker="o",
                         label=f"{curvature}: {'line search acts' if ls == 'backtracking' else 'full step violates δ (no line search)'}")
    for ax in (ax_score, ax_rate):
        ax.set_xscale("log")
        ax.set_xlabel("δ (algo.max_kl)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    ax_score.set_ylabel("final deterministic eval return")
    ax_score.set_title("final score: mean over seeds, 95% bootstrap band", fontsize=9)
    ax_rate.set_ylabel("share of updates")
    ax_rate.set_title("how often the line search has work to do", fontsize=9)
    fig.tight_layout()
    fig.savefig(Path(out, "delta_sweep.png"), dpi=130)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
