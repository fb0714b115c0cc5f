"""NPG-vs-TRPO step-behaviour report: what the steps did, update by update, per variant.

    python -m trpo_lab.reports.step_behavior multirun/2026-01-01/12-00-00 [MORE_DIRS ...] --out experiments/my_study
    (the same: python scripts/step_behavior.py ..., or the console script with entry point
    trpo_lab.reports.step_behavior:main)

Reads every run folder below the given folders (variants and tasks as in :mod:`trpo_lab.reports.curves`)
and writes into ``--out``, per task, ``step_behavior_<task>.png`` and one ``step_behavior.md`` /
``step_behavior.json`` for all tasks:

- the paired evaluation (the honest measure of whether an update improved the stochastic policy): per
  variant the *resolved improved fraction* (improved / resolved updates, ``paired/outcome``), mean over
  runs with a bootstrap CI over runs, and how many updates were measured and resolved. Runs written
  before these keys existed say "not measured";
- the distribution of KL/δ of the step taken (``step/kl_over_delta``, pooled over seeds' updates);
- the full-step counterfactual: KL/δ of the full KL-scaled step on the same batch
  (``full_step/kl_mean`` / δ), and how often it would have violated the constraint;
- expected (gᵀΔ) vs actual surrogate improvement; the damping share of the curvature
  (``natural/damping_share``) and the KL of each normaliser update (``normalizer/kl_shift``) where logged;
- the histogram of ``line_search/backtracks``; the training-return deltas (``return/delta`` on updates
  whose batch ended episodes, a proxy that mixes in earlier policies' episodes);
- per-run rates, then their mean over seeds with a percentile-bootstrap CI.

A figure panel that would carry no information (e.g. a backtracks bar of all zeros, a key no run logged)
is left out. Updates where no step could be formed (``step/skipped`` = 1) are left out of the step
statistics and counted. It also lists runs of different variants with the same task and seed whose return
sequences are identical: TRPO and TRPO without line search coincide whenever the line search never
shrinks a step. Incomplete runs are skipped and listed. Statistics: :mod:`trpo_lab.stats`.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trpo_lab.reports.common import base_parser, run_report, skipped_json
from trpo_lab.reports.markdown import format_ci, markdown_table, skipped_report
from trpo_lab.runs import Groups, Run, display_path, labels_by_path
from trpo_lab.stats import mean_ci

#: per-run rates of :func:`step_rates`, in report order, with their Markdown headings
STEP_RATES = {
    "violation_rate": "constraint violated",
    "rejected_rate": "rejected (1 − accepted)",
    "ls_changed_rate": "line search changed the step (fraction < 1)",
    "full_step_violation_rate": "full step would violate",
    "mean_backtracks": "backtracks per update",
    "return_improved_rate": "training return rose (proxy)",
    "collapses": "collapses",
}
#: pooled per-update distributions: key → (column heading, digits); "not measured" where no run logged it
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


def formed_steps(run: Run) -> np.ndarray:
    """Mask of the updates where a step was formed (``step/skipped`` ≠ 1); skipped updates carry no step."""
    return ~(np.nan_to_num(run.column("step/skipped"), nan=0.0) > 0)


def formed_column(run: Run, key: str) -> np.ndarray:
    """``key`` on the run's formed-step updates; ``full_step/kl_over_delta`` is ``full_step/kl_mean`` / δ."""
    if key == "full_step/kl_over_delta":
        kl = run.column("full_step/kl_mean")[formed_steps(run)]
        return kl / run.max_kl if run.max_kl else np.full(kl.shape, np.nan)
    if key == "return/delta":
        return fresh_return_deltas(run)
    return run.column(key)[formed_steps(run)]


def pooled(runs: Sequence[Run], key: str) -> np.ndarray:
    """:func:`formed_column` of ``key`` over ``runs``, finite values only."""
    parts = [formed_column(r, key) for r in runs]
    v = np.concatenate(parts) if parts else np.array([])
    return v[np.isfinite(v)]


def fresh_return_deltas(run: Run) -> np.ndarray:
    """``return/delta`` on the updates whose batch ended episodes, after the first such update.

    Updates with no finished episode carry the return forward (delta 0) and are left out, as is the
    first measured return (it has no predecessor).
    """
    delta = run.column("return/delta")
    episodes = run.column("return/episodes")
    fresh = np.nan_to_num(episodes, nan=1.0) > 0 if np.isfinite(episodes).any() else np.isfinite(delta)
    idx = np.flatnonzero(fresh & np.isfinite(run.column("return/mean")))
    return delta[idx[1:]] if idx.size > 1 else np.array([])


def step_rates(run: Run) -> dict[str, float]:
    """One run's step-behaviour rates over its updates with a formed step.

    - ``violation_rate``: mean of ``step/constraint_violated`` (the step taken broke the constraint).
    - ``rejected_rate``: 1 − mean of ``line_search/accepted``.
    - ``ls_changed_rate``: share of updates with ``step/fraction`` < 1 (shrunk or rejected).
    - ``full_step_violation_rate``: mean of ``full_step/constraint_violated`` (the full KL-scaled step would have).
    - ``mean_backtracks``: mean of ``line_search/backtracks``.
    - ``return_improved_rate``: share of :func:`fresh_return_deltas` > 0 (the training-return proxy).
    - ``collapses``: ``monotonic/collapses`` at the run's end.
    """
    formed = formed_steps(run)

    def mean_of(values: np.ndarray) -> float:
        v = values[formed & np.isfinite(values)]
        return float(v.mean()) if v.size else math.nan

    fraction = run.column("step/fraction")
    deltas = fresh_return_deltas(run)
    collapses = (run.summary or {}).get("collapses")
    if collapses is None:
        collapses = run.last_value("monotonic/collapses")
    return {
        "violation_rate": mean_of(run.column("step/constraint_violated")),
        "rejected_rate": 1.0 - mean_of(run.column("line_search/accepted")),
        "ls_changed_rate": mean_of(np.where(np.isfinite(fraction), (fraction < 1.0).astype(float), np.nan)),
        "full_step_violation_rate": mean_of(run.column("full_step/constraint_violated")),
        "mean_backtracks": mean_of(run.column("line_search/backtracks")),
        "return_improved_rate": float((deltas > 0).mean()) if deltas.size else math.nan,
        "collapses": math.nan if collapses is None else float(collapses),
    }


def paired_counts(run: Run) -> dict[str, float] | None:
    """The run's paired-evaluation outcomes (``paired/outcome``: 1 improved, −1 worsened, 0 unresolved,
    null when not measured that update), or None when the run's code did not log them.

    ``improved_fraction`` = improved / resolved (NaN when nothing was resolved).
    """
    if not run.has("paired/outcome"):
        return None
    outcome = run.column("paired/outcome")
    improved, worsened = int((outcome == 1).sum()), int((outcome == -1).sum())
    resolved = improved + worsened
    return {
        "updates": len(run.rows),
        "measured": int(np.isfinite(outcome).sum()),
        "resolved": resolved,
        "improved": improved,
        "worsened": worsened,
        "improved_fraction": improved / resolved if resolved else math.nan,
    }


def paired_record(runs: Sequence[Run], args: argparse.Namespace) -> dict[str, Any]:
    """Per variant: the resolved improved fraction (mean over runs, bootstrap CI over runs) and the counts."""
    counts = [c for c in map(paired_counts, runs) if c is not None]
    if not counts:
        return {"measured_runs": 0}
    fractions = [c["improved_fraction"] for c in counts]
    m, lo, hi = mean_ci(fractions, args.resamples, args.confidence, args.seed)
    total = {k: int(sum(c[k] for c in counts)) for k in ("updates", "measured", "resolved", "improved", "worsened")}
    return {
        "measured_runs": len(counts),
        "runs_with_resolved": int(sum(math.isfinite(f) for f in fractions)),
        "improved_fraction": {"mean": m, "ci": [lo, hi], "per_run": fractions},
        **total,
    }


def quantiles(v: np.ndarray, qs: tuple[float, ...] = (0.05, 0.5, 0.95)) -> list[float] | None:
    """``[q05, median, q95]`` of ``v``, or None for no data."""
    return np.quantile(v, qs).tolist() if v.size else None


def variant_record(runs: Sequence[Run], args: argparse.Namespace) -> dict[str, Any]:
    """The numbers of one variant on one task."""
    per_run = [step_rates(r) for r in runs]
    rates = {}
    for key in STEP_RATES:
        m, lo, hi = mean_ci([p[key] for p in per_run], args.resamples, args.confidence, args.seed)
        rates[key] = {"mean": m, "ci": [lo, hi], "per_run": [p[key] for p in per_run]}
    actual = pooled(runs, "step/surrogate_actual")
    return {
        "seeds": [r.seed for r in runs],
        "updates": int(sum(formed_steps(r).sum() for r in runs)),
        "skipped_updates": int(sum((~formed_steps(r)).sum() for r in runs)),
        "distributions": {key: quantiles(pooled(runs, key)) for key in DISTRIBUTIONS},
        "actual_below_zero_share": float((actual <= 0).mean()) if actual.size else None,
        "paired": paired_record(runs, args),
        "rates": rates,
    }


def _q(qs: list[float] | None, digits: int = 2) -> str:
    return NOT_MEASURED if qs is None else f"{qs[1]:.{digits}f} [{qs[0]:.{digits}f}, {qs[2]:.{digits}f}]"


def _paired_row(variant: str, p: dict[str, Any]) -> tuple[Any, ...]:
    if not p["measured_runs"]:
        return (variant, NOT_MEASURED, "—", "—", "—", "—")
    frac = p["improved_fraction"]
    share = f"{p['resolved'] / p['measured']:.2f}" if p["measured"] else "—"
    return (variant, format_ci(frac["mean"], *frac["ci"], digits=2), f"{p['resolved']} of {p['measured']}", share,
            f"{p['improved']} / {p['worsened']}", f"{p['measured_runs']} ({p['runs_with_resolved']} with a resolved update)")


def markdown(report: dict[str, Any], args: argparse.Namespace, identical: list[list[Run]],
             skipped: list[tuple[Run, str]], labels: dict[Path, str]) -> str:
    pct = f"{args.confidence:.0%}"
    out = ["# Step behaviour\n"]
    for task, variants in report.items():
        out.append(f"## {task}\n")
        out.append(f"Paired evaluation (π_old vs π_new, stochastic, common random numbers): resolved improved "
                   f"fraction = improved / resolved updates per run, mean over runs [{pct} bootstrap CI over runs].\n")
        out.append(markdown_table(
            ["variant", "resolved improved fraction", "updates resolved (of measured)", "share resolved",
             "improved / worsened", "runs measured"],
            [_paired_row(v, rec["paired"]) for v, rec in variants.items()],
        ))
        out.append("\nDistributions pooled over every update of every seed: median [5%, 95%].\n")
        out.append(markdown_table(
            ["variant", "seeds", "updates", *(h for h, _ in DISTRIBUTIONS.values()), "actual surrogate ≤ 0"],
            [(v, len(rec["seeds"]), rec["updates"] + rec["skipped_updates"],
              *(_q(rec["distributions"][k], d) for k, (_, d) in DISTRIBUTIONS.items()),
              NOT_MEASURED if rec["actual_below_zero_share"] is None else f"{rec['actual_below_zero_share']:.2f}")
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
        "share of updates whose step did not raise the surrogate.\n"
        "- damping share: `natural/damping_share`; normaliser KL shift: `normalizer/kl_shift`, the KL that an "
        "observation-normaliser update alone causes.\n"
        "- return Δ / training return rose: `return/delta` on updates whose batch ended episodes; a proxy, since a "
        "batch's finished episodes were partly collected by earlier policies.\n"
        "- constraint violated: `step/constraint_violated`; rejected: 1 − `line_search/accepted`; line search changed "
        "the step: `step/fraction` < 1 (shrunk or rejected); full step would violate: `full_step/constraint_violated`; "
        "collapses: `monotonic/collapses` at the run's end.\n"
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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


#: the plotted subset of STEP_RATES (fractions in [0, 1]) with their tick labels
PLOTTED_RATES = {"violation_rate": "violated", "rejected_rate": "rejected", "ls_changed_rate": "LS changed\nstep",
                 "full_step_violation_rate": "full step\nwould violate", "return_improved_rate": "training\nreturn rose"}


def draw_task(task: str, variants: dict[str, list[Run]], report: dict[str, Any], args: argparse.Namespace) -> Any:
    """The figure of ``step_behavior_<task>.png``: only the panels with something to show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {v: plt.cm.tab10(i % 10) for i, v in enumerate(variants)}
    styles = {v: ("-", "--", ":", "-.")[i % 4] for i, v in enumerate(variants)}  # identical variants stay visible
    markers = {v: "o^sDv<>"[i % 7] for i, v in enumerate(variants)}
    width = 0.8 / max(1, len(variants))
    offsets = {v: (i - (len(variants) - 1) / 2) * width for i, v in enumerate(variants)}
    panels: list[tuple[str, Callable[[Any], None]]] = []

    def log_hist(key: str, title: str, xlabel: str, line_at: float | None) -> None:
        data = {v: pooled(rs, key) for v, rs in variants.items()}
        positive = [d[d > 0] for d in data.values() if np.any(d > 0)]
        if not positive:
            return
        lo, hi = min(p.min() for p in positive), max(p.max() for p in positive)
        bins = np.geomspace(lo, hi * 1.0001, 40) if hi > lo else 10

        def draw(ax: Any) -> None:
            for v, d in data.items():
                d = d[d > 0]
                if d.size:
                    ax.hist(d, bins=bins, histtype="step", lw=1.5, color=colors[v], ls=styles[v], label=v,
                            weights=np.full(d.size, 1.0 / d.size))
            ax.set_xscale("log")
            if line_at is not None:
                ax.axvline(line_at, color="k", ls="--", lw=1)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("share of updates")

        panels.append((title, draw))

    paired = {v: report[v]["paired"] for v in variants if report[v]["paired"]["measured_runs"]}
    if paired:
        def draw_paired(ax: Any) -> None:
            for i, (v, p) in enumerate(paired.items()):
                f = p["improved_fraction"]
                if math.isfinite(f["mean"]):
                    lo, hi = (f["ci"] if math.isfinite(f["ci"][0]) else (f["mean"], f["mean"]))
                    ax.errorbar([i], [f["mean"]], yerr=[[f["mean"] - lo], [hi - f["mean"]]], fmt=markers[v], ms=5,
                                capsize=4, color=colors[v], label=v)
                ax.annotate(f"{p['resolved']}/{p['measured']} resolved", (i, 0.02), ha="center", fontsize=7)
            ax.axhline(0.5, color="grey", lw=0.5)
            ax.set_xticks(range(len(paired)))
            ax.set_xticklabels([""] * len(paired))
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("improved / resolved")

        panels.append(("paired evaluation: resolved improved fraction", draw_paired))

    log_hist("step/kl_over_delta", "KL/δ of the step taken", "step/kl_over_delta (dashed: the constraint)", 1.0)
    log_hist("full_step/kl_over_delta", "counterfactual: KL/δ of the full KL-scaled step", "full_step/kl_mean / δ", 1.0)

    if any(pooled(rs, "step/surrogate_expected").size for rs in variants.values()):
        def draw_surrogate(ax: Any) -> None:
            for v, rs in variants.items():
                ax.scatter(pooled(rs, "step/surrogate_expected"), pooled(rs, "step/surrogate_actual"), s=6, alpha=0.35,
                           color=colors[v], marker=markers[v], label=v)
            lims = ax.get_xlim()
            ax.plot(lims, lims, "k--", lw=1, label="actual = expected")
            ax.axhline(0, color="grey", lw=0.5)
            ax.set_xlabel("expected improvement gᵀΔ")
            ax.set_ylabel("actual improvement L(θ_new) − L(θ_old)")

        panels.append(("surrogate: expected vs actual", draw_surrogate))

    backtracks = {v: pooled(rs, "line_search/backtracks") for v, rs in variants.items()}
    max_bt = int(max((b.max() for b in backtracks.values() if b.size), default=0))
    if max_bt > 0:  # all zeros (no variant ever backtracked) would be a bar that says nothing
        def draw_backtracks(ax: Any) -> None:
            ks = np.arange(max_bt + 1)
            for v, bt in backtracks.items():
                share = np.array([(bt == k).mean() if bt.size else 0.0 for k in ks])
                ax.bar(ks + offsets[v], share, width=width, color=colors[v], label=v)
            ax.set_xticks(ks)
            ax.set_xlabel("line_search/backtracks")
            ax.set_ylabel("share of updates")

        panels.append(("backtracks per update", draw_backtracks))

    log_hist("natural/damping_share", "damping share of the curvature", "λ‖x‖² / xᵀ(F+λI)x", None)

    deltas = {v: pooled(rs, "return/delta") for v, rs in variants.items()}
    finite = np.concatenate(list(deltas.values()))
    if finite.size:
        def draw_returns(ax: Any) -> None:
            lo, hi = np.quantile(finite, [0.01, 0.99])
            bins = np.linspace(lo, hi, 50) if hi > lo else 10
            for v, d in deltas.items():
                if d.size:
                    ax.hist(np.clip(d, lo, hi), bins=bins, histtype="step", lw=1.5, color=colors[v], ls=styles[v],
                            label=v, weights=np.full(d.size, 1.0 / d.size))
            ax.axvline(0, color="k", ls="--", lw=1)
            ax.set_xlabel("return/delta (clipped to the 1–99% range)")
            ax.set_ylabel("share of updates")

        panels.append(("training-return change per update (proxy)", draw_returns))

    shown = [k for k in PLOTTED_RATES if any(math.isfinite(report[v]["rates"][k]["mean"]) for v in variants)]
    if shown:
        def draw_rates(ax: Any) -> None:
            xs = np.arange(len(shown))
            for v in variants:
                rates = report[v]["rates"]
                m = np.array([rates[k]["mean"] for k in shown])
                lo = np.array([rates[k]["ci"][0] for k in shown])
                hi = np.array([rates[k]["ci"][1] for k in shown])
                lo, hi = np.where(np.isfinite(lo), lo, m), np.where(np.isfinite(hi), hi, m)
                ax.errorbar(xs + offsets[v], m, yerr=[m - lo, hi - m], fmt=markers[v], ms=4, capsize=3,
                            color=colors[v], label=v)
            ax.set_xticks(xs)
            ax.set_xticklabels([PLOTTED_RATES[k] for k in shown], fontsize=8)
            ax.set_ylim(-0.05, 1.05)

        panels.append((f"per-run rates: mean over seeds, {args.confidence:.0%} CI", draw_rates))

    ncols = min(3, max(1, len(panels)))
    nrows = math.ceil(len(panels) / ncols) if panels else 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.4 * ncols, 4.2 * nrows + 0.6), squeeze=False)
    for ax, (title, draw) in zip(axes.flat, panels):
        draw(ax)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            if label in variants:
                handles.setdefault(label, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(3, len(handles)), fontsize=8)
    fig.suptitle(f"{task}: step behaviour ({sum(len(r) for r in variants.values())} runs)")
    legend_rows = math.ceil(len(handles) / 3) if handles else 0
    fig.tight_layout(rect=(0, min(0.3, 0.04 * legend_rows / nrows + 0.01), 1, 0.97))
    return fig


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
            pngs.append(out / f"step_behavior_{_slug(task)}.png")
            fig.savefig(pngs[-1], dpi=110)
            plt.close(fig)
        print(text)
        print("wrote " + ", ".join(str(p) for p in [*pngs, out / "step_behavior.md", out / "step_behavior.json"]))

    return run_report(args, write)

if __name__ == "__main__":
    sys.exit(main())
