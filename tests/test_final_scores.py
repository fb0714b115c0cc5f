"""The study record (trpo_lab.reports.final_scores) against numbers computed by hand from constructed runs."""
from __future__ import annotations

import csv
import json

import pytest
from helpers import return_rows, write_run

from trpo_lab.reports import final_scores


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
                "step/kl_over_delta": [0.1 * i for i in range(n)],  # median: 0.8
                "paired/outcome": [None, 1, None, -1, 0, 1] + [None] * (n - 6)})
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
    assert (rec["paired_improved"], rec["paired_resolved"]) == (10, 15)
    table = (tmp_path / "out" / "final_scores.md").read_text()
    assert "| Hopper-v5 | algo=trpo | 5 | 300 [" in table and "10/15 (67%)" in table
