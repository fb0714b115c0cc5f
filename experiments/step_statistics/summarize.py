"""Tables of the step-statistics study (issue 12) from its sweep folder.

    python experiments/step_statistics/summarize.py /work/studies/step_statistics experiments/step_statistics

Writes runs.csv (one row per finished run) and table.md (per variant, with percentile-bootstrap 95 % CIs
from scipy.stats.bootstrap over the variant's measured updates, pooled across its seeds).
"""
from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import yaml
from scipy.stats import bootstrap

VARIANTS = ["npg_a0.1", "npg_a0.7", "trpo_no_ls", "trpo", "trpo_undamped"]


def load(run: Path) -> dict | None:
    summary_path = run / "summary.json"
    if not summary_path.exists():
        return None
    summary = json.loads(summary_path.read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    measured = [r for r in rows if r.get("paired/outcome") is not None]
    outcomes = [int(r["paired/outcome"]) for r in measured]
    resolved = [o for o in outcomes if o != 0]
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
        "measured_updates": len(measured),
        "resolved_updates": len(resolved),
        "resolved_share": len(resolved) / len(measured) if measured else float("nan"),
        "improved": sum(o == 1 for o in resolved),
        "worsened": sum(o == -1 for o in resolved),
        "resolved_improved_fraction": sum(o == 1 for o in resolved) / len(resolved) if resolved else float("nan"),
        "damping_share_median": statistics.median(r["natural/damping_share"] for r in rows),
        "kl_over_delta_median": statistics.median(r["step/kl_over_delta"] for r in rows),
        "kl_predicted_over_delta_median": statistics.median(r["step/kl_predicted"] / delta for r in rows),
        "first_update_normalizer_kl": rows[0]["normalizer/kl_shift"],
        "first_update_normalizer_kl_max": rows[0]["normalizer/kl_shift_max"],
        "line_search_act_rate": float(np.mean([r["step/fraction"] < 1 for r in rows])),
        "line_search_reject_rate": float(np.mean([r["line_search/accepted"] == 0 for r in rows])),
        "paired_s": split["paired"],
        "wall_s": summary["wall_s"],
        "paired_overhead": split["paired"] / (summary["wall_s"] - split["paired"]),
        "paired_se_median": statistics.median(r["paired/improvement_se"] for r in measured) if measured else float("nan"),
        "independent_se_median": statistics.median(r["paired/independent_se"] for r in measured) if measured else float("nan"),
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
            f"| {np.median([r['kl_over_delta_median'] for r in rs]):.2f} "
            f"| {np.median([r['kl_predicted_over_delta_median'] for r in rs]):.2f} "
            f"| {np.median([r['damping_share_median'] for r in rs]):.2f} "
            f"| {np.mean([r['line_search_act_rate'] for r in rs]):.3f} "
            f"| {np.mean([r['first_update_normalizer_kl'] for r in rs]) / 0.01:.4f} "
            f"| {np.median([r['paired_se_median'] for r in rs]):.1f} / {np.median([r['independent_se_median'] for r in rs]):.1f} "
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
