"""Learning curves and a final-performance table for one or more sweeps.

    python -m trpo_lab.reports.curves multirun/2026-01-01/12-00-00 [MORE_DIRS ...] --out experiments/my_study
    (the same: python scripts/plot_curves.py ..., or the console script with entry point trpo_lab.reports.curves:main)

Reads every run folder below the given folders, groups the runs by task (one panel per task) and by
variant (:func:`trpo_lab.runs.group_runs`: runs are pooled only when their configs are equal but for the
seed; the label names what differs), and writes into ``--out``:

- ``curves.png``: the metric (default ``return/mean``, the training return as logged: the mean of the
  last ``return_window`` finished episodes) against env steps; the line is the mean over seeds, the band a 95% percentile bootstrap over seeds (whole
  curves resampled); the y axis is named in words (``AXIS_NAMES``), and a variant with fewer than 5 seeds
  is starred in the legend (its band is a rough guide, the title says so), and a variant whose curves equal an
  earlier one's is labelled "identical to" it (one curve hides the other). A long legend sits outside the axes.
- ``final_performance.md`` and ``.json``: per task and variant, the *final return* of each seed =
  the mean of the metric over its last ``--final-window`` updates; then the interquartile mean (IQM)
  over seeds with a 95% percentile-bootstrap CI over seeds, the mean ± standard deviation (ddof = 1), the
  number of seeds and the per-seed values. Tasks are not pooled: raw returns of different tasks are
  not on one scale.

Runs that failed, did not finish, logged nothing, or whose overrides do not match their saved config
are skipped and listed. Statistics: :mod:`trpo_lab.stats` (seeded by ``--seed``).
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

from trpo_lab.reports.common import base_parser, run_report, skipped_json
from trpo_lab.reports.markdown import format_ci, markdown_table, sources_and_skipped
from trpo_lab.runs import Groups, Run
from trpo_lab.stats import bootstrap_band, bootstrap_ci, iqm


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = base_parser(
        "Return curves (mean over seeds, 95% bootstrap band) and a final-performance table "
        "(IQM with percentile-bootstrap CIs) for the runs below SWEEP_DIR(s)."
    )
    p.add_argument("--metric", default="return/mean", help="metrics.jsonl key to plot and score (default: return/mean)")
    p.add_argument("--final-window", type=int, default=10, help="updates averaged for a run's final score (default: 10)")
    return p.parse_args(argv)


#: the y-axis name of a metric, in words (any other metric is named by its key)
AXIS_NAMES = {"return/mean": "training return (stochastic policy)",
              "eval/return_mean": "evaluation return (deterministic policy)"}
#: a bootstrap band over fewer runs than this is flagged as a rough guide
FEW_SEEDS = 5
#: a legend of at most this many entries of at most this many characters goes inside each panel
SHORT_LEGEND = (4, 28)


def aligned_curves(runs: Sequence[Run], key: str = "return/mean", x_key: str = "env_steps") -> tuple[np.ndarray, np.ndarray]:
    """Curves of ``runs`` on one x grid: ``(x, Y)`` with Y of shape (runs, points).

    The grid is the x values of the first run up to the shortest run's last x; runs logged at other
    x values are linearly interpolated onto it. A point before a run's first logged value is NaN.
    Gaps inside a run are interpolated too: in runs logged before the return window, ``return/mean`` is
    null in an update in which no episode ended (every other update on HalfCheetah, whose episodes all
    last 1000 steps), and one such gap in one seed would otherwise blank the mean, and so the line, at
    that point. (Since the window, ``return/mean`` is null only before the first finished episode.)
    """
    return align([(r.column(x_key), r.column(key)) for r in runs])


def align(curves: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`aligned_curves` on curves given as ``(x, y)`` arrays (e.g. read back from a record's CSV)."""
    end = min(float(np.nanmax(x)) for x, _ in curves)
    x0 = curves[0][0]
    grid = x0[np.isfinite(x0) & (x0 <= end)]
    ys = []
    for x, y in curves:
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() == 0:
            ys.append(np.full(grid.shape, np.nan))
        else:  # at its own logged x, np.interp returns the logged value exactly
            ys.append(np.interp(grid, x[ok], y[ok], left=np.nan))
    return grid, np.vstack(ys)


def final_score(run: Run, key: str = "return/mean", window: int = 10) -> float:
    """The mean of ``key`` over the run's last ``window`` updates with a logged value (NaN if none)."""
    col = run.column(key)
    col = col[np.isfinite(col)]
    return float(col[-window:].mean()) if col.size else math.nan


def final_performance(groups: Groups, metric: str, window: int, resamples: int, confidence: float, seed: int) -> list[dict[str, Any]]:
    """One record per task and variant: per-seed final scores, IQM with its CI, mean and std."""
    records = []
    for task, variants in groups.items():
        for variant, runs in variants.items():
            scores = np.array([final_score(r, metric, window) for r in runs])
            scores = scores[np.isfinite(scores)]
            lo, hi = bootstrap_ci([scores], iqm, resamples, confidence, seed)
            records.append({
                "task": task,
                "variant": variant,
                "seeds": [r.seed for r in runs],
                "n": int(scores.size),
                "final_scores": scores.tolist(),
                "iqm": iqm(scores),
                "iqm_ci": [lo, hi],
                "mean": float(scores.mean()) if scores.size else math.nan,
                "std": float(scores.std(ddof=1)) if scores.size > 1 else math.nan,
                "env_steps": [int(r.rows[-1].get("env_steps", 0)) for r in runs],
            })
    return records


def write_table(records: list[dict[str, Any]], args: argparse.Namespace, skipped: list[tuple[Run, str]], out: Path) -> str:
    pct = f"{args.confidence:.0%}"

    def mean_std(rec: dict[str, Any]) -> str:
        if not math.isfinite(rec["mean"]):
            return "n/a"
        return f"{rec['mean']:.1f} ± {rec['std']:.1f}" if math.isfinite(rec["std"]) else f"{rec['mean']:.1f}"

    rows = [
        (rec["task"], rec["variant"], rec["n"], format_ci(rec["iqm"], *rec["iqm_ci"]), mean_std(rec),
         ", ".join(f"{s:.1f}" for s in sorted(rec["final_scores"])), "–".join(sorted({f"{s:,}" for s in rec["env_steps"]})))
        for rec in records
    ]
    text = (
        "# Final performance\n\n"
        f"Final score of a run: the mean of `{args.metric}` over its last {args.final_window} updates. "
        f"IQM: interquartile mean over seeds, with a {pct} percentile-bootstrap CI over seeds "
        f"({args.resamples} resamples, seed {args.seed}); mean ± std over seeds (ddof = 1). Runs are pooled "
        "only when their configs are equal but for the seed.\n\n"
        + markdown_table(["task", "variant", "seeds", f"IQM [{pct} CI]", "mean ± std", "per-seed final scores", "env steps"], rows)
        + sources_and_skipped(args.sweep_dirs, skipped)
    )
    (out / "final_performance.md").write_text(text, encoding="utf-8")
    (out / "final_performance.json").write_text(json.dumps({
        "metric": args.metric, "final_window": args.final_window, "confidence": args.confidence,
        "resamples": args.resamples, "seed": args.seed, "records": records, "skipped": skipped_json(skipped),
    }, indent=2) + "\n", encoding="utf-8")
    return text


def draw_curves(groups: Groups, args: argparse.Namespace) -> Any:
    """The figure of ``curves.png``: one panel per task, one line (mean) and band (bootstrap CI) per variant."""
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
        drawn: list[tuple[str, np.ndarray, np.ndarray]] = []
        for variant, runs in variants.items():
            x, curves = aligned_curves(runs, args.metric)
            mean, lo, hi = bootstrap_band(curves, min(args.resamples, 2000), args.confidence, args.seed)
            few = "*" if len(runs) < FEW_SEEDS else ""
            # identical runs (e.g. a line search that never acted) draw one curve over another: say so
            twin = next((v for v, x0, c0 in drawn if np.array_equal(x0, x) and np.array_equal(c0, curves, equal_nan=True)), None)
            same = f"; identical to {twin}" if twin else ""
            drawn.append((variant, x, curves))
            ax.plot(x, mean, color=colors[variant], ls=styles[variant], lw=1.5, label=f"{variant} (n={len(runs)}{few}{same})")
            ax.fill_between(x, lo, hi, color=colors[variant], alpha=0.2, lw=0)
        ax.set_title(task)
        ax.set_xlabel("env steps")
        ax.set_ylabel(AXIS_NAMES.get(args.metric, args.metric))
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    few_seeds = any(len(runs) < FEW_SEEDS for variants in groups.values() for runs in variants.values())
    warning = f"; *: a band over fewer than {FEW_SEEDS} seeds, a rough guide only" if few_seeds else ""
    fig.suptitle(f"mean over seeds, {args.confidence:.0%} bootstrap band{warning}", fontsize=9)
    fig.tight_layout()
    entries: dict[str, Any] = {}
    for ax in axes.flat:
        entries.update({label: h for h, label in zip(*ax.get_legend_handles_labels())})
    if len(entries) <= SHORT_LEGEND[0] and max(map(len, entries), default=0) <= SHORT_LEGEND[1]:
        for ax in axes.flat[:n]:
            ax.legend(fontsize=7, loc="best")
    else:  # one legend for all panels, below them: it never covers a curve (saved with bbox_inches="tight")
        fig.legend(list(entries.values()), list(entries), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=max(1, min(3, 120 // max(map(len, entries)))), fontsize=7)
    return fig


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def write(groups: Groups, skipped: list[tuple[Run, str]], out: Path) -> None:
        import matplotlib.pyplot as plt

        records = final_performance(groups, args.metric, args.final_window, args.resamples, args.confidence, args.seed)
        print(write_table(records, args, skipped, out))
        fig = draw_curves(groups, args)
        fig.savefig(out / "curves.png", dpi=130, bbox_inches="tight")  # "tight" keeps a legend below the axes
        plt.close(fig)
        print(f"wrote {out / 'curves.png'}, {out / 'final_performance.md'}, {out / 'final_performance.json'}")

    return run_report(args, write)


if __name__ == "__main__":
    sys.exit(main())
