"""The study record (trpo_lab.reports.final_scores) against numbers computed by hand from constructed runs."""
from __future__ import annotations

import csv
import json
import math

import pytest
from helpers import MUJOCO_1M_RUNS, return_rows, write_run
from test_run_stats import rows as scripted_rows

from trpo_lab.reports import final_scores, step_behavior


def _run(root, name, algo, seed, eval_mean, returns, **columns):
    summary = {"env_steps": len(returns) * 1000, "updates": len(returns), "collapses": seed, "worst_drop": -1.0,
               "wall_s": 1.0, "meta": {"git_commit": "abc"},
               "final_eval": {"return_mean": eval_mean, "return_std": 0.0, "episodes": 10, "update": len(returns)}}
    write_run(root / name, [f"algo={algo}", f"seed={seed}"], return_rows(returns, **columns), seed=seed, summary=summary)


def test_runs_csv_and_table_against_hand_computed_values(tmp_path):
    root = tmp_path / "sweep"
    evals = [100.0, 400.0, 200.0, 1000.0, 300.0]  # IQM over 5 seeds: trim_mean(·, 0.25) drops 1 at each end → mean(200, 300, 400)
    for seed, ev in enumerate(evals):
        returns = [0.0] * 5 + [float(seed)] * 2 + [10.0 * seed] * 10  # last 10 updates all 10·seed
        n = len(returns)
        _run(root, f"trpo{seed}", "trpo", seed, ev, returns,
             **{"step/fraction": [1.0] * (n - 4) + [0.5] * 4,  # the line search shortened 4 of 17 steps
                "line_search/accepted": [True] * (n - 1) + [False],  # and rejected the last
                "full_step/constraint_violated": [False] * (n - 5) + [True] * 5,
                "step/constraint_violated": [False] * n,
                # per-run medians 0.8, 0.8, 0.8, 0.9, 5.8: their median 0.8 (their mean would be 1.82)
                "step/kl_over_delta": [0.1 * i + (0, 0, 0, 0.1, 5.0)[seed] for i in range(n)],
                # improved / resolved: 2/3 for seeds 0-3, 0/1 for seed 4
                "paired/outcome": ([None, 1, None, -1, 0, 1] if seed < 4 else [None, -1, None, 0, 0, 0]) + [None] * (n - 6)})
    _run(root, "npg0", "npg", 0, 50.0, [1.0] * 12, **{"step/fraction": [1.0] * 12, "line_search/accepted": [True] * 12,
                                                        "step/constraint_violated": [True] * 3 + [False] * 9})
    assert final_scores.main([str(root), "--out", str(tmp_path / "out")]) == 0

    with open(tmp_path / "out" / "runs.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    trpo = [r for r in rows if r["variant"] == "algo=trpo"]
    assert [int(r["seed"]) for r in trpo] == [0, 1, 2, 3, 4]
    assert [float(r["train_final"]) for r in trpo] == [10.0 * s for s in range(5)]
    assert [float(r["eval_final"]) for r in trpo] == evals
    assert float(trpo[0]["line_search_acted"]) == pytest.approx(4 / 17)
    assert float(trpo[0]["line_search_rejected"]) == pytest.approx(1 / 17)
    assert float(trpo[0]["accepted_rate"]) == pytest.approx(16 / 17)
    assert float(trpo[0]["full_step_violation_rate"]) == pytest.approx(5 / 17)
    assert float(trpo[0]["kl_over_delta_median"]) == pytest.approx(0.8)
    assert (trpo[0]["paired_measured"], trpo[0]["paired_resolved"], trpo[0]["paired_improved"]) == ("4", "3", "2")
    assert float(trpo[4]["kl_over_delta_median"]) == pytest.approx(5.8)
    npg = [r for r in rows if r["variant"] == "algo=npg"]
    assert float(npg[0]["violation_rate"]) == pytest.approx(3 / 12)

    records = {r["variant"]: r for r in json.loads((tmp_path / "out" / "final_scores.json").read_text())["records"]}
    rec = records["algo=trpo"]
    assert rec["eval_final"]["iqm"] == pytest.approx((200 + 300 + 400) / 3)
    assert rec["eval_final"]["mean"] == pytest.approx(400.0)
    assert rec["train_final"]["iqm"] == pytest.approx((10 + 20 + 30) / 3)
    lo, hi = rec["eval_final"]["iqm_ci"]
    assert 100 <= lo < rec["eval_final"]["iqm"] < hi <= 1000
    assert rec["collapses"] == 0 + 1 + 2 + 3 + 4
    assert (rec["paired_improved"], rec["paired_resolved"]) == (8, 13)
    assert rec["resolved_improved_fraction"] == pytest.approx((4 * 2 / 3 + 0) / 5)  # mean over runs; pooled: 8/13
    assert rec["kl_over_delta_median"] == pytest.approx(0.8)  # median of the per-run medians
    table = (tmp_path / "out" / "final_scores.md").read_text()
    assert "| Hopper-v5 | algo=trpo | 5 | 300 [" in table and "8/13 (53%)" in table and "| 0.80 |" in table

    # rebuilt from runs.csv alone: the same tables, runs.csv left as it is
    csv_text = (tmp_path / "out" / "runs.csv").read_bytes()
    assert final_scores.main([str(tmp_path / "out" / "runs.csv"), "--out", str(tmp_path / "again")]) == 0
    assert not (tmp_path / "again" / "runs.csv").exists() and (tmp_path / "out" / "runs.csv").read_bytes() == csv_text
    again = (tmp_path / "again" / "final_scores.md").read_text()
    strip = lambda text: text.split("\n\nSources: ")[0]
    assert strip(again) == strip(table) and f"Sources: `{tmp_path / 'out' / 'runs.csv'}`" in again
    first, second = (json.loads((tmp_path / d / "final_scores.json").read_text())["records"] for d in ("out", "again"))
    assert json.dumps(first) == json.dumps(second)  # NaN-safe: equal text


def test_a_runs_csv_without_the_columns_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "runs.csv").write_text("task,variant\nHopper-v5,a\n")
    assert final_scores.main([str(tmp_path / "runs.csv")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing columns: seed" in err and err.count("\n") == 1


def test_both_reports_take_the_per_run_statistics_from_one_definition(tmp_path):
    """The scripted run of test_run_stats (a skipped update, nulls, a rejected step) through both reports: each
    gives the hand counts of that file's table."""
    rows = scripted_rows()
    for i, r in enumerate(rows):
        r.update({"env_steps": 1000 * (i + 1), "return/mean": 10.0 * i})
    summary = {"collapses": 3, "updates": len(rows), "final_eval": {"return_mean": 1.0}}
    write_run(tmp_path / "sweep" / "0", ["algo=trpo", "seed=0"], rows, summary=summary)
    assert final_scores.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "runs.csv", newline="") as f:
        (row,) = csv.DictReader(f)
    expected = {"violation_rate": 1 / 4, "accepted_rate": 4 / 5, "line_search_rejected": 1 / 5,
                "line_search_acted": 2 / 5, "full_step_violation_rate": 2 / 4, "kl_over_delta_median": 0.8}
    assert {k: float(row[k]) for k in expected} == pytest.approx(expected)
    assert (row["paired_measured"], row["paired_resolved"], row["paired_improved"], row["collapses"]) == ("3", "2", "1", "3")

    assert step_behavior.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out"), "--resamples", "100"]) == 0
    rec = json.loads((tmp_path / "out" / "step_behavior.json").read_text())["tasks"]["Hopper-v5"]["all runs"]
    rates = {k: v["per_run"][0] for k, v in rec["rates"].items()}
    assert rates == pytest.approx({"violation_rate": 1 / 4, "line_search_rejected": 1 / 5, "line_search_acted": 2 / 5,
                                   "full_step_violation_rate": 2 / 4, "mean_backtracks": 11 / 5,
                                   "surrogate_not_raised_rate": 2 / 5, "return_rose_rate": 2 / 3, "collapses": 3.0})
    assert (rec["updates"], rec["skipped_updates"]) == (5, 1)
    assert rec["distributions"]["step/kl_over_delta"][1] == pytest.approx(0.8)
    paired = rec["paired"]
    assert (paired["measured"], paired["resolved"], paired["improved"], paired["worsened"]) == (3, 2, 1, 1)
    assert paired["resolved_share"]["per_run"] == [pytest.approx(2 / 3)]
    assert not math.isnan(paired["improved_fraction"]["mean"])


def test_a_tables_rebuild_from_runs_csv_keeps_the_order_the_runs_were_read_in(tmp_path):
    """Seeds 0-2, 5, 3 in folders whose natural order is not the seed order (``s5-9`` sorts before ``s34``, as in
    kl_units): the per-seed list, and so the bootstrap's input, must come out in folder order from runs.csv too."""
    for folder, seed in [("base/0", 0), ("base/1", 1), ("base/2", 2), ("s5-9/0", 5), ("s34/0", 3)]:
        _run(tmp_path / "sweep", folder, "trpo", seed, 100.0 * seed + 7, [float(seed)] * 12)
    assert final_scores.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    assert final_scores.main([str(tmp_path / "out" / "runs.csv"), "--out", str(tmp_path / "again")]) == 0
    first, second = (json.loads((tmp_path / d / "final_scores.json").read_text())["records"][0] for d in ("out", "again"))
    assert first["seeds"] == [0, 1, 2, 5, 3] == second["seeds"]
    assert second["eval_final"] == first["eval_final"]


def test_several_runs_csv_read_as_one_and_a_group_in_two_is_an_error(tmp_path, capsys):
    with open(MUJOCO_1M_RUNS, newline="") as f:
        reader = csv.DictReader(f)
        rows, fields = list(reader), reader.fieldnames
    halves = {"trpo.csv": [r for r in rows if r["variant"].startswith("algo=trpo,")],
              "others.csv": [r for r in rows if not r["variant"].startswith("algo=trpo,")]}
    for name, part in halves.items():
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.DictWriter(f, fields)
            w.writeheader()
            w.writerows(part)
    assert final_scores.main([str(tmp_path / "trpo.csv"), str(tmp_path / "others.csv"), "--out", str(tmp_path / "both")]) == 0
    saved = json.loads((tmp_path / "both" / "final_scores.json").read_text())
    seen = {(r["task"], r["variant"]): r for r in saved["records"]}
    expected = {(r["task"], r["variant"]) for r in rows}
    assert set(seen) == expected and sum(len(r["seeds"]) for r in seen.values()) == len(rows)
    capsys.readouterr()
    assert final_scores.main([str(tmp_path / "trpo.csv"), str(tmp_path / "trpo.csv"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "also in an earlier runs.csv" in err and err.count("\n") == 1


def test_a_record_grows_by_new_sweeps_and_never_extends_a_group_it_holds(tmp_path, capsys):
    """``runs.csv NEW_SWEEP --out``: the record's rows, then the new runs' (their labels naming the record's keys),
    in one rewritten runs.csv whose tables equal a rebuild from it; new runs of a (task, variant) the CSV already
    holds are a one-line error that writes nothing."""
    for seed, ev in enumerate([10.0, 20.0]):
        _run(tmp_path / "old", f"trpo{seed}", "trpo", seed, ev, [1.0] * 12)
        _run(tmp_path / "old", f"npg{seed}", "npg", seed, ev + 1, [2.0] * 12)
    assert final_scores.main([str(tmp_path / "old"), "--out", str(tmp_path / "rec")]) == 0
    for seed, ev in enumerate([100.0, 300.0, 200.0]):
        _run(tmp_path / "new", f"a3_{seed}", "npg_a3", seed, ev, [3.0] * 12)
        _run(tmp_path / "new", f"a9_{seed}", "npg_a9", seed, ev * 2, [4.0] * 12)
    _run(tmp_path / "one", "a27_0", "npg_a27", 0, 5.0, [5.0] * 12)
    _run(tmp_path / "one", "a27_1", "npg_a27", 1, 7.0, [5.0] * 12)
    records_csv = tmp_path / "rec" / "runs.csv"
    old_lines = records_csv.read_text().splitlines()
    assert final_scores.main([str(records_csv), str(tmp_path / "new"), "--out", str(tmp_path / "rec")]) == 0
    assert records_csv.read_text().splitlines()[:5] == old_lines  # header and the 4 old rows, as they were
    with open(records_csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows[4:]] == ["algo=npg_a3"] * 3 + ["algo=npg_a9"] * 3
    assert [float(r["eval_final"]) for r in rows if r["variant"] == "algo=npg_a9"] == [200.0, 600.0, 400.0]
    merged = json.loads((tmp_path / "rec" / "final_scores.json").read_text())["records"]
    # IQM = trim_mean(·, 0.25): of 2 or 3 seeds it trims int(0.25·n) = 0 per end, so it is the mean
    assert {r["variant"]: r["eval_final"]["iqm"] for r in merged} == pytest.approx(
        {"algo=trpo": 15.0, "algo=npg": 16.0, "algo=npg_a3": 200.0, "algo=npg_a9": 400.0})
    assert final_scores.main([str(records_csv), "--out", str(tmp_path / "again")]) == 0
    assert json.loads((tmp_path / "again" / "final_scores.json").read_text())["records"] == merged

    # one new setting alone would be "all runs"; beside the record it names the record's key
    assert final_scores.main([str(records_csv), str(tmp_path / "one"), "--out", str(tmp_path / "rec")]) == 0
    with open(records_csv, newline="") as f:
        assert [r["variant"] for r in csv.DictReader(f)][-2:] == ["algo=npg_a27"] * 2

    before = records_csv.read_text()
    capsys.readouterr()
    assert final_scores.main([str(records_csv), str(tmp_path / "new"), "--out", str(tmp_path / "rec")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: new runs of Hopper-v5 / algo=npg_a3, Hopper-v5 / algo=npg_a9 are already in")
    assert err.count("\n") == 1 and records_csv.read_text() == before


def test_a_sweep_linked_into_the_working_directory_is_recorded_by_its_relative_path(tmp_path, monkeypatch):
    """A study's sweeps linked in (``ln -s ../study-X/studies studies``) must not put the link's target, an
    absolute path of this machine, into runs.csv; the same folder reached through the link and directly counts once."""
    elsewhere, here = tmp_path / "study-X" / "studies", tmp_path / "main"
    for seed in (0, 1):
        _run(elsewhere / "sweep", str(seed), "trpo", seed, 100.0 * seed, [1.0] * 3)
    here.mkdir()
    (here / "studies").symlink_to(elsewhere)
    monkeypatch.chdir(here)
    assert final_scores.main(["studies", str(elsewhere), "--out", "out"]) == 0
    with open(here / "out" / "runs.csv", newline="") as f:
        runs = [r["run"] for r in csv.DictReader(f)]
    assert runs == ["studies/sweep/0", "studies/sweep/1"]
