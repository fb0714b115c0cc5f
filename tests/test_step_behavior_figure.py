"""The step-behaviour figure (trpo_lab.reports.step_behavior_figure) reads at a glance: on a hand-written,
Walker2d-like study, no two tick labels of a log axis overlap, one huge value does not set the surrogate
scatter's y range, and each variant's resolved count is a tick label under its marker."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from helpers import return_rows, write_run

from trpo_lab.reports import step_behavior
from trpo_lab.reports.step_behavior_figure import nice_log_ticks
from trpo_lab.runs import group_runs, load_runs


def _wide_study(root: Path, n: int = 200) -> Path:
    """Walker2d-like: damping shares log-uniform over 0.014–0.7 (one decade tick in view, so matplotlib's default
    labels every minor tick, as in mujoco_1m's Walker2d figure), full-step KL/δ over 0.45–1, and one actual
    surrogate improvement 1000× the others (that figure had one of 1800 among values below 1)."""
    rng = np.random.default_rng(0)
    for seed in range(2):
        actual = list(rng.uniform(0.0, 0.8, n))
        if seed == 0:
            actual[5] = 1800.0
        cols = {"step/skipped": [0] * n, "line_search/backtracks": [0] * n, "step/kl_over_delta": [0.9] * n,
                "natural/damping_share": list(10 ** rng.uniform(np.log10(0.014), np.log10(0.7), n)),
                "full_step/kl_mean": list(0.01 * rng.uniform(0.45, 1.0, n)),
                "step/surrogate_expected": list(rng.uniform(0.0, 1.0, n)), "step/surrogate_actual": actual,
                "paired/outcome": [int(rng.integers(-1, 2)) if i % 10 == 0 else None for i in range(n)]}
        write_run(root / str(seed), ["algo=trpo", f"seed={seed}"], return_rows([1.0] * n, **cols), seed=seed,
                  max_kl=0.01)
    return root


def test_step_behavior_figure_tick_labels_never_overlap_and_an_outlier_does_not_set_the_y_range(tmp_path):
    import matplotlib.pyplot as plt

    root = _wide_study(tmp_path / "wide")
    args = step_behavior.parse_args([str(root), "--resamples", "200"])
    (variants,) = group_runs(load_runs([root])[0]).values()
    report = {v: step_behavior.variant_record(rs, args) for v, rs in variants.items()}
    fig = step_behavior.draw_task("Walker2d-v5", variants, report, args)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = {ax.get_title(): ax for ax in fig.axes if ax.axison}
    for title in ("damping share of the curvature", "counterfactual: KL/δ of the full KL-scaled step"):
        ax = axes[title]
        labels = [t for t in ax.get_xticklabels(which="both") if t.get_visible() and t.get_text()
                  and ax.get_xlim()[0] <= t.get_position()[0] <= ax.get_xlim()[1]]
        assert len(labels) >= 2, title
        boxes = sorted((t.get_window_extent(renderer) for t in labels), key=lambda b: b.x0)
        assert all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:])), (title, [t.get_text() for t in labels])
    surrogate = axes["surrogate: expected vs actual"]
    lo, hi = surrogate.get_ylim()
    assert hi < 2.0 and lo > -0.5  # the 1–99 % range of values in [0, 0.8], not the 1800
    assert "1–99 % range" in surrogate.get_ylabel()
    paired = axes["paired evaluation: resolved improved fraction"]
    (tick,) = [t.get_text() for t in paired.get_xticklabels()]
    counts = report[next(iter(variants))]["paired"]
    assert tick == f"{counts['resolved']} of {counts['measured']}\nresolved"
    plt.close(fig)


def test_log_ticks_are_few_and_inside_the_range():
    assert nice_log_ticks(0.62, 1.0) == [0.7, 0.8, 0.9, 1.0]  # 1…9 fits
    assert nice_log_ticks(0.002, 0.5) == [0.003, 0.01, 0.03, 0.1, 0.3]  # 1…9 and 1-2-5 give 9 and 8 > 6
    assert nice_log_ticks(1e-6, 1e3) == [1e-6, 1e-4, 1e-2, 1.0, 1e2]  # 10 decades: every second one
    assert nice_log_ticks(0.51, 0.55) == [0.51, 0.55]  # no m × 10ᵏ inside: the ends
