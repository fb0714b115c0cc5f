"""Metrics files, the monotonic accounting, and W&B (offline or disabled only: no test touches the network)."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from trpo_lab.sinks import resolve_wandb_mode
from trpo_lab.train import run

WANDB = str(Path(sys.executable).parent / "wandb")


def _rows(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


def test_wandb_mode_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    assert resolve_wandb_mode("disabled") == "disabled"
    with pytest.raises(ValueError, match="logger.wandb.mode"):
        resolve_wandb_mode("sometimes")


def test_trpo_accepted_steps_respect_the_trust_region(compose, tmp_path):
    cfg = compose(["env=cartpole", "debug=smoke", "total_env_steps=8192"])
    run(cfg, tmp_path)
    rows = _rows(tmp_path)
    accepted = [r for r in rows if r["line_search/accepted"] == 1]
    assert accepted
    for r in accepted:
        assert r["step/kl_mean"] <= cfg.algo.max_kl
        assert r["step/surrogate_actual"] > 0


def test_huge_delta_full_step_violates_and_line_search_repairs(compose, tmp_path):
    """With δ = 2 the quadratic KL model is far off: full KL-scaled steps leave the trust region."""
    common = ["env=cartpole", "debug=smoke", "total_env_steps=8192", "algo.max_kl=2.0"]
    run(compose(["algo=trpo", *common]), tmp_path / "trpo")
    run(compose(["algo=trpo_no_ls", *common]), tmp_path / "no_ls")
    trpo, no_ls = _rows(tmp_path / "trpo"), _rows(tmp_path / "no_ls")
    assert sum(r["full_step/constraint_violated"] for r in trpo) > 0
    assert sum(r["step/constraint_violated"] for r in no_ls) > 0  # taken unchecked
    assert sum(r["step/constraint_violated"] for r in trpo) == 0  # the line search removed every violation
    repaired = [r for r in trpo if r["full_step/constraint_violated"] and r["line_search/accepted"]]
    assert repaired and all(r["step/fraction"] < 1 and r["step/kl_mean"] <= 2.0 for r in repaired)


def test_offline_wandb_run_lives_in_run_folder_and_reads_back(compose, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose(["env=cartpole", "debug=smoke", "logger.wandb.mode=offline"])
    run(cfg, tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    out = subprocess.run([WANDB, "leet", "inspect", "--summary", "--json", str(runs[0])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["state"] == "finished"
    assert info["config"]["env"]["id"] == "CartPole-v1" and info["config"]["meta"]["versions"]["torch"]
    for key in ("step/kl_mean", "line_search/accepted", "full_step/kl_mean", "return/mean", "accepted_rate"):
        assert key in info["summary"], key
    assert info["summary"]["env_steps"] == 2048


def test_wandb_init_failure_falls_back_and_training_completes(compose, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    cfg = compose(["env=cartpole", "debug=smoke", "logger.wandb.mode=online"])
    with pytest.warns(UserWarning, match="W&B init in mode 'online' failed"):
        summary = run(cfg, tmp_path / "run")
    assert summary["env_steps"] == 2048
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_wandb_log_failure_never_stops_training(compose, tmp_path, monkeypatch):
    import wandb.sdk.wandb_run as wr

    def broken(self, *a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(wr.Run, "log", broken)
    cfg = compose(["env=cartpole", "debug=smoke", "logger.wandb.mode=offline"])
    with pytest.warns(UserWarning, match="W&B log failed"):
        summary = run(cfg, tmp_path)
    assert summary["env_steps"] == 2048 and len(_rows(tmp_path)) == 4


def test_multirun_of_two_jobs_makes_two_wandb_runs(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "trpo_lab.train", "-m", "seed=0,1", "env=cartpole", "debug=smoke",
         "logger.wandb.mode=offline", f"hydra.sweep.dir={tmp_path}"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    ids = []
    for job in ("0", "1"):
        runs = list((tmp_path / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, (job, runs)
        ids.append(runs[0].name.rsplit("-", 1)[1])
        assert (tmp_path / job / "summary.json").exists()
    assert ids[0] != ids[1]


def test_periodic_and_paired_evaluation(compose, tmp_path):
    cfg = compose(["env=cartpole", "debug=smoke", "eval.every=2", "eval.paired.every=1", "eval.paired.episodes=3"])
    run(cfg, tmp_path)
    rows = _rows(tmp_path)
    assert [("eval/return_mean" in r) for r in rows] == [False, True, False, True]
    for r in rows:
        assert r["paired/improvement"] == pytest.approx(r["paired/return_new"] - r["paired/return_old"])
        assert math.isfinite(r["paired/return_old"]) and r["paired/return_old"] >= 3  # ≥ 1 per step, 3 episodes


def test_paired_evaluation_of_a_rejected_step_is_zero(compose, tmp_path):
    # a line search that can never accept (KL ≤ 1e-12 impossible): θ_new = θ_old, same seeds → identical returns
    cfg = compose(["env=cartpole", "debug=smoke", "eval.paired.every=1", "algo.line_search.max_kl=1e-12",
                   "algo.line_search.max_backtracks=2"])
    run(cfg, tmp_path)
    for r in _rows(tmp_path):
        assert r["line_search/accepted"] == 0
        assert r["paired/improvement"] == 0.0 and r["paired/improvement_se"] == 0.0 and r["paired/outcome"] == 0
        assert r["monotonic/resolved"] == 0 and r["monotonic/improved_fraction"] is None


def test_resumed_run_logs_into_the_same_wandb_run(compose, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("WANDB_MODE", "offline")
    run(compose(["env=cartpole", "debug=smoke", "logger.wandb.mode=offline"]), tmp_path)
    run_id = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["wandb_run_id"]
    assert run_id
    run(compose(["env=cartpole", "debug=smoke", "logger.wandb.mode=offline", "total_env_steps=4096"]), tmp_path)
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    # W&B appends '-1' to the folder when both runs start within the same second
    assert len(runs) == 2 and all(run_id in r.name for r in runs)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["wandb_run_id"] == run_id
