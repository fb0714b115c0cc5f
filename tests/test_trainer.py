"""The trainer owns its envs and closes them whatever happens; its scheduled pieces run at the updates they
are due at, the checkpoint once the update's row is complete, and each piece's state goes into the checkpoint."""
from __future__ import annotations

import copy
import json
import math

import pytest
import torch

from trpo_lab import train
from trpo_lab.rollout import RolloutCollector
from trpo_lab.schedule import Scheduled
from trpo_lab.train import build_trainer, run

#: a collector env, deterministic-evaluation envs and paired-evaluation envs: three vector envs
ALL_ENVS = ["env=cartpole", "debug=smoke", "eval.every=2", "eval.paired.every=2", "eval.paired.episodes=2"]


class Boom(Exception):
    pass


def _raise(*args, **kwargs):
    raise Boom


def _rows(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture
def made_envs(monkeypatch):
    """Every vector env build_trainer makes, in order."""
    made = []
    real = train.make_vec_env

    def recording(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(train, "make_vec_env", recording)
    return made


@pytest.mark.parametrize("failing_step, envs_made", [("make_policy", 1), ("third_env", 2), ("build_sinks", 3)])
def test_build_trainer_closes_every_env_it_made_when_a_later_step_raises(
        compose, tmp_path, monkeypatch, made_envs, failing_step, envs_made):
    if failing_step == "third_env":  # the paired-evaluation envs
        recording = train.make_vec_env
        monkeypatch.setattr(train, "make_vec_env",
                            lambda *a, **kw: _raise() if len(made_envs) == 2 else recording(*a, **kw))
    else:
        monkeypatch.setattr(train, failing_step, _raise)
    with pytest.raises(Boom):
        build_trainer(compose(ALL_ENVS), tmp_path)
    assert len(made_envs) == envs_made
    assert all(e.closed for e in made_envs)


def test_the_trainer_closes_its_envs_and_sinks_when_its_block_raises(compose, tmp_path, made_envs):
    trainer = build_trainer(compose(ALL_ENVS), tmp_path)
    assert len(made_envs) == 3 and not any(e.closed for e in made_envs)  # built: the trainer holds them open
    with pytest.raises(Boom):
        with trainer:
            raise Boom
    assert all(e.closed for e in made_envs) and trainer.sinks.jsonl.file.closed


def test_run_closes_every_env_after_a_finished_and_after_a_failed_run(compose, tmp_path, monkeypatch, made_envs):
    run(compose(ALL_ENVS), tmp_path / "finished")
    assert len(made_envs) == 3 and all(e.closed for e in made_envs)
    made_envs.clear()
    real, batches = RolloutCollector.collect, []

    def collect_then_fail(self):  # the third batch fails
        batches.append(None)
        return _raise() if len(batches) == 3 else real(self)

    monkeypatch.setattr(RolloutCollector, "collect", collect_then_fail)
    with pytest.raises(Boom):
        run(compose(ALL_ENVS), tmp_path / "failed")
    assert len(made_envs) == 3 and all(e.closed for e in made_envs)


def test_a_periodic_checkpoint_holds_the_complete_row_of_its_update(compose, tmp_path, monkeypatch):
    """Measurements first, then the checkpoint: the pending row it saves is row k as metrics.jsonl holds it,
    but for what only batch k+1 can tell (return/delta and the accounting that follows from it)."""
    saved = []
    real = train.Trainer.state_dict
    monkeypatch.setattr(train.Trainer, "state_dict", lambda self: saved.append(copy.deepcopy(real(self))) or saved[-1])
    run(compose([*ALL_ENVS, "checkpoint_every=2", "total_env_steps=3072"]), tmp_path)
    rows = _rows(tmp_path)
    periodic = [s for s in saved if s["pending_row"] is not None]
    assert [s["updates"] for s in periodic] == [2, 4, 6]
    after_write = {"return/delta", "return/best", "monotonic/collapses", "monotonic/worst_drop"}
    for s in periodic:
        row = rows[s["updates"] - 1]
        assert "eval/return_mean" in s["pending_row"] and s["pending_row"]["paired/outcome"] is not None
        assert s["pending_row"].keys() == row.keys() - after_write
        for k, v in s["pending_row"].items():
            assert v == row[k] or (isinstance(v, float) and math.isnan(v) and row[k] is None), k


class Counter(Scheduled):
    """A piece from outside the library: due every ``every``-th update; remembers where it ran."""

    name = "counter"
    idle_row = {"counter/runs": None}

    def __init__(self, every: int) -> None:
        self.every, self.runs = every, []

    def due(self, update, last):
        return update % self.every == 0

    def run(self, trainer, done):
        self.runs.append([done.update, trainer.updates, done.last])
        return {"counter/runs": len(self.runs)}

    def state_dict(self):
        return {"counter_runs": [list(r) for r in self.runs]}

    def load_state_dict(self, state):
        self.runs = [list(r) for r in state.get("counter_runs", [])]


def test_a_new_piece_runs_when_due_and_its_state_goes_through_the_checkpoint(compose, tmp_path):
    cfg = compose(["env=cartpole", "debug=smoke", "total_env_steps=3072"])  # 6 updates of 512 steps
    with build_trainer(cfg, tmp_path) as trainer:
        trainer.measurements.append(Counter(3))
        trainer.run_updates()
    rows = _rows(tmp_path)
    assert [r["counter/runs"] for r in rows] == [None, None, 1, None, None, 2]
    assert all(r["time/counter_s"] >= 0 for r in rows)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["counter_runs"] == [[3, 3, False], [6, 6, True]]

    with build_trainer(compose(["env=cartpole", "debug=smoke", "total_env_steps=4096"]), tmp_path) as resumed:
        piece = Counter(3)
        resumed.measurements.append(piece)
        resumed.load_state_dict(state)
    assert piece.runs == [[3, 3, False], [6, 6, True]]
