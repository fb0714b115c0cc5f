"""The training-return proxy (trpo_lab.return_window.ReturnWindow) and the accounting that reads it
(MonotonicTracker.record_returns), on a scripted episode sequence counted by hand.

M = 3; the batches finish these episodes (raw returns, oldest first):

    batch   finished        window after it   mean     fresh   delta for the update before it
    1       —               —                 NaN      0       —
    2       10              10                10       1       NaN (nothing before)
    3       20, 30          10 20 30          20       2       20 − 10 = +10
    4       —               10 20 30          20       0       0 (no new evidence)
    5       1, 2, 3, 4, 5   3 4 5             4        3       4 − 20 = −16 (a collapse: 16 > 0.5 · best 20)
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from trpo_lab.metrics import MonotonicTracker
from trpo_lab.return_window import ReturnWindow

BATCHES = [[], [10.0], [20.0, 30.0], [], [1.0, 2.0, 3.0, 4.0, 5.0]]
WINDOW = [[], [10.0], [10.0, 20.0, 30.0], [10.0, 20.0, 30.0], [3.0, 4.0, 5.0]]
MEAN = [math.nan, 10.0, 20.0, 20.0, 4.0]
FRESH = [0, 1, 2, 0, 3]


def test_window_contents_mean_and_fresh_by_hand():
    w = ReturnWindow(3)
    assert math.isnan(w.mean) and len(w) == 0  # before the first finished episode
    for batch, contents, mean, fresh in zip(BATCHES, WINDOW, MEAN, FRESH):
        w.add(batch)
        assert w.state_dict()["returns"] == contents
        assert len(w) == len(contents)
        assert (math.isnan(w.mean) and math.isnan(mean)) or w.mean == pytest.approx(mean)
        assert w.fresh == fresh


def test_deltas_collapses_and_best_from_the_window_proxy():
    w, m = ReturnWindow(3), MonotonicTracker(collapse_share=0.5)
    proxies = []
    for batch in BATCHES:
        w.add(batch)
        proxies.append(w.mean)
    rows = [m.record_returns(before, after) for before, after in zip(proxies, proxies[1:])]
    deltas = [r["return/delta"] for r in rows]
    assert math.isnan(deltas[0])  # update 1: NaN before, 10 after
    assert deltas[1:] == [pytest.approx(10.0), 0.0, pytest.approx(-16.0)]  # no fresh episode: exactly 0
    assert [r["monotonic/collapses"] for r in rows] == [0.0, 0.0, 0.0, 1.0]
    assert rows[-1]["monotonic/worst_drop"] == pytest.approx(-16.0)
    assert [r["return/best"] for r in rows] == [10.0, 20.0, 20.0, 20.0]


def test_the_window_survives_a_checkpoint_round_trip(tmp_path):
    w = ReturnWindow(3)
    for batch in BATCHES[:3]:
        w.add(batch)
    torch.save(w.state_dict(), tmp_path / "w.pt")
    restored = ReturnWindow(1)
    restored.load_state_dict(torch.load(tmp_path / "w.pt", weights_only=True))
    assert (restored.size, restored.state_dict()) == (3, w.state_dict())
    restored.add([50.0])  # the size comes back too: 10 drops out
    assert restored.mean == pytest.approx((20 + 30 + 50) / 3)


def test_a_window_needs_at_least_one_episode():
    with pytest.raises(ValueError, match="size ≥ 1"):
        ReturnWindow(0)


def test_on_halfcheetah_the_proxy_and_its_delta_are_defined_after_the_first_episode(compose, tmp_path):
    """The issue's done-when: HalfCheetah-v5 (1000-step episodes, 512 steps per env per batch, so every other batch
    finishes no episode), 40k env steps, default config. After the first finished episode, ``return/mean`` and
    ``return/delta`` are defined on ≥ 90 % of the updates (the batch's own mean is not)."""
    from helpers import QUIET
    from trpo_lab.train import run

    run(compose(["env=halfcheetah", "total_env_steps=40000", *QUIET]), tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first = next(i for i, r in enumerate(rows) if r["return/episodes"] > 0)
    after = rows[first:]
    defined = {k: sum(r[k] is not None for r in after) / len(after) for k in ("return/mean", "return/delta", "return/batch_mean")}
    assert defined["return/mean"] >= 0.9 and defined["return/delta"] >= 0.9, defined
    assert defined["return/batch_mean"] <= 0.6, defined  # what the window is for: half the batches finish no episode
    assert all(r["return/mean"] is None for r in rows[:first])  # nothing before the first finished episode
