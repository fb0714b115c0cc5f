"""Tables of the step-statistics study from its sweep folder.

    python experiments/step_statistics/summarize.py studies/step_statistics experiments/step_statistics

Writes runs.csv (one row per finished run) and table.md (per variant, with percentile-bootstrap 95 % CIs
from scipy.stats.bootstrap over the variant's measured updates, pooled across its seeds).

Each run's statistics (paired counts, medians, line-search rates) are those of trpo_lab.reports.run_stats: over
the updates that formed a step, nulls left out; across runs a median is the median of the per-run medians. The
table's resolved improved fraction and resolved share are, as the study designed them, pooled over the measured
updates of all seeds with a CI over updates; step_behavior.md gives the same fraction as a mean over runs.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import bootstrap

from trpo_lab.reports import run_stats

VARIANTS = ["npg_a0.1", "npg_a0.7", "trpo_no_ls", "trpo", "trpo_undamped"]


def load(run: Path) -> dict | None:
    summary_path = run / "summary.json"
    if not summary_path.exists():
        return None
    summary = json.loads(summary_path.read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    formed = [r for r, f in zip(rows, run_stats.formed(rows)) if f]
    measured = [r for r in formed if r.get("paired/outcome") is not None]
    outcomes = [int(r["paired/outcome"]) for r in measured]
    resolved = [o for o in outcomes if o != 0]
    paired = run_stats.paired_counts(rows) or run_stats.PairedCounts(0, 0, 0, 0)
    evals = [r["eval/return_mean"] for r in rows if r.get("eval/return_mean") is not None]
    split = summary["time_split_s"]
    delta = 0.01
    return {
        "variant": summary["meta"]["choices"]["experiment/step_variant"],
        "seed": int(yaml.safe_load((run / "config.yaml").read_text())["seed"]),
        "run": run.name,
        "env_steps": summary["env_steps"],
        "updates": summary["updates"],
        "final_eval_return": evals[-1] if evals else float("nan"),
        "measured_updates": paired.measured,
        "resolved_updates": paired.resolved,
        "resolved_share": paired.resolved_share.value,
        "improved": paired.improved,
        "worsened": paired.worsened,
        "resolved_improved_fraction": paired.improved_fraction.value,
        "damping_share_median": run_stats.median_of(rows, "natural/damping_share"),
        "kl_over_delta_median": run_stats.kl_over_delta_median(rows),
        "kl_predicted_over_delta_median": run_stats.median_of(rows, "step/kl_predicted") / delta,
        "first_update_normalizer_kl": rows[0]["normalizer/kl_shift"],
        "first_update_normalizer_kl_max": rows[0]["normalizer/kl_shift_max"],
        "line_search_act_rate": run_stats.line_search_acted(rows).value,
        "line_search_reject_rate": run_stats.line_search_rejected(rows).value,
        "paired_s": split["paired"],
        "wall_s": summary["wall_s"],
        "paired_overhead": split["paired"] / (summary["wall_s"] - split["paired"]),
        "paired_se_median": run_stats.median_of(rows, "paired/improvement_se"),
        "independent_se_median": run_stats.median_of(rows, "paired/independent_se"),
        "_resolved": resolved,
        "_outcomes": outcomes,
    }


def ci(values: list[float]) -> str:
    x = np.asarray(values, float)
    if x.size < 2:
        return "n/a"
    if np.all(x == x[0]):
        return f"[{x[0]:.2f}, {x[0]:.2f}]"
    res = bootstrap((x,), np.mean, confidence_level=0.95, method="percentile", n_resamples=10_000, random_state=0)
    return f"[{res.confidence_interval.low:.2f}, {res.confidence_interval.high:.2f}]"


def main(sweep: Path, out: Path) -> None:
    runs = [r for r in (load(p) for p in sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))) if r]
    out.mkdir(parents=True, exist_ok=True)
    cols = [k for k in runs[0] if not k.startswith("_")]
    with open(out / "runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for r in runs:
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items() if k in cols})
    lines = [
        "| variant | runs | final eval return (mean ± sd) | resolved improved fraction [95 % CI] | improved / worsened / resolved / measured | resolved share [95 % CI] | median KL/δ | median ½ΔᵀFΔ/δ | damping share (median) | line search acts | first-update normaliser KL/δ | paired SE / independent SE (median) | paired-eval overhead |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in VARIANTS:
        rs = [r for r in runs if r["variant"] == v]
        if not rs:
            continue
        resolved = [int(o == 1) for r in rs for o in r["_resolved"]]
        measured = [int(o != 0) for r in rs for o in r["_outcomes"]]
        frac = float(np.mean(resolved)) if resolved else float("nan")
        ev = [r["final_eval_return"] for r in rs]
        lines.append(
            f"| {v} | {len(rs)} | {np.mean(ev):.0f} ± {np.std(ev, ddof=1) if len(ev) > 1 else 0:.0f} "
            f"| {frac:.2f} {ci(resolved)} "
            f"| {sum(r['improved'] for r in rs)} / {sum(r['worsened'] for r in rs)} / {len(resolved)} / {len(measured)} "
            f"| {np.mean(measured):.2f} {ci(measured)} "
            f"| {run_stats.median_over_runs(r['kl_over_delta_median'] for r in rs):.2f} "
            f"| {run_stats.median_over_runs(r['kl_predicted_over_delta_median'] for r in rs):.2f} "
            f"| {run_stats.median_over_runs(r['damping_share_median'] for r in rs):.2f} "
            f"| {run_stats.mean_over_runs(r['line_search_act_rate'] for r in rs):.3f} "
            f"| {np.mean([r['first_update_normalizer_kl'] for r in rs]) / 0.01:.4f} "
            f"| {run_stats.median_over_runs(r['paired_se_median'] for r in rs):.1f} "
            f"/ {run_stats.median_over_runs(r['independent_se_median'] for r in rs):.1f} "
            f"| {np.mean([r['paired_overhead'] for r in rs]):.0%} |"
        )
    missing = [f"{v} seed {s}" for s in range(3) for v in VARIANTS
               if not any(r["variant"] == v and r["seed"] == s for r in runs)]
    lines.append("")
    lines.append(f"Runs finished: {len(runs)} of 15." + (f" Missing: {', '.join(missing)}." if missing else ""))
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
