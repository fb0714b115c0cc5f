"""trpo_lab.reports.run_stats against hand computations on a scripted run of six updates.

The run (None: the key is null that update; "—": the key is absent from the row):

    update  skipped  violated  accepted  fraction  full viol.  backtracks  KL/δ  return/delta  surr. actual  paired
    1       0        0         1         1.0       0           0           0.5   +3            0.1           None
    2       0        1         1         0.5       1           1           1.2   −2            −0.1          1
    3       1        0         0         0.0       0           0           0.0   +5            0.0           0     (skipped: placeholder zeros)
    4       0        0         0         0.0       1           10          0.0   None          0.0           −1    (rejected)
    5       0        0         1         1.0       0           0           0.8   +4            0.2           0
    6       0        —         1         1.0       None        0           0.9   None          0.3           None

Formed updates: 1, 2, 4, 5, 6. Every expected number below is counted by hand from this table.
"""
from __future__ import annotations

import math

import pytest

from trpo_lab.reports import run_stats

COLUMNS = ("step/skipped", "step/constraint_violated", "line_search/accepted", "step/fraction",
           "full_step/constraint_violated", "line_search/backtracks", "step/kl_over_delta", "return/delta",
           "step/surrogate_actual", "paired/outcome")
TABLE = [
    (0, 0, 1, 1.0, 0, 0, 0.5, 3.0, 0.1, None),
    (0, 1, 1, 0.5, 1, 1, 1.2, -2.0, -0.1, 1),
    (1, 0, 0, 0.0, 0, 0, 0.0, 5.0, 0.0, 0),
    (0, 0, 0, 0.0, 1, 10, 0.0, None, 0.0, -1),
    (0, 0, 1, 1.0, 0, 0, 0.8, 4.0, 0.2, 0),
    (0, "absent", 1, 1.0, None, 0, 0.9, None, 0.3, None),
]


def rows() -> list[dict]:
    out = []
    for k, values in enumerate(TABLE, start=1):
        row = {"update": k, "monotonic/collapses": float(k // 4)}
        row.update({c: v for c, v in zip(COLUMNS, values) if v != "absent"})
        out.append(row)
    return out


def test_skipped_updates_are_counted_on_their_own():
    assert run_stats.skipped_updates(rows()) == 1
    assert run_stats.formed(rows()).tolist() == [True, True, False, True, True, True]
    assert run_stats.skipped_updates([{"update": 1}]) == 0  # a run that never logged step/skipped skipped nothing


@pytest.mark.parametrize("name, hits, defined", [
    ("violation_rate", 1, 4),  # update 2 of 1, 2, 4, 5 (6 did not log it, 3 skipped)
    ("accepted_rate", 4, 5),  # 1, 2, 5, 6 of the five formed updates
    ("line_search_rejected", 1, 5),  # 4
    ("line_search_acted", 2, 5),  # fraction < 1: 2 (0.5) and 4 (0.0); not the skipped 3
    ("full_step_violation_rate", 2, 4),  # 2 and 4 of 1, 2, 4, 5 (6 null)
    ("return_rose_rate", 2, 3),  # 1 and 5 of 1, 2, 5: the first delta counts, the nulls of 4 and 6 are not falls
    ("surrogate_not_raised_rate", 2, 5),  # 2 (−0.1) and 4 (0.0)
])
def test_each_share_against_the_hand_count(name, hits, defined):
    share = run_stats.SHARES[name](rows())
    assert (share.hits, share.defined) == (hits, defined)
    assert share.value == pytest.approx(hits / defined)


def test_means_and_medians_over_the_formed_updates():
    assert run_stats.mean_of(rows(), "line_search/backtracks") == pytest.approx((0 + 1 + 10 + 0 + 0) / 5)
    # KL/δ of 1, 2, 4, 5, 6 = 0.5, 1.2, 0.0, 0.8, 0.9 → sorted 0.0, 0.5, 0.8, 0.9, 1.2; the skipped 3's 0.0 is left out
    assert run_stats.kl_over_delta_median(rows()) == pytest.approx(0.8)
    assert math.isnan(run_stats.median_of(rows(), "no/such_key"))


def test_paired_counts_leave_out_unmeasured_and_skipped_updates():
    c = run_stats.paired_counts(rows())
    assert (c.measured, c.resolved, c.improved, c.worsened) == (3, 2, 1, 1)  # 2, 4, 5 measured; 3 skipped
    assert c.improved_fraction.value == pytest.approx(1 / 2)
    assert c.resolved_share.value == pytest.approx(2 / 3)
    assert run_stats.paired_counts([{"update": 1}]) is None  # the run's code predates the key
    assert math.isnan(run_stats.PairedCounts(4, 0, 0, 0).improved_fraction.value)  # nothing resolved: undefined


def test_collapses_from_the_summary_else_the_last_logged_count():
    assert run_stats.collapses(rows(), {"collapses": 7}) == 7.0
    assert run_stats.collapses(rows(), None) == 1.0  # monotonic/collapses of update 6 = 6 // 4
    assert math.isnan(run_stats.collapses([{"update": 1}], {}))


def test_across_runs_a_rate_is_the_mean_and_a_median_the_median_of_runs_where_defined():
    assert run_stats.mean_over_runs([0.5, math.nan, 0.25, None]) == pytest.approx(0.375)
    assert run_stats.defined_runs([0.5, math.nan, 0.25, None]) == 2
    assert run_stats.median_over_runs([0.2, 0.9, 0.4, math.nan]) == pytest.approx(0.4)  # the mean would be 0.5
    assert math.isnan(run_stats.mean_over_runs([math.nan])) and math.isnan(run_stats.median_over_runs([]))


#: a run logged with the return window: (return/window_fresh, return/delta) per update, counted by hand
#:   1: no episode yet, delta null          2: +3, batch 3 brought 1 episode (the first defined delta)
#:   3: 0, batch 4 brought none (no new evidence)   4: −1, batch 5 brought 3
#:   5: +2, batch 6 brought 2               6: the last update, delta null
WINDOW_ROWS = [(0, None), (2, 3.0), (1, 0.0), (0, -1.0), (3, 2.0), (2, None)]


def window_rows() -> list[dict]:
    return [{"update": k, "step/skipped": 0, "return/window_fresh": f, "return/delta": d}
            for k, (f, d) in enumerate(WINDOW_ROWS, start=1)]


def test_a_delta_counts_only_where_it_rests_on_new_episodes_and_the_first_one_counts():
    share = run_stats.return_rose_rate(window_rows())
    assert (share.hits, share.defined) == (2, 3)  # updates 2 (+3) and 5 (+2) of 2, 4, 5; 1 and 6 null, 3 no evidence
    assert run_stats.step_values(window_rows(), "return/delta").tolist() == [3.0, -1.0, 2.0]
    assert run_stats.fresh_evidence(window_rows()).tolist() == [True, True, False, True, True, True]
