"""NPG-vs-TRPO step-behaviour report: what the steps did, update by update, per variant.

    python scripts/step_behavior.py multirun/2026-01-01/12-00-00 [MORE_DIRS ...] --out experiments/my_study

Reads every run folder below the given folders (variants and tasks as in ``plot_curves.py``) and
writes into ``--out``, per task, ``step_behavior_<task>.png`` and one ``step_behavior.md`` /
``step_behavior.json`` for all tasks:

- the distribution of KL/δ of the step taken (``step/kl_over_delta``, pooled over seeds' updates);
- the full-step counterfactual: KL/δ of the full KL-scaled step on the same batch
  (``full_step/kl_mean`` / δ), and how often it would have violated the constraint;
- expected (gᵀΔ, ``step/surrogate_expected``) vs actual (``step/surrogate_actual``) surrogate improvement;
- the histogram of ``line_search/backtracks``;
- the return-delta distribution (``return/delta`` on updates whose batch ended episodes);
- per-run rates, then their mean over seeds with a 95% percentile-bootstrap CI: constraint violated,
  rejected (1 − ``line_search/accepted``), line search changed the step (``step/fraction`` < 1),
  full step would violate, backtracks per update, improved fraction (``monotonic/improved_fraction``)
  and collapses (``monotonic/collapses``).

Updates where no step could be formed (``step/skipped`` = 1) are left out of the step statistics and
counted. It also lists runs of different variants with the same task and seed whose return
sequences are identical: TRPO and TRPO without line search coincide whenever the line search never
shrinks a step. Incomplete runs are skipped and listed. Statistics: see ``plot_curves.py`` (numpy,
seeded, not rliable).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without `pip install -e .`

from trpo_lab.analysis import (
    STEP_RATES,
    NoRunsError,
    display_path,
    Run,
    format_ci,
    formed_steps,
    fresh_return_deltas,
    group_runs,
    identical_trajectories,
    load_complete_runs,
    markdown_table,
    mean_ci,
    skipped_report,
    step_rates,
    variant_labels,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Step-behaviour report (KL/δ, violations, line search, full-step counterfactual, return deltas) "
        "for the runs below SWEEP_DIR(s).",
    )
    p.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR", help="sweep or run folders (searched recursively)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: FIRST_SWEEP_DIR/analysis)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default: 10000)")
    p.add_argument("--confidence", type=float, default=0.95, help="CI coverage (default: 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    return p.parse_args(argv)


def pooled(runs: list[Run], key: str) -> np.ndarray:
    """``key`` over all formed-step updates of ``runs``, finite values only."""
    parts = [r.column(key)[formed_steps(r)] for r in runs]
    v = np.concatenate(parts) if parts else np.array([])
    return v[np.isfinite(v)]


def full_step_kl_over_delta(run: Run) -> np.ndarray:
    """``full_step/kl_mean`` / δ on the run's formed-step updates."""
    delta = run.max_kl
    kl = run.column("full_step/kl_mean")[formed_steps(run)]
    return kl / delta if delta else np.full(kl.shape, np.nan)


def quantiles(v: np.ndarray, qs: tuple[float, ...] = (0.05, 0.5, 0.95)) -> list[float]:
    return np.quantile(v, qs).tolist() if v.size else [math.nan] * len(qs)


def variant_record(runs: list[Run], args: argparse.Namespace) -> dict:
    """The numbers of one variant on one task."""
    per_run = [step_rates(r) for r in runs]
    rates = {}
    for key in STEP_RATES:
        m, lo, hi = mean_ci([p[key] for p in per_run], args.resamples, args.confidence, args.seed)
        rates[key] = {"mean": m, "ci": [lo, hi], "per_run": [p[key] for p in per_run]}
    full = np.concatenate([full_step_kl_over_delta(r) for r in runs])
    full = full[np.isfinite(full)]
    expected, actual = pooled(runs, "step/surrogate_expected"), pooled(runs, "step/surrogate_actual")
    deltas = np.concatenate([fresh_return_deltas(r) for r in runs])
    return {
        "seeds": [r.seed for r in runs],
        "updates": int(sum(formed_steps(r).sum() for r in runs)),
        "skipped_updates": int(sum((~formed_steps(r)).sum() for r in runs)),
        "kl_over_delta_q05_q50_q95": quantiles(pooled(runs, "step/kl_over_delta")),
        "full_step_kl_over_delta_q05_q50_q95": quantiles(full),
        "improvement_ratio_q05_q50_q95": quantiles(pooled(runs, "step/improvement_ratio")),
        "actual_below_zero_share": float((actual <= 0).mean()) if actual.size else math.nan,
        "expected_mean": float(expected.mean()) if expected.size else math.nan,
        "actual_mean": float(actual.mean()) if actual.size else math.nan,
        "return_delta_q05_q50_q95": quantiles(deltas),
        "rates": rates,
    }


def _q(qs: list[float], digits: int = 2) -> str:
    return "n/a" if not math.isfinite(qs[1]) else f"{qs[1]:.{digits}f} [{qs[0]:.{digits}f}, {qs[2]:.{digits}f}]"


def _rate(rate: dict, digits: int = 2) -> str:
    return format_ci(rate["mean"], *rate["ci"], digits=digits)


def markdown(report: dict, args: argparse.Namespace, identical: list[list[Run]], skipped: list[Run], labels: dict) -> str:
    pct = f"{args.confidence:.0%}"
    out = ["# Step behaviour\n"]
    for task, variants in report.items():
        out.append(f"## {task}\n")
        out.append("Distributions pooled over every update of every seed: median [5%, 95%].\n")
        out.append(markdown_table(
            ["variant", "seeds", "updates", "KL/δ (step taken)", "full-step KL/δ", "actual/expected surrogate",
             "actual ≤ 0", "return Δ per update"],
            [(v, len(rec["seeds"]), rec["updates"] + rec["skipped_updates"], _q(rec["kl_over_delta_q05_q50_q95"]),
              _q(rec["full_step_kl_over_delta_q05_q50_q95"]), _q(rec["improvement_ratio_q05_q50_q95"]),
              f"{rec['actual_below_zero_share']:.2f}", _q(rec["return_delta_q05_q50_q95"], 1))
             for v, rec in variants.items()],
        ))
        out.append(f"\nPer-run rates, mean over seeds [{pct} bootstrap CI over seeds]:\n")
        out.append(markdown_table(
            ["variant", *STEP_RATES.values()],
            [(v, *(_rate(rec["rates"][k], 1 if k in ("collapses", "mean_backtracks") else 2) for k in STEP_RATES))
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
        "- KL/δ: `step/kl_over_delta` = mean KL(π_old‖π_new) of the step taken / δ (`algo.max_kl`).\n"
        "- full-step KL/δ: `full_step/kl_mean` / δ, the full KL-scaled step √(2δ/xᵀFx)·x evaluated on the same batch "
        "whatever the variant took.\n"
        "- actual/expected surrogate: `step/improvement_ratio` = (L(θ_new) − L(θ_old)) / gᵀΔ; actual ≤ 0: share of "
        "updates whose step did not raise the surrogate.\n"
        "- return Δ: `return/delta` on updates whose batch ended episodes (training return, as logged).\n"
        "- constraint violated: `step/constraint_violated`; rejected: 1 − `line_search/accepted`; line search changed "
        "the step: `step/fraction` < 1 (shrunk or rejected); full step would violate: `full_step/constraint_violated`.\n"
        "- improved fraction / collapses: `monotonic/improved_fraction` / `monotonic/collapses` at the run's end "
        "(a collapse: a drop of more than `collapse_share` of the best return so far).\n"
        f"- CIs: percentile bootstrap over runs (seeds), {args.resamples} resamples, seed {args.seed}.\n"
    )
    out.append("Sources: " + ", ".join(f"`{d}`" for d in args.sweep_dirs) + "\n")
    if skipped:
        out.append(f"Skipped {len(skipped)} run(s):\n\n" + skipped_report(skipped) + "\n")
    return "\n".join(out)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def plot_task(task: str, variants: dict[str, list[Run]], report: dict, args: argparse.Namespace, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {v: plt.cm.tab10(i % 10) for i, v in enumerate(variants)}
    styles = {v: ("-", "--", ":", "-.")[i % 4] for i, v in enumerate(variants)}  # identical variants stay visible
    markers = {v: "o^sDv<>"[i % 7] for i, v in enumerate(variants)}
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    (ax_kl, ax_full, ax_sur), (ax_bt, ax_ret, ax_rates) = axes

    def log_hist(ax, data: dict[str, np.ndarray], title: str) -> None:
        positive = [d[d > 0] for d in data.values() if np.any(d > 0)]
        if not positive:
            ax.set_title(title + " (no data)")
            return
        lo, hi = min(p.min() for p in positive), max(p.max() for p in positive)
        bins = np.geomspace(lo, hi * 1.0001, 40) if hi > lo else 10
        for v, d in data.items():
            d = d[d > 0]
            if d.size:
                ax.hist(d, bins=bins, histtype="step", lw=1.5, color=colors[v], ls=styles[v], label=v,
                        weights=np.full(d.size, 1.0 / d.size))
        ax.set_xscale("log")
        ax.axvline(1.0, color="k", ls="--", lw=1)
        ax.set_title(title)
        ax.set_ylabel("share of updates")

    log_hist(ax_kl, {v: pooled(rs, "step/kl_over_delta") for v, rs in variants.items()}, "KL/δ of the step taken")
    ax_kl.set_xlabel("step/kl_over_delta (dashed: the constraint)")
    log_hist(ax_full, {v: np.concatenate([full_step_kl_over_delta(r) for r in rs]) for v, rs in variants.items()},
             "counterfactual: KL/δ of the full KL-scaled step")
    ax_full.set_xlabel("full_step/kl_mean / δ")

    for v, rs in variants.items():
        ax_sur.scatter(pooled(rs, "step/surrogate_expected"), pooled(rs, "step/surrogate_actual"), s=6, alpha=0.35,
                       color=colors[v], marker=markers[v], label=v)
    lims = ax_sur.get_xlim()
    ax_sur.plot(lims, lims, "k--", lw=1, label="actual = expected")
    ax_sur.axhline(0, color="grey", lw=0.5)
    ax_sur.set_xlabel("expected improvement gᵀΔ")
    ax_sur.set_ylabel("actual improvement L(θ_new) − L(θ_old)")
    ax_sur.set_title("surrogate: expected vs actual")

    width = 0.8 / max(1, len(variants))
    max_bt = int(max([np.nanmax(pooled(rs, "line_search/backtracks"), initial=0) for rs in variants.values()]))
    ks = np.arange(max_bt + 1)
    for i, (v, rs) in enumerate(variants.items()):
        bt = pooled(rs, "line_search/backtracks")
        share = np.array([(bt == k).mean() if bt.size else 0 for k in ks])
        ax_bt.bar(ks + (i - (len(variants) - 1) / 2) * width, share, width=width, color=colors[v], label=v)
    ax_bt.set_xticks(ks)
    ax_bt.set_xlabel("line_search/backtracks")
    ax_bt.set_ylabel("share of updates")
    ax_bt.set_title("backtracks per update")

    deltas = {v: np.concatenate([fresh_return_deltas(r) for r in rs]) for v, rs in variants.items()}
    finite = np.concatenate([d for d in deltas.values() if d.size]) if any(d.size for d in deltas.values()) else np.array([])
    if finite.size:
        lo, hi = np.quantile(finite, [0.01, 0.99])
        bins = np.linspace(lo, hi, 50) if hi > lo else 10
        for v, d in deltas.items():
            if d.size:
                ax_ret.hist(np.clip(d, lo, hi), bins=bins, histtype="step", lw=1.5, color=colors[v], ls=styles[v], label=v,
                            weights=np.full(d.size, 1.0 / d.size))
    ax_ret.axvline(0, color="k", ls="--", lw=1)
    ax_ret.set_xlabel("return/delta (clipped to the 1–99% range)")
    ax_ret.set_ylabel("share of updates")
    ax_ret.set_title("return change per update")

    shown = ["violation_rate", "rejected_rate", "ls_changed_rate", "full_step_violation_rate", "improved_fraction"]
    xs = np.arange(len(shown))
    for i, v in enumerate(variants):
        rates = report[v]["rates"]
        m = np.array([rates[k]["mean"] for k in shown])
        lo = np.array([rates[k]["ci"][0] for k in shown])
        hi = np.array([rates[k]["ci"][1] for k in shown])
        ax_rates.errorbar(xs + (i - (len(variants) - 1) / 2) * width, m, yerr=[m - lo, hi - m], fmt=markers[v], ms=4,
                          capsize=3, color=colors[v], label=v)
    ax_rates.set_xticks(xs)
    ax_rates.set_xticklabels(["violated", "rejected", "LS changed\nstep", "full step\nwould violate", "return\nimproved"],
                             fontsize=8)
    ax_rates.set_ylim(-0.05, 1.05)
    ax_rates.set_title(f"per-run rates: mean over seeds, {args.confidence:.0%} CI")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    handles, lbls = ax_rates.get_legend_handles_labels()
    fig.legend(handles, lbls, loc="lower center", ncol=min(4, len(lbls)), fontsize=8)
    fig.suptitle(f"{task}: step behaviour ({sum(len(r) for r in variants.values())} runs)")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    path = out / f"step_behavior_{_slug(task)}.png"
    fig.savefig(path, dpi=110)
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
    labels = variant_labels(runs)
    report = {task: {v: variant_record(rs, args) for v, rs in variants.items()} for task, variants in groups.items()}
    identical = identical_trajectories(runs)
    text = markdown(report, args, identical, skipped, labels)
    (out / "step_behavior.md").write_text(text, encoding="utf-8")
    (out / "step_behavior.json").write_text(json.dumps({
        "tasks": report,
        "identical_trajectories": [[{"run": display_path(r.path), "variant": labels[r.path], "seed": r.seed} for r in g] for g in identical],
        "skipped": [{"run": display_path(r.path), "reason": r.problem} for r in skipped],
    }, indent=2) + "\n", encoding="utf-8")
    pngs = [plot_task(task, variants, report[task], args, out) for task, variants in groups.items()]
    print(text)
    print("wrote " + ", ".join(str(p) for p in [*pngs, out / "step_behavior.md", out / "step_behavior.json"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
