"""The figure of the step-behaviour report (:mod:`trpo_lab.reports.step_behavior`): ``step_behavior_<task>.png``.

One panel per thing with something to show: the paired evaluation's resolved improved fraction, histograms of
KL/δ of the step taken and of the full KL-scaled step (pooled over every formed update of every seed), the
surrogate's expected vs actual improvement (its y axis over the pooled 1–99 % range, outliers drawn at the
edge and counted in the label), backtracks per update, the damping share, the training-return change per
update (only the deltas the report counts: :func:`run_stats.fresh_evidence`), and the per-run rates (mean
over seeds with its CI). Log axes carry at most six plain-number tick labels (:func:`nice_log_ticks`), the
paired panel names each variant's resolved count under its marker. A panel without information (a
backtracks bar of all zeros, a key no run logged) is left out.
"""
from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from trpo_lab.reports import run_stats
from trpo_lab.runs import Run


def pooled(runs: Sequence[Run], key: str) -> np.ndarray:
    """``key`` on every formed update of ``runs`` where it is defined (:func:`run_stats.step_values`), concatenated;
    ``full_step/kl_over_delta`` is ``full_step/kl_mean`` / δ."""
    parts = [step_values(r, key) for r in runs]
    return np.concatenate(parts) if parts else np.array([])


def pooled_pairs(runs: Sequence[Run], x_key: str, y_key: str) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) on every formed update of ``runs`` where both keys are defined."""
    xs, ys = [], []
    for r in runs:
        mask = run_stats.formed(r.rows)
        x, y = run_stats.column(r.rows, x_key)[mask], run_stats.column(r.rows, y_key)[mask]
        both = np.isfinite(x) & np.isfinite(y)
        xs.append(x[both])
        ys.append(y[both])
    return (np.concatenate(xs), np.concatenate(ys)) if xs else (np.array([]), np.array([]))


def step_values(run: Run, key: str) -> np.ndarray:
    """:func:`run_stats.step_values` of one run, with ``full_step/kl_over_delta`` = ``full_step/kl_mean`` / δ."""
    if key == "full_step/kl_over_delta":
        kl = run_stats.step_values(run.rows, "full_step/kl_mean")
        return kl / run.max_kl if run.max_kl else np.array([])
    return run_stats.step_values(run.rows, key)


def nice_log_ticks(lo: float, hi: float, max_ticks: int = 6) -> list[float]:
    """At most ``max_ticks`` readable tick positions m × 10ᵏ for a log axis over [lo, hi] (0 < lo ≤ hi): the densest
    of the mantissa sets 1…9, {1, 2, 5}, {1, 3}, {1} that fits, else every n-th decade; when not even two of
    m × 10ᵏ fall in a narrow range, its two ends rounded to two significant digits."""
    if not (0 < lo <= hi) or not math.isfinite(hi):
        return []
    k0, k1 = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    for mantissas in (range(1, 10), (1, 2, 5), (1, 3), (1,)):
        ticks = [t for k in range(k0, k1 + 1) for m in mantissas if lo <= (t := float(f"{m}e{k}")) <= hi]
        if len(ticks) <= max_ticks:
            break
    else:
        decades = [10.0 ** k for k in range(k0, k1 + 1)]
        return decades[:: math.ceil(len(decades) / max_ticks)]
    return ticks if len(ticks) >= 2 else sorted({float(f"{lo:.2g}"), float(f"{hi:.2g}")})


def _log_axis(ax: Any) -> None:
    """A log x axis over the drawn data with readable, non-overlapping labels (:func:`nice_log_ticks` of the view
    limits), written as plain numbers."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log")
    ax.autoscale_view()
    lo, hi = ax.get_xlim()
    ax.xaxis.set_major_locator(FixedLocator(nice_log_ticks(lo, hi)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(lo, hi)


def clipped_range(values: np.ndarray, q: tuple[float, float] = (0.01, 0.99)) -> tuple[float, float]:
    """The ``q`` quantile range of the finite ``values`` (NaN, NaN for none): the axis range a few outliers
    cannot set."""
    v = values[np.isfinite(values)]
    if not v.size:
        return math.nan, math.nan
    lo, hi = np.quantile(v, q)
    return float(lo), float(hi)


def slug(text: str) -> str:
    """``text`` as a file-name part (runs of other characters → ``_``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


#: the plotted subset of STEP_RATES (fractions in [0, 1]) with their tick labels
PLOTTED_RATES = {"violation_rate": "violated", "line_search_rejected": "rejected", "line_search_acted": "LS changed\nstep",
                 "full_step_violation_rate": "full step\nwould violate", "return_rose_rate": "training\nreturn rose"}


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
            if line_at is not None:
                ax.axvline(line_at, color="k", ls="--", lw=1)
            _log_axis(ax)
            ax.set_xlabel(xlabel)
            ax.set_ylabel("share of updates")

        panels.append((title, draw))

    # a run with paired evaluation off logs paired/outcome as null: measured_runs > 0 but nothing measured
    paired = {v: report[v]["paired"] for v in variants if report[v]["paired"].get("measured", 0) > 0}
    if paired:
        def draw_paired(ax: Any) -> None:
            for i, (v, p) in enumerate(paired.items()):
                f = p["improved_fraction"]
                if math.isfinite(f["mean"]):
                    lo, hi = (f["ci"] if math.isfinite(f["ci"][0]) else (f["mean"], f["mean"]))
                    ax.errorbar([i], [f["mean"]], yerr=[[f["mean"] - lo], [hi - f["mean"]]], fmt=markers[v], ms=5,
                                capsize=4, color=colors[v], label=v)
            ax.axhline(0.5, color="grey", lw=0.5)
            ax.set_xticks(range(len(paired)))  # the counts under each variant's marker, where they are read
            ax.set_xticklabels([f"{p['resolved']} of {p['measured']}\nresolved" for p in paired.values()], fontsize=9)
            ax.set_xlim(-0.5, len(paired) - 0.5)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("improved / resolved")

        panels.append(("paired evaluation: resolved improved fraction", draw_paired))

    log_hist("step/kl_over_delta", "KL/δ of the step taken", "step/kl_over_delta (dashed: the constraint)", 1.0)
    log_hist("full_step/kl_over_delta", "counterfactual: KL/δ of the full KL-scaled step", "full_step/kl_mean / δ", 1.0)

    if any(pooled(rs, "step/surrogate_expected").size for rs in variants.values()):
        def draw_surrogate(ax: Any) -> None:
            # the y range is the pooled 1–99 % range: a few huge actual improvements would otherwise flatten the rest
            pairs = {v: pooled_pairs(rs, "step/surrogate_expected", "step/surrogate_actual") for v, rs in variants.items()}
            lo, hi = clipped_range(np.concatenate([y for _, y in pairs.values()]))
            pad = 0.05 * (hi - lo) if hi > lo else max(abs(hi), 1e-12)
            outside = 0
            for v, (x, y) in pairs.items():
                outside += int(np.count_nonzero((y < lo) | (y > hi)))
                ax.scatter(x, np.clip(y, lo, hi), s=6, alpha=0.35, color=colors[v], marker=markers[v], label=v)
            lims = ax.get_xlim()
            ax.plot(lims, lims, "k--", lw=1, label="actual = expected")
            ax.set_xlim(lims)
            if math.isfinite(lo):  # else no update logged both numbers: an empty panel
                ax.set_ylim(lo - pad, hi + pad)
            ax.axhline(0, color="grey", lw=0.5)
            ax.set_xlabel("expected improvement gᵀΔ")
            ax.set_ylabel(f"actual improvement L(θ_new) − L(θ_old)\n(1–99 % range; {outside} points outside, at the edge)",
                          fontsize=9)

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
