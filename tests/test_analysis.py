"""The analysis scripts and their statistics, on synthetic run folders with known numbers.

Every expected number is computed here from the data the test writes (or by scipy), never taken
from the code under test.
"""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from trpo_lab.analysis import (
    bootstrap_mean_band,
    interquartile_mean,
    load_runs,
    read_run,
    stratified_bootstrap_ci,
    variant_labels,
)
from trpo_lab.sweep import write_sweep_summary

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plot_curves = _load_script("plot_curves")
step_behavior = _load_script("step_behavior")


def write_run(
    path: Path,
    overrides: list[str],
    rows: list[dict],
    *,
    env_id: str = "Hopper-v5",
    seed: int = 0,
    max_kl: float = 0.01,
    summary: dict | None = None,
    finished: bool = True,
    error: str | None = None,
) -> Path:
    """A run folder as a training job writes it (README: config.yaml, metrics.jsonl, summary.json, .hydra/)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (path / "config.yaml").write_text(yaml.safe_dump({"seed": seed, "env": {"id": env_id}, "algo": {"max_kl": max_kl}}))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        (path / "summary.json").write_text(json.dumps(summary or {"env_steps": rows[-1]["env_steps"] if rows else 0}))
    if error is not None:
        (path / "error.txt").write_text(error)
    return path


def return_rows(returns: list[float | None], batch: int = 1000, **columns: list) -> list[dict]:
    """One row per update with ``return/mean`` = returns[i]; other keys from ``columns``."""
    rows = []
    for i, ret in enumerate(returns):
        row = {"env_steps": (i + 1) * batch, "update": i + 1, "return/mean": ret}
        row.update({k: v[i] for k, v in columns.items()})
        rows.append(row)
    return rows


# -- statistics -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", list(range(1, 14)) + [40, 101])
def test_iqm_matches_scipy_trim_mean(n):
    x = np.random.default_rng(n).normal(size=n) * 10 + np.arange(n)
    assert interquartile_mean(x) == pytest.approx(stats.trim_mean(x, 0.25), rel=1e-12, abs=1e-12)


def test_bootstrap_ci_of_a_constant_is_the_constant():
    for statistic in (np.mean, interquartile_mean):
        assert stratified_bootstrap_ci([[3.5] * 7], statistic) == (3.5, 3.5)
        assert stratified_bootstrap_ci([[3.5] * 3, [3.5] * 9], statistic) == (3.5, 3.5)


def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    x = np.random.default_rng(1).normal(5.0, 2.0, size=30)
    lo, hi = stratified_bootstrap_ci([x], np.mean, n_resamples=40_000, seed=3)
    ref = stats.bootstrap((x,), np.mean, n_resamples=40_000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(4)).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.03) and hi == pytest.approx(ref.high, abs=0.03)


def test_bootstrap_ci_is_reproducible_with_its_seed():
    x = np.random.default_rng(2).normal(size=12)
    assert stratified_bootstrap_ci([x], interquartile_mean, seed=7) == stratified_bootstrap_ci([x], interquartile_mean, seed=7)


def test_stratified_bootstrap_resamples_within_strata():
    # two constant strata of different sizes: every stratified resample keeps 3 a's and 5 b's, so the mean
    # over all scores is always (3a + 5b)/8 (an unstratified bootstrap would vary)
    lo, hi = stratified_bootstrap_ci([[1.0] * 3, [9.0] * 5], np.mean, n_resamples=2000)
    assert lo == pytest.approx((3 * 1 + 5 * 9) / 8) and hi == pytest.approx((3 * 1 + 5 * 9) / 8)
    # a constant and a random stratum: the CI width is that of (n2/N)·mean(stratum 2), normal approximation
    rng = np.random.default_rng(5)
    a, b = np.full(50, 2.0), rng.normal(0.0, 3.0, size=200)
    lo, hi = stratified_bootstrap_ci([a, b], np.mean, n_resamples=20_000)
    sd = (200 / 250) * b.std(ddof=0) / math.sqrt(200)
    assert hi - lo == pytest.approx(2 * stats.norm.ppf(0.975) * sd, rel=0.06)
    assert (lo + hi) / 2 == pytest.approx((50 * 2.0 + b.sum()) / 250, abs=0.1 * sd)


def test_bootstrap_band_is_the_curve_when_seeds_agree_and_the_mean_otherwise():
    base = np.linspace(0, 100, 25)
    mean, lo, hi = bootstrap_mean_band(np.vstack([base] * 4))
    np.testing.assert_allclose(mean, base)
    np.testing.assert_allclose(lo, base)
    np.testing.assert_allclose(hi, base)
    curves = np.vstack([base + off for off in (-3.0, 0.0, 1.0, 6.0)])
    mean, lo, hi = bootstrap_mean_band(curves)
    np.testing.assert_allclose(mean, base + 1.0)
    # a resampled mean lies between the smallest and largest seed at every point
    assert np.all(lo >= base - 3.0 - 1e-9) and np.all(hi <= base + 6.0 + 1e-9) and np.all(lo < hi)


# -- run folders and variants ---------------------------------------------------------------------------


def test_variant_labels_use_the_overrides_that_differ_except_seed_task_and_logging(tmp_path):
    runs = []
    for i, (algo, seed, mode, env) in enumerate([("npg", 0, "offline", "hopper"), ("npg", 1, "disabled", "walker2d"),
                                                 ("trpo", 0, "offline", "hopper")]):
        p = write_run(tmp_path / str(i), [f"algo={algo}", f"seed={seed}", f"logger.wandb.mode={mode}", f"env={env}",
                                          "experiment=variants"], return_rows([1.0]))
        runs.append(read_run(p))
    labels = variant_labels(runs)
    assert [labels[r.path] for r in runs] == ["algo=npg", "algo=npg", "algo=trpo"]
    only_seeds = [read_run(write_run(tmp_path / f"s{s}", [f"seed={s}"], return_rows([1.0]))) for s in range(2)]
    assert set(variant_labels(only_seeds).values()) == {"all runs"}


def test_a_killed_writers_torn_last_line_is_dropped(tmp_path):
    p = write_run(tmp_path / "r", ["seed=0"], return_rows([1.0, 2.0]), finished=False)
    with open(p / "metrics.jsonl", "a") as f:
        f.write('{"env_steps": 3000, "return/me')
    run = read_run(p)
    assert [r["env_steps"] for r in run.rows] == [1000, 2000] and run.status == "incomplete"


# -- plot_curves.py -------------------------------------------------------------------------------------


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
    assert plot_curves.main([str(sweep), "--out", str(out), "--resamples", "4000"]) == 0
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
    assert plot_curves.main([str(tmp_path / "sweep"), "--out", str(out), "--final-window", "5"]) == 0
    (rec,) = json.loads((out / "final_performance.json").read_text())["records"]
    assert rec["final_scores"] == [pytest.approx(np.mean(returns[-5:]))]


# -- step_behavior.py -----------------------------------------------------------------------------------


def _step_rows(n: int, violated: list[int], accepted: list[int], fraction: list[float], backtracks: list[int],
               full_violated: list[int], full_kl: list[float], returns: list[float], kl_over_delta: list[float]) -> list[dict]:
    deltas = [0.0] + [returns[i] - returns[i - 1] for i in range(1, n)]
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
    truth = {"violation": [], "rejected": [], "changed": [], "full": [], "backtracks": []}
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
        truth.setdefault("full_kl", []).extend(np.array(full_kl) / delta)
        truth.setdefault("deltas", []).extend(np.diff(returns))
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
    for key, name in [("violation_rate", "violation"), ("rejected_rate", "rejected"), ("ls_changed_rate", "changed"),
                      ("full_step_violation_rate", "full"), ("mean_backtracks", "backtracks"), ("improved_fraction", "improved")]:
        assert rates[key]["per_run"] == pytest.approx(truth[name]), key
        assert rates[key]["mean"] == pytest.approx(np.mean(truth[name])), key
        assert min(truth[name]) - 1e-12 <= rates[key]["ci"][0] <= rates[key]["ci"][1] <= max(truth[name]) + 1e-12
    assert rates["collapses"]["mean"] == pytest.approx(1.0)
    assert trpo["full_step_kl_over_delta_q05_q50_q95"] == pytest.approx(np.quantile(truth["full_kl"], [0.05, 0.5, 0.95]).tolist())
    assert trpo["return_delta_q05_q50_q95"] == pytest.approx(np.quantile(truth["deltas"], [0.05, 0.5, 0.95]).tolist())
    assert trpo["updates"] == 3 * n
    no_ls = report["tasks"]["Hopper-v5"]["algo=trpo_no_ls"]["rates"]
    assert no_ls["violation_rate"]["ci"] == [0.0, 0.0] and no_ls["ls_changed_rate"]["mean"] == 0.0
    (group,) = report["identical_trajectories"]
    assert {g["variant"] for g in group} == {"algo=trpo", "algo=trpo_no_ls"} and {g["seed"] for g in group} == {0}
    assert (out / "step_behavior_Hopper-v5.png").stat().st_size > 10_000
    assert "## Identical trajectories" in (out / "step_behavior.md").read_text()


# -- errors and skipped runs ----------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["plot_curves.py", "step_behavior.py"])
def test_scripts_help_and_one_line_error_without_runs(tmp_path, script):
    run = lambda *a: subprocess.run([sys.executable, str(SCRIPTS / script), *a], check=False, capture_output=True, text=True)
    assert run("--help").returncode == 0
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run(str(empty))
    assert res.returncode != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no run folders") and str(empty) in lines[0]
    assert not (empty / "analysis").exists()


@pytest.mark.parametrize("module", [plot_curves, step_behavior])
def test_scripts_fail_clearly_when_every_run_is_incomplete(tmp_path, capsys, module):
    write_run(tmp_path / "s" / "0", ["seed=0"], return_rows([1.0]), finished=False)
    write_run(tmp_path / "s" / "1", ["seed=1"], [], finished=True)
    assert module.main([str(tmp_path / "s"), "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no complete runs" in err[0] and "2 skipped" in err[0]


def test_load_runs_sorts_jobs_naturally_and_separates_incomplete_ones(tmp_path):
    for job in (0, 2, 10):
        write_run(tmp_path / str(job), [f"seed={job}"], return_rows([1.0]), seed=job)
    write_run(tmp_path / "3", ["seed=3"], [], finished=False)
    ok, skipped = load_runs([tmp_path])
    assert [r.path.name for r in ok] == ["0", "2", "10"] and [r.path.name for r in skipped] == ["3"]


# -- sweep summary --------------------------------------------------------------------------------------


def test_sweep_summary_lists_each_jobs_status_return_and_error(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", ["algo=npg", "seed=0"], return_rows([1.0, 7.5]), summary={"env_steps": 2000, "final_return": 7.5})
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: bad env\n'
    write_run(sweep / "1", ["algo=trpo", "seed=0"], [], finished=False, error=traceback)
    write_run(sweep / "2", ["algo=trpo", "seed=1"], return_rows([3.0, 4.0, None]), finished=False)
    summary = write_sweep_summary(sweep)
    on_disk = json.loads((sweep / "sweep_summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert (summary["jobs_total"], summary["ok"], summary["failed"], summary["incomplete"]) == (3, 1, 1, 1)
    jobs = {j["job"]: j for j in summary["jobs"]}
    assert jobs["0"] == {"job": "0", "overrides": ["algo=npg", "seed=0"], "status": "ok", "env_steps": 2000,
                         "final_return": 7.5, "error": None}
    assert jobs["1"]["status"] == "failed" and jobs["1"]["error"] == "ValueError: bad env"
    assert jobs["2"]["status"] == "incomplete" and jobs["2"]["final_return"] == 4.0 and jobs["2"]["env_steps"] == 3000
    md = (sweep / "sweep_summary.md").read_text()
    assert "3 jobs — 1 ok, 1 failed, 1 incomplete" in md and "ValueError: bad env" in md


def test_an_error_from_an_earlier_attempt_does_not_mark_a_finished_rerun_failed(tmp_path):
    import os

    p = write_run(tmp_path / "0", ["seed=0"], return_rows([1.0]), error="ValueError: first attempt\n")
    os.utime(p / "error.txt", (1_000_000, 1_000_000))  # the failed attempt, long before the re-run finished
    assert read_run(p).status == "ok"
    os.utime(p / "summary.json", (500_000, 500_000))  # a later attempt failed after an earlier one finished
    assert read_run(p).status == "failed" and read_run(p).error == "ValueError: first attempt"
