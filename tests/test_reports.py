"""The reports (trpo_lab.reports.curves, .step_behavior, .final_scores) on hand-written run folders.

Every expected number is computed here from the data the test writes (or by scipy), never taken
from the code under test.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from helpers import return_rows, write_run

from trpo_lab.reports import curves, final_scores, step_behavior
from trpo_lab.runs import group_runs, load_runs

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


# -- curves -------------------------------------------------------------------------------------


def _study(tmp_path: Path) -> tuple[Path, dict[str, list[float]]]:
    """Two variants × 4 seeds on one task, plus one unfinished run; returns the folder and the true final scores.

    Seed s of variant v logs 30 updates: 20 at a warm-up value, then 10 at ``final[v][s]``, so the mean over
    the last 10 updates is exactly ``final[v][s]``. The first update has no return yet (null).
    """
    final = {"npg": [100.0, 140.0, 90.0, 300.0], "trpo": [250.0, 250.0, 250.0, 250.0]}
    job = 0
    for algo, scores in final.items():
        for seed, score in enumerate(scores):
            returns = [None] + [10.0 * seed] * 19 + [score] * 10
            write_run(tmp_path / "sweep" / str(job), [f"algo={algo}", f"seed={seed}"], return_rows(returns), seed=seed)
            job += 1
    write_run(tmp_path / "sweep" / str(job), ["algo=trpo", "seed=9"], return_rows([None, 5.0]), seed=9, finished=False)
    return tmp_path / "sweep", final


def test_plot_curves_table_against_independent_numbers(tmp_path, capsys):
    sweep, final = _study(tmp_path)
    out = tmp_path / "out"
    assert curves.main([str(sweep), "--out", str(out), "--resamples", "4000"]) == 0
    assert (out / "curves.png").stat().st_size > 10_000
    records = {r["variant"]: r for r in json.loads((out / "final_performance.json").read_text())["records"]}
    assert set(records) == {"algo=npg", "algo=trpo"}
    for algo, scores in final.items():
        rec = records[f"algo={algo}"]
        assert rec["task"] == "Hopper-v5" and rec["n"] == 4 and rec["seeds"] == [0, 1, 2, 3]
        assert sorted(rec["final_scores"]) == sorted(scores)
        assert rec["iqm"] == pytest.approx(stats.trim_mean(scores, 0.25))
        assert rec["mean"] == pytest.approx(np.mean(scores)) and rec["std"] == pytest.approx(np.std(scores, ddof=1))
        lo, hi = rec["iqm_ci"]
        assert min(scores) <= lo <= rec["iqm"] <= hi <= max(scores)
    assert records["algo=trpo"]["iqm_ci"] == [250.0, 250.0]  # all seeds equal: the CI is that value
    md = (out / "final_performance.md").read_text()
    assert "| Hopper-v5 | algo=npg | 4 | 120.0 [" in md  # IQM of 90, 100, 140, 300 = (100 + 140)/2
    assert "Skipped 1 run(s)" in md and "no summary.json" in md
    assert "skipped" in capsys.readouterr().err


def test_plot_curves_final_window_is_the_mean_of_the_last_updates(tmp_path):
    returns = [float(v) for v in range(1, 31)]
    write_run(tmp_path / "sweep" / "0", ["seed=0"], return_rows(returns))
    out = tmp_path / "out"
    assert curves.main([str(tmp_path / "sweep"), "--out", str(out), "--final-window", "5"]) == 0
    (rec,) = json.loads((out / "final_performance.json").read_text())["records"]
    assert rec["final_scores"] == [pytest.approx(np.mean(returns[-5:]))]


def test_curves_bridge_updates_in_which_no_episode_ended(tmp_path):
    """HalfCheetah logs a return only every other update; the mean curve is interpolated across the gaps,
    not blanked (which left a figure of isolated dots), and is NaN only before the first return."""
    gappy = [None, 10.0, None, 30.0, None, 50.0]
    for seed, offset in enumerate([0.0, 100.0]):
        write_run(tmp_path / "sweep" / str(seed), [f"seed={seed}"],
                  return_rows([None if r is None else r + offset for r in gappy]), seed=seed)
    (runs,) = group_runs(load_runs([tmp_path / "sweep"])[0]).values()
    x, y = curves.aligned_curves(next(iter(runs.values())))
    assert x.tolist() == [1000, 2000, 3000, 4000, 5000, 6000]
    np.testing.assert_allclose(y, [[np.nan, 10, 20, 30, 40, 50], [np.nan, 110, 120, 130, 140, 150]])


# -- step behaviour -----------------------------------------------------------------------------------


def _step_rows(n: int, violated: list[int], accepted: list[int], fraction: list[float], backtracks: list[int],
               full_violated: list[int], full_kl: list[float], returns: list[float], kl_over_delta: list[float]) -> list[dict]:
    # update k's return/delta = return(batch k+1) − return(batch k); the last update's is null (no batch follows)
    deltas = [returns[i + 1] - returns[i] for i in range(n - 1)] + [None]
    return return_rows(
        returns,
        **{"step/constraint_violated": violated, "line_search/accepted": accepted, "step/fraction": fraction,
           "line_search/backtracks": backtracks, "full_step/constraint_violated": full_violated,
           "full_step/kl_mean": full_kl, "step/kl_over_delta": kl_over_delta, "return/delta": deltas,
           "return/episodes": [3] * n, "step/skipped": [0] * n, "step/surrogate_expected": [0.01] * n,
           "step/surrogate_actual": [0.008] * n, "step/improvement_ratio": [0.8] * n},
    )


def test_step_behavior_rates_against_the_constructed_data(tmp_path):
    n, delta = 20, 0.02
    rng = np.random.default_rng(0)
    truth = {"violation": [], "rejected": [], "changed": [], "full": [], "backtracks": [], "full_kl": [], "deltas": []}
    trpo_returns = {}
    for seed in range(3):
        violated = [int(i < 2 + seed) for i in range(n)]  # 2, 3, 4 violations of 20
        accepted = [int(i >= seed) for i in range(n)]  # 0, 1, 2 rejections
        fraction = [0.0 if not a else (0.8 if i % 5 == 0 else 1.0) for i, a in enumerate(accepted)]
        backtracks = [10 if not a else (1 if f < 1 else 0) for a, f in zip(accepted, fraction)]
        full_violated = [int(i % (seed + 2) == 0) for i in range(n)]
        full_kl = list(rng.uniform(0.5, 2.0, n) * delta)
        returns = list(np.cumsum(rng.normal(1.0, 3.0, n)))
        trpo_returns[seed] = returns
        rows = _step_rows(n, violated, accepted, fraction, backtracks, full_violated, full_kl, returns,
                          list(rng.uniform(0.1, 1.5, n)))
        improved = float(np.mean(np.diff(returns) > 0))
        write_run(tmp_path / "sweep" / str(seed), ["algo=trpo", f"seed={seed}"], rows, seed=seed, max_kl=delta,
                  summary={"improved_fraction": improved, "collapses": seed})
        truth["violation"].append(np.mean(violated))
        truth["rejected"].append(1 - np.mean(accepted))
        truth["changed"].append(np.mean(np.array(fraction) < 1))
        truth["full"].append(np.mean(full_violated))
        truth["backtracks"].append(np.mean(backtracks))
        truth["full_kl"].append(np.quantile(np.array(full_kl) / delta, [0.05, 0.5, 0.95]))
        truth["deltas"].append(np.quantile(np.diff(returns), [0.05, 0.5, 0.95]))  # all n − 1 defined deltas
        truth.setdefault("improved", []).append(improved)
    # trpo_no_ls, seed 0: the same returns as trpo seed 0 (an identical trajectory); never violates
    rows = _step_rows(n, [0] * n, [1] * n, [1.0] * n, [0] * n, [0] * n, [delta] * n, trpo_returns[0], [1.0] * n)
    write_run(tmp_path / "sweep" / "3", ["algo=trpo_no_ls", "seed=0"], rows, seed=0, max_kl=delta,
              summary={"improved_fraction": 0.5, "collapses": 0})

    out = tmp_path / "out"
    assert step_behavior.main([str(tmp_path / "sweep"), "--out", str(out), "--resamples", "3000"]) == 0
    report = json.loads((out / "step_behavior.json").read_text())
    trpo = report["tasks"]["Hopper-v5"]["algo=trpo"]
    rates = trpo["rates"]
    for key, name in [("violation_rate", "violation"), ("line_search_rejected", "rejected"), ("line_search_acted", "changed"),
                      ("full_step_violation_rate", "full"), ("mean_backtracks", "backtracks"), ("return_rose_rate", "improved")]:
        assert rates[key]["per_run"] == pytest.approx(truth[name]), key
        assert rates[key]["mean"] == pytest.approx(np.mean(truth[name])), key
        assert min(truth[name]) - 1e-12 <= rates[key]["ci"][0] <= rates[key]["ci"][1] <= max(truth[name]) + 1e-12
    assert rates["collapses"]["mean"] == pytest.approx(1.0)
    dist = trpo["distributions"]
    # each run's 5/50/95 % quantiles, median over the runs
    assert dist["full_step/kl_over_delta"] == pytest.approx(np.median(truth["full_kl"], axis=0).tolist())
    assert dist["return/delta"] == pytest.approx(np.median(truth["deltas"], axis=0).tolist())
    assert dist["natural/damping_share"] is None and dist["normalizer/kl_shift"] is None  # old runs: not logged
    assert trpo["updates"] == 3 * n
    no_ls = report["tasks"]["Hopper-v5"]["algo=trpo_no_ls"]["rates"]
    assert no_ls["violation_rate"]["mean"] == 0.0 and no_ls["line_search_acted"]["mean"] == 0.0
    assert all(math.isnan(v) for v in no_ls["violation_rate"]["ci"])  # one run: no interval
    (group,) = report["identical_trajectories"]
    assert {g["variant"] for g in group} == {"algo=trpo", "algo=trpo_no_ls"} and {g["seed"] for g in group} == {0}
    assert (out / "step_behavior_Hopper-v5.png").stat().st_size > 10_000
    assert "## Identical trajectories" in (out / "step_behavior.md").read_text()


# -- errors and skipped runs ----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", [[str(SCRIPTS / "plot_curves.py")], [str(SCRIPTS / "step_behavior.py")],
                                     [str(SCRIPTS / "final_scores.py")], ["-m", "trpo_lab.reports.curves"],
                                     ["-m", "trpo_lab.reports.step_behavior"], ["-m", "trpo_lab.reports.final_scores"]])
def test_reports_help_and_one_line_error_without_runs(tmp_path, command):
    run = lambda *a: subprocess.run([sys.executable, *command, *a], check=False, capture_output=True, text=True)
    assert run("--help").returncode == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run(str(empty))
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no run folders") and str(empty) in lines[0]
    assert not (empty / "analysis").exists()


@pytest.mark.parametrize("module", [curves, step_behavior, final_scores])
def test_help_prints_percent_signs_once(capsys, module):
    """argparse %-formats help strings but not the description: "95%%" there is printed as typed."""
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "%%" not in out
    if module is curves:
        assert "95% bootstrap band" in out


@pytest.mark.parametrize("module", [curves, step_behavior, final_scores])
def test_scripts_fail_clearly_when_every_run_is_incomplete(tmp_path, capsys, module):
    write_run(tmp_path / "s" / "0", ["seed=0"], return_rows([1.0]), finished=False)
    write_run(tmp_path / "s" / "1", ["seed=1"], [], finished=True)
    assert module.main([str(tmp_path / "s"), "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no complete runs" in err[0] and "2 skipped" in err[0]


# -- honest groups in the curves report --------------------------------------------------------------------


def test_curves_never_pool_a_smoke_run_with_a_full_run(tmp_path, capsys):
    # the repro: a 2,048-step smoke run and a 1M-step run were pooled as "2 seeds"
    write_run(tmp_path / "outputs" / "a", ["debug=smoke"], return_rows([24.4] * 4, batch=512), total_env_steps=2048)
    write_run(tmp_path / "outputs" / "b", [], return_rows([2736.8] * 12, batch=100_000), total_env_steps=1_000_000)
    out = tmp_path / "out"
    assert curves.main([str(tmp_path / "outputs"), "--out", str(out), "--resamples", "500"]) == 0
    records = {r["variant"]: r for r in json.loads((out / "final_performance.json").read_text())["records"]}
    assert set(records) == {"debug=smoke", "debug=(default)"}
    assert records["debug=smoke"]["final_scores"] == [24.4] and records["debug=(default)"]["final_scores"] == [2736.8]
    assert all(r["n"] == 1 and all(math.isnan(v) for v in r["iqm_ci"]) for r in records.values())
    err = capsys.readouterr().err
    assert "warning: Hopper-v5: runs differ in budgets total_env_steps ∈ {1000000, 2048}" in err


def _legend_and_axes(groups, tmp_path):
    fig = curves.draw_curves(groups, curves.parse_args([str(tmp_path), "--resamples", "200"]))
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend() or fig.legends[0]
    return fig, legend.get_window_extent(), ax.get_window_extent()


def test_a_long_legend_goes_below_the_axes_and_a_short_one_stays_inside(tmp_path):
    import matplotlib.pyplot as plt

    keys = ["algo.max_kl", "rollout.gae_lambda", "algo.solver.cg_iters"]
    for i in range(6):  # 6 variants, each labelled by three keys
        overrides = [f"{k}={0.1 * (i + 1) + j}" for j, k in enumerate(keys)]
        write_run(tmp_path / "long" / str(i), overrides, return_rows([1.0 * i, 2.0 * i]))
    fig, legend, axes = _legend_and_axes(group_runs(load_runs([tmp_path / "long"])[0]), tmp_path / "long")
    assert legend.y1 <= axes.y0 and not fig.axes[0].get_legend()  # one legend, entirely below the plotting area
    plt.close(fig)
    for i, algo in enumerate(["npg", "trpo"]):
        write_run(tmp_path / "short" / str(i), [f"algo={algo}"], return_rows([1.0 * i, 2.0 * i]))
    fig, legend, axes = _legend_and_axes(group_runs(load_runs([tmp_path / "short"])[0]), tmp_path / "short")
    assert axes.x0 <= legend.x0 and legend.x1 <= axes.x1 and axes.y0 <= legend.y0 and legend.y1 <= axes.y1
    plt.close(fig)


# -- the paired evaluation in the step-behaviour report ----------------------------------------------------

#: per seed: paired/outcome per update (1 improved, −1 worsened, 0 unresolved, None not measured)
OUTCOMES = {
    0: [1, 0, None, -1, 1, None, 1, 0],  # 3 improved, 1 worsened of 6 measured → 3/4
    1: [None, 1, 1, None, 0, 0, None, -1],  # 2 improved, 1 worsened of 5 measured → 2/3
    2: [0, 0, None, 0, None, 0, 0, 0],  # nothing resolved of 6 measured → no fraction
}
DAMPING = {0: [0.18, 0.2, 0.25, 0.3, 0.22, 0.39, 0.2, 0.21], 1: [0.3] * 8, 2: [0.1, 0.2, 0.3, 0.4, 0.5, 0.2, 0.3, 0.1]}


def _paired_study(root: Path, backtracks: int = 0) -> Path:
    """``algo=trpo`` (new code: paired outcomes, damping share, normaliser KL shift) × 3 seeds and ``algo=npg``
    (old code: none of these keys) × 2 seeds; ``line_search/backtracks`` is ``backtracks`` everywhere."""
    n = 8
    common = {"step/skipped": [0] * n, "line_search/backtracks": [backtracks] * n, "step/kl_over_delta": [0.7] * n,
              "return/delta": [1.0] * n, "return/episodes": [2] * n}
    for seed, outcomes in OUTCOMES.items():
        new = {"paired/outcome": outcomes, "paired/improvement": [None if o is None else 3.0 * o for o in outcomes],
               "natural/damping_share": DAMPING[seed], "normalizer/kl_shift": [1e-3] * n}
        write_run(root / f"trpo{seed}", ["algo=trpo", f"seed={seed}"], return_rows([100.0 + i for i in range(n)],
                  **common, **new), seed=seed)
    for seed in range(2):
        write_run(root / f"npg{seed}", ["algo=npg", f"seed={seed}"], return_rows([50.0] * n, **common), seed=seed)
    return root


def test_step_behavior_reports_the_resolved_improved_fraction_and_says_what_was_not_measured(tmp_path):
    out = tmp_path / "out"
    assert step_behavior.main([str(_paired_study(tmp_path / "sweep")), "--out", str(out), "--resamples", "2000"]) == 0
    tasks = json.loads((out / "step_behavior.json").read_text())["tasks"]["Hopper-v5"]
    paired = tasks["algo=trpo"]["paired"]
    counts = {s: (sum(o == 1 for o in v), sum(o == -1 for o in v), sum(o is not None for o in v)) for s, v in OUTCOMES.items()}
    assert (paired["improved"], paired["worsened"]) == (5, 2) == tuple(sum(c[i] for c in counts.values()) for i in (0, 1))
    assert (paired["resolved"], paired["measured"], paired["measured_runs"], paired["runs_with_resolved"]) == (7, 17, 3, 2)
    per_run = paired["improved_fraction"]["per_run"]
    assert per_run[:2] == [pytest.approx(3 / 4), pytest.approx(2 / 3)] and math.isnan(per_run[2])
    assert paired["improved_fraction"]["mean"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    lo, hi = paired["improved_fraction"]["ci"]
    assert 2 / 3 - 1e-12 <= lo < hi <= 3 / 4 + 1e-12
    per_run = np.array([np.quantile(DAMPING[s], [0.05, 0.5, 0.95]) for s in OUTCOMES])  # median over runs of each
    assert tasks["algo=trpo"]["distributions"]["natural/damping_share"] == pytest.approx(np.median(per_run, axis=0).tolist())
    assert tasks["algo=npg"]["paired"] == {"measured_runs": 0}
    assert tasks["algo=npg"]["distributions"]["normalizer/kl_shift"] is None
    md = (out / "step_behavior.md").read_text()
    share = (4 / 6 + 3 / 5 + 0 / 6) / 3  # resolved / measured per run, mean over runs (pooled 7 / 17 would be 0.41)
    assert f"| algo=trpo | {(3 / 4 + 2 / 3) / 2:.2f} [{lo:.2f}, {hi:.2f}] | 7 of 17 | {share:.2f} | 5 / 2 |" in md
    assert "| algo=npg | not measured |" in md


def test_step_behavior_leaves_out_null_and_no_evidence_deltas_and_keeps_the_first(tmp_path):
    """Two seeds logged with the return window; per update (return/window_fresh, return/delta). A null delta (before
    the first episode, the last update) and a 0 after a batch without episodes (no new evidence) are left out,
    never "did not rise"; the first defined delta (update 2) counts."""
    from trpo_lab.reports.step_behavior_figure import pooled

    logged = {0: [(0, None), (2, 3.0), (1, 0.0), (0, -1.0), (3, 2.0), (2, None)],
              1: [(1, -4.0), (3, 0.0), (0, 5.0), (2, 0.0), (0, 1.0), (3, None)]}
    defined = {0: [3.0, -1.0, 2.0], 1: [-4.0, 5.0, 1.0]}  # by hand: next row's fresh > 0 and the delta not null
    for seed, seq in logged.items():
        n = len(seq)
        write_run(tmp_path / "sweep" / str(seed), ["algo=trpo", f"seed={seed}"], return_rows(
            [None] + [10.0] * (n - 1), **{"step/skipped": [0] * n, "return/window_fresh": [f for f, _ in seq],
                                           "return/delta": [d for _, d in seq]}), seed=seed)
    out = tmp_path / "out"
    assert step_behavior.main([str(tmp_path / "sweep"), "--out", str(out), "--resamples", "200"]) == 0
    trpo = json.loads((out / "step_behavior.json").read_text())["tasks"]["Hopper-v5"]["all runs"]  # one variant
    assert trpo["rates"]["return_rose_rate"]["per_run"] == [pytest.approx(2 / 3), pytest.approx(2 / 3)]
    per_run = np.array([np.quantile(defined[s], [0.05, 0.5, 0.95]) for s in defined])
    assert trpo["distributions"]["return/delta"] == pytest.approx(np.median(per_run, axis=0).tolist())
    (variants,) = group_runs(load_runs([tmp_path / "sweep"])[0]).values()
    (runs,) = variants.values()
    assert sorted(pooled(runs, "return/delta").tolist()) == sorted(defined[0] + defined[1])


def _panel_titles(root: Path) -> list[str]:
    import matplotlib.pyplot as plt

    args = step_behavior.parse_args([str(root), "--resamples", "200"])
    (variants,) = group_runs(load_runs([root])[0]).values()
    report = {v: step_behavior.variant_record(rs, args) for v, rs in variants.items()}
    fig = step_behavior.draw_task("Hopper-v5", variants, report, args)
    titles = [ax.get_title() for ax in fig.axes if ax.axison]
    plt.close(fig)
    return titles


def test_step_behavior_drops_panels_without_information(tmp_path):
    titles = _panel_titles(_paired_study(tmp_path / "new", backtracks=0))
    assert "backtracks per update" not in titles  # every variant: 0 backtracks at every update
    assert "paired evaluation: resolved improved fraction" in titles and "damping share of the curvature" in titles
    assert "KL/δ of the step taken" in titles
    assert not any("full KL-scaled step" in t or "surrogate" in t for t in titles)  # never logged here
    titles = _panel_titles(_paired_study(tmp_path / "bt", backtracks=2))
    assert "backtracks per update" in titles


def test_step_behavior_leaves_out_the_paired_panel_when_paired_evaluation_was_off(tmp_path):
    """Paired evaluation off: every row logs ``paired/outcome`` as null; the panel would read "0/0 resolved"."""
    root = tmp_path / "off"
    n = 6
    for seed in range(2):
        write_run(root / f"trpo{seed}", ["algo=trpo", f"seed={seed}"], return_rows(
            [100.0 + i for i in range(n)], **{"step/skipped": [0] * n, "line_search/backtracks": [1] * n,
                                              "step/kl_over_delta": [0.7] * n, "paired/outcome": [None] * n}), seed=seed)
    titles = _panel_titles(root)
    assert "KL/δ of the step taken" in titles
    assert "paired evaluation: resolved improved fraction" not in titles


def test_curves_name_the_axis_in_words_and_flag_bands_over_fewer_than_5_seeds(tmp_path):
    import matplotlib.pyplot as plt

    for seed in range(5):  # trpo: 5 seeds; npg: 2 seeds
        write_run(tmp_path / "s" / f"t{seed}", ["algo=trpo", f"seed={seed}"], return_rows([1.0, 2.0 + seed]), seed=seed)
    for seed in range(2):
        write_run(tmp_path / "s" / f"n{seed}", ["algo=npg", f"seed={seed}"], return_rows([1.0, 3.0 + seed]), seed=seed)
    groups = group_runs(load_runs([tmp_path / "s"])[0])
    fig = curves.draw_curves(groups, curves.parse_args([str(tmp_path / "s"), "--resamples", "200"]))
    ax = fig.axes[0]
    labels = ax.get_legend_handles_labels()[1]
    assert ax.get_ylabel() == "training return (stochastic policy)"
    assert "algo=npg (n=2*)" in labels and "algo=trpo (n=5)" in labels
    assert "fewer than 5 seeds" in fig._suptitle.get_text()
    plt.close(fig)
    only_five = {t: {v: rs for v, rs in vs.items() if "trpo" in v} for t, vs in groups.items()}
    fig = curves.draw_curves(only_five, curves.parse_args([str(tmp_path / "s"), "--resamples", "200"]))
    assert "fewer than" not in fig._suptitle.get_text()
    plt.close(fig)


def test_curves_name_identical_runs_as_such(tmp_path):
    import matplotlib.pyplot as plt

    for i, ls in enumerate(["none", "backtracking"]):  # the same returns: a line search that never acted
        for seed in range(2):
            write_run(tmp_path / "s" / f"{ls}{seed}", [f"algo/line_search={ls}", f"seed={seed}"],
                      return_rows([1.0, 2.0 + seed]), seed=seed)
    write_run(tmp_path / "s" / "npg0", ["algo/line_search=npg", "seed=0"], return_rows([1.0, 9.0]), seed=0)
    write_run(tmp_path / "s" / "npg1", ["algo/line_search=npg", "seed=1"], return_rows([1.0, 2.0]), seed=1)
    fig = curves.draw_curves(group_runs(load_runs([tmp_path / "s"])[0]), curves.parse_args([str(tmp_path / "s"), "--resamples", "200"]))
    labels = [t.get_text() for leg in [fig.axes[0].get_legend(), *fig.legends] if leg for t in leg.get_texts()]
    a, b = "algo/line_search=backtracking", "algo/line_search=none"  # the later one drawn names the earlier
    assert {f"{a} (n=2*; identical to {b})", f"{b} (n=2*)"} <= set(labels) or {f"{b} (n=2*; identical to {a})", f"{a} (n=2*)"} <= set(labels)
    assert "algo/line_search=npg (n=2*)" in labels
    plt.close(fig)

