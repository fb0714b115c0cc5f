"""The TRPO paper's Figure 4 claims, judged from this study's runs.csv (written by trpo_lab.reports.final_scores).

    python experiments/paper_curves/verdicts.py experiments/paper_curves/runs.csv > experiments/paper_curves/verdicts.md

For each task: every variant's final scores; the best NPG α (highest IQM of the final deterministic evaluation;
picked after the fact, which favours NPG); and for each claim the difference of mean final scores between
two variants with a 95 % percentile-bootstrap CI, **paired by seed** (every variant ran seeds 0–4 from the same
initial conditions: the mean of the per-seed differences, the seed pairs resampled; trpo_lab.reports.comparisons,
10 000 resamples, seed 0). A claim holds where the CI excludes 0 in its direction; "not resolved" where the CI
covers 0.

1. TRPO beats the best fixed-step natural gradient: mean(trpo) − mean(best npg) > 0.
2. Without the line search, catastrophic drops are more frequent: collapses per run (a training-return
   drop of more than half the best return so far), trpo_no_ls − trpo > 0.

Per-run statistics across seeds follow trpo_lab.reports.run_stats: collapses per run is the mean over runs,
median KL/δ the median over runs of each run's median.
3. Max KL and the empirical Fisher do about as well as the defaults: mean(variant) − mean(trpo), judged
   "about as well" when the CI lies within ±20 % of TRPO's mean.
"""
from __future__ import annotations

import csv
import sys
from collections import defaultdict

import numpy as np
from scipy.stats import trim_mean

from trpo_lab.reports import run_stats
from trpo_lab.reports.markdown import format_ci
from trpo_lab.reports.comparisons import compare

PREFIX = "experiment/paper_variant="


def fmt(d: tuple[float, float, float], digits: int = 0) -> str:
    return format_ci(*d, digits=digits, signed=True)


def diff_ci(a: list[dict], b: list[dict], key: str) -> tuple[float, float, float]:
    """mean(a − b) over the seeds both ran, paired by seed (unpaired if they share fewer than two seeds)."""
    return compare(a, b, key).difference


def main(path: str) -> None:
    runs: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            runs[r["task"]][r["variant"].removeprefix(PREFIX)].append(r)
    col = lambda rows, k: [float(r[k]) for r in rows]
    print("# Figure 4's claims, judged\n")
    print("Differences with 95 % percentile-bootstrap CIs, **paired by seed** (mean over seeds of the per-seed "
          "difference, the seed pairs resampled; identical runs give +0 [+0, +0]) (`verdicts.py`). "
          "`eval`: deterministic evaluation of the final policy over 10 episodes; `train`: training return of the "
          "last 10 updates; `collapses`: training-return drops of more than half the best return so far, per run.\n")
    for task, variants in sorted(runs.items()):
        npg = {v: rows for v, rows in variants.items() if v.startswith("npg_a")}
        if "trpo" not in variants or not npg:
            continue
        best = max(npg, key=lambda v: trim_mean(col(npg[v], "eval_final"), 0.25))
        print(f"## {task}\n")
        print("| variant | runs | eval IQM | eval mean | train mean | collapses per run | median KL/δ |")
        print("|---|---|---|---|---|---|---|")
        for v, rows in variants.items():
            mark = " (best NPG α)" if v == best else ""
            print(f"| {v}{mark} | {len(rows)} | {trim_mean(col(rows, 'eval_final'), 0.25):.0f} | {np.mean(col(rows, 'eval_final')):.0f} "
                  f"| {np.mean(col(rows, 'train_final')):.0f} | {run_stats.mean_over_runs(col(rows, 'collapses')):.2f} "
                  f"| {run_stats.median_over_runs(col(rows, 'kl_over_delta_median')):.2f} |")
        t = variants["trpo"]
        print("\n| claim | comparison | eval: Δmean [95 % CI] | train: Δmean [95 % CI] | verdict |")
        print("|---|---|---|---|---|")
        d_eval, d_train = diff_ci(t, npg[best], "eval_final"), diff_ci(t, npg[best], "train_final")
        verdict = "holds" if d_eval[1] > 0 else "reversed" if d_eval[2] < 0 else "not resolved"
        print(f"| 1. TRPO beats the best fixed-step NPG | trpo − {best} | {fmt(d_eval)} | {fmt(d_train)} | {verdict} (eval) |")
        if "trpo_no_ls" in variants:
            n = variants["trpo_no_ls"]
            d_col = diff_ci(n, t, "collapses")
            identical = all(a["eval_final"] == b["eval_final"] and a["train_final"] == b["train_final"]
                            for a, b in zip(sorted(n, key=lambda r: r["seed"]), sorted(t, key=lambda r: r["seed"])))
            verdict = ("untestable here: the two variants' runs are identical (the line search never acted)" if identical
                       else "holds" if d_col[1] > 0 else "reversed" if d_col[2] < 0 else "not resolved")
            print(f"| 2. more catastrophic drops without the line search | trpo_no_ls − trpo | "
                  f"{fmt(diff_ci(n, t, 'eval_final'))} | {fmt(diff_ci(n, t, 'train_final'))} "
                  f"| collapses per run {fmt(d_col, 2)}: {verdict} |")
        for v in ("trpo_max_kl", "trpo_empirical_fisher"):
            if v in variants:
                d = diff_ci(variants[v], t, "eval_final")
                dt = diff_ci(variants[v], t, "train_final")
                band = 0.2 * abs(np.mean(col(t, "eval_final")))
                verdict = ("about as well (CI within ±20 % of TRPO)" if -band <= d[1] and d[2] <= band
                           else "worse" if d[2] < 0 else "better" if d[1] > 0 else "not resolved (CI wider than ±20 %, covers 0)")
                print(f"| 3. {v} ≈ trpo | {v} − trpo | {fmt(d)} | {fmt(dt)} | {verdict} |")
        print()


if __name__ == "__main__":
    main(sys.argv[1])
