"""The across-task part of a report: the normalisation anchors, the aggregate IQM of each variant over the tasks
it ran, and the performance-profile figure (:mod:`trpo_lab.aggregate`, :mod:`trpo_lab.normalization`).

A variant is the same label on several tasks (a label tuned per task, e.g. a per-task NPG α, is a different
variant on each). Only tasks with both anchors are pooled, and only labels on ≥ 2 such tasks are aggregated;
each line names the tasks it pools, since aggregates over different task sets are not comparable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from trpo_lab.aggregate import aggregate_iqm, performance_profile
from trpo_lab.normalization import RANDOM_SOURCE, REFERENCE_SOURCE, anchors, normalize
from trpo_lab.reports.comparisons import Bootstrap, Table, is_peer
from trpo_lab.reports.markdown import format_ci, markdown_table

#: the figure's file name in a report's folder
PROFILE_FIGURE = "performance_profile.png"


def normalised_by_label(table: Table, key: str = "eval_final") -> dict[str, dict[str, np.ndarray]]:
    """``{label: {task: normalised scores}}`` for the labels that ran ≥ 2 tasks with anchors (finite scores only)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for task, variants in table.items():
        if anchors(task) is None:
            continue
        for label, rows in variants.items():
            x = np.array([float(r[key]) for r in rows if r.get(key) is not None and np.isfinite(float(r[key]))])
            if x.size:
                out.setdefault(label, {})[task] = normalize(task, x)
    return {label: by_task for label, by_task in out.items() if len(by_task) >= 2}


def section(table: Table, boot: Bootstrap = Bootstrap(), figure: Path | None = None, key: str = "eval_final") -> str:
    """Markdown: the anchors of the report's tasks, one aggregate-IQM row per variant on ≥ 2 tasks and, when
    ``figure`` is given, the performance profile drawn there; '' when the report has fewer than two tasks."""
    if len(table) < 2:
        return ""
    tasks = list(table)
    fmt = lambda pair: tuple(f"{v:.2f}" for v in pair) if pair else ("—", "— (not normalised)")
    anchor_rows = [(t, *fmt(anchors(t))) for t in tasks]
    text = ("## Across tasks\n\nNormalised score = (score − random) / (reference − random), per task: 0 is a "
            f"uniform-random policy, 1 the reference. **random**: {RANDOM_SOURCE}. **reference**: {REFERENCE_SOURCE} "
            "(the scale's 1, not a result to beat).\n\n" + markdown_table(["task", "random", "reference"], anchor_rows))
    by_label = normalised_by_label(table, key)
    if not by_label:
        return text + "\n\nNo variant ran two or more tasks with anchors: no aggregate.\n"
    peers = {label for variants in table.values() for label, rows in variants.items() if is_peer(rows)}
    rows = []
    for label, by_task in by_label.items():
        runs = sum(v.size for v in by_task.values())
        rows.append((label + (" (peer)" if label in peers else ""), ", ".join(by_task), runs,
                     format_ci(*aggregate_iqm(by_task, **boot.kwargs()), digits=2)))
    text += (f"\n\nAggregate IQM of the normalised final evaluation over all runs of the tasks named (rliable), "
             f"{boot.pct} **stratified** percentile-bootstrap CI (each task's runs resampled on their own; "
             f"{boot.resamples} resamples, seed {boot.seed}).\n\n"
             + markdown_table(["variant", "tasks", "runs", f"aggregate IQM [{boot.pct} CI]"], rows))
    if figure is not None:
        fig = draw_profile(by_label, peers, boot)
        fig.savefig(figure, dpi=130, bbox_inches="tight")
        import matplotlib.pyplot as plt

        plt.close(fig)
        text += (f"\n\n![performance profile]({figure.name})\n\n`{figure.name}`: the performance profile (rliable's "
                 "run-score distribution): the fraction of runs whose normalised score exceeds τ, each task weighted "
                 f"equally, with a {boot.pct} stratified-bootstrap band.")
    return text + "\n"


def draw_profile(by_label: dict[str, dict[str, np.ndarray]], peers: set[str], boot: Bootstrap, points: int = 101) -> Any:
    """One line (the profile) and band per variant over a shared τ grid from min(0, lowest score) to the highest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = np.concatenate([v for by_task in by_label.values() for v in by_task.values()])
    taus = np.linspace(min(0.0, float(scores.min())), float(scores.max()), points)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for i, (label, by_task) in enumerate(by_label.items()):
        f, lo, hi = performance_profile(by_task, taus, min(boot.resamples, 2000), boot.confidence, boot.seed)
        color = plt.cm.tab10(i % 10)
        name = f"{label}{' (peer)' if label in peers else ''} ({len(by_task)} tasks, {sum(v.size for v in by_task.values())} runs)"
        ax.plot(taus, f, color=color, ls="--" if label in peers else "-", lw=1.5, label=name)
        ax.fill_between(taus, lo, hi, color=color, alpha=0.2, lw=0)
    ax.set_xlabel("normalised score τ (0: random policy, 1: reference)")
    ax.set_ylabel("fraction of runs with score > τ")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1)
    return fig
