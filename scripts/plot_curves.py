"""Learning curves and a final-performance table for one or more sweeps.

    python scripts/plot_curves.py multirun/2026-01-01/12-00-00 [MORE_DIRS ...] --out experiments/my_study

Reads every run folder below the given folders, groups the runs by task (one panel per task) and by
variant (the Hydra overrides that differ across the runs, leaving out the seed and the task), and
writes into ``--out``:

- ``curves.png``: the metric (default ``return/mean``, the training return as logged) against env
  steps; the line is the mean over seeds, the band a 95% percentile bootstrap over seeds (whole
  curves resampled).
- ``final_performance.md`` and ``.json``: per task and variant, the *final return* of each seed =
  the mean of the metric over its last ``--final-window`` updates; then the interquartile mean (IQM)
  over seeds with a 95% stratified-bootstrap CI, the mean ± standard deviation (ddof = 1), the
  number of seeds and the per-seed values. Tasks are not pooled: raw returns of different tasks are
  not on one scale.

Runs that failed, did not finish (no ``summary.json``) or logged nothing are skipped and listed.

Statistics: a small numpy implementation (``trpo_lab.analysis``), not rliable. rliable 1.2.0 does
not import next to pandas 3 (its dependency arch fails), and with pandas < 3 its ``random_state``
does not make the bootstrap CIs reproducible (three calls with ``RandomState(0)`` gave three CIs),
while a table in ``experiments/`` must come out the same when re-run. IQM is
``scipy.stats.trim_mean(x, 0.25)``'s convention; the bootstrap is rliable's stratified percentile
bootstrap, seeded by ``--seed``; both are tested against independent computations.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without `pip install -e .`

from trpo_lab.analysis import (
    NoRunsError,
    Run,
    aligned_curves,
    display_path,
    bootstrap_mean_band,
    final_score,
    format_ci,
    group_runs,
    interquartile_mean,
    load_complete_runs,
    markdown_table,
    skipped_report,
    stratified_bootstrap_ci,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Return curves (mean over seeds, 95%% bootstrap band) and a final-performance table "
        "(IQM with stratified-bootstrap CIs) for the runs below SWEEP_DIR(s).",
    )
    p.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR", help="sweep or run folders (searched recursively)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: FIRST_SWEEP_DIR/analysis)")
    p.add_argument("--metric", default="return/mean", help="metrics.jsonl key to plot and score (default: return/mean)")
    p.add_argument("--final-window", type=int, default=10, help="updates averaged for a run's final score (default: 10)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default: 10000)")
    p.add_argument("--confidence", type=float, default=0.95, help="CI coverage (default: 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    return p.parse_args(argv)


def final_performance(
    groups: dict[str, dict[str, list[Run]]], metric: str, window: int, resamples: int, confidence: float, seed: int
) -> list[dict]:
    """One record per task and variant: per-seed final scores, IQM with its CI, mean and std."""
    records = []
    for task, variants in groups.items():
        for variant, runs in variants.items():
            scores = np.array([final_score(r, metric, window) for r in runs])
            scores = scores[np.isfinite(scores)]
            lo, hi = stratified_bootstrap_ci([scores], interquartile_mean, resamples, confidence, seed) if scores.size else (math.nan, math.nan)
            records.append({
                "task": task,
                "variant": variant,
                "seeds": [r.seed for r in runs],
                "n": int(scores.size),
                "final_scores": scores.tolist(),
                "iqm": interquartile_mean(scores),
                "iqm_ci": [lo, hi],
                "mean": float(scores.mean()) if scores.size else math.nan,
                "std": float(scores.std(ddof=1)) if scores.size > 1 else math.nan,
                "env_steps": [int(r.rows[-1].get("env_steps", 0)) for r in runs],
            })
    return records


def write_table(records: list[dict], args: argparse.Namespace, skipped: list[Run], out: Path) -> str:
    pct = f"{args.confidence:.0%}"
    rows = [
        (
            rec["task"], rec["variant"], rec["n"],
            format_ci(rec["iqm"], *rec["iqm_ci"]),
            "n/a" if not math.isfinite(rec["mean"]) else f"{rec['mean']:.1f} ± {rec['std']:.1f}" if math.isfinite(rec["std"]) else f"{rec['mean']:.1f}",
            ", ".join(f"{s:.1f}" for s in sorted(rec["final_scores"])),
            "–".join(sorted({f"{s:,}" for s in rec["env_steps"]})),
        )
        for rec in records
    ]
    text = (
        "# Final performance\n\n"
        f"Final score of a run: the mean of `{args.metric}` over its last {args.final_window} updates. "
        f"IQM: interquartile mean over seeds, with a {pct} stratified percentile-bootstrap CI "
        f"({args.resamples} resamples, seed {args.seed}); mean ± std over seeds (ddof = 1).\n\n"
        + markdown_table(
            ["task", "variant", "seeds", f"IQM [{pct} CI]", "mean ± std", "per-seed final scores", "env steps"], rows
        )
        + "\n\nSources: " + ", ".join(f"`{d}`" for d in args.sweep_dirs) + "\n"
    )
    if skipped:
        text += f"\nSkipped {len(skipped)} run(s):\n\n" + skipped_report(skipped) + "\n"
    (out / "final_performance.md").write_text(text, encoding="utf-8")
    (out / "final_performance.json").write_text(json.dumps({
        "metric": args.metric, "final_window": args.final_window, "confidence": args.confidence,
        "resamples": args.resamples, "seed": args.seed, "records": records,
        "skipped": [{"run": display_path(r.path), "reason": r.problem} for r in skipped],
    }, indent=2) + "\n", encoding="utf-8")
    return text


def plot_curves(groups: dict[str, dict[str, list[Run]]], args: argparse.Namespace, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(groups)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 3.8 * nrows), squeeze=False)
    all_variants = list(dict.fromkeys(v for variants in groups.values() for v in variants))
    colors = {v: plt.cm.tab10(i % 10) for i, v in enumerate(all_variants)}
    styles = {v: ("-", "--", ":", "-.")[i % 4] for i, v in enumerate(all_variants)}  # coinciding curves stay visible
    for ax, (task, variants) in zip(axes.flat, groups.items()):
        for variant, runs in variants.items():
            x, curves = aligned_curves(runs, args.metric)
            mean, lo, hi = bootstrap_mean_band(curves, min(args.resamples, 2000), args.confidence, args.seed)
            ax.plot(x, mean, color=colors[variant], ls=styles[variant], lw=1.5, label=f"{variant} (n={len(runs)})")
            ax.fill_between(x, lo, hi, color=colors[variant], alpha=0.2, lw=0)
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel(args.metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"mean over seeds, {args.confidence:.0%} bootstrap band", fontsize=9)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        runs, skipped = load_complete_runs(args.sweep_dirs)
    except NoRunsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or args.sweep_dirs[0] / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    groups = group_runs(runs)
    records = final_performance(groups, args.metric, args.final_window, args.resamples, args.confidence, args.seed)
    print(write_table(records, args, skipped, out))
    print(f"wrote {plot_curves(groups, args, out)}, {out / 'final_performance.md'}, {out / 'final_performance.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
