"""Metrics files, the monotonic accounting, and W&B (offline or disabled only: no test touches the network)."""
import json
import math
import subprocess

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from trpo_lab.policies import GaussianPolicy
from trpo_lab.sinks import resolve_wandb_mode
from trpo_lab.train import build_update, run

from helpers import SMOKE, WANDB, metrics_rows, perturbed, run_cli


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
    cfg = compose([*SMOKE, "total_env_steps=8192"])
    run(cfg, tmp_path)
    rows = metrics_rows(tmp_path)
    accepted = [r for r in rows if r["line_search/accepted"] == 1]
    assert accepted  # one of 16 updates suffices; seeds 0-2 accept all 16 at the first candidate (full KL ≤ 0.93δ)
    for r in accepted:
        assert r["step/kl_mean"] <= cfg.algo.max_kl
        assert r["step/surrogate_actual"] > 0


def _std_shrinking_batch(n_states: int = 16):
    r"""A Gaussian policy and a batch whose surrogate gradient moves log σ alone, towards a smaller σ.

    At every state four actions, μ(s) ± ½σ with Â = +1 and μ(s) ± 2σ with Â = −1: each ± pair cancels in
    ∂L/∂μ, and ∂L/∂log σ = mean Â·(z² − 1) < 0. The Fisher has no μ–log σ cross term, so the natural step
    moves log σ alone, by u < 0 with ½·κ·u² = δ (κ = 2 for log σ; 2 + λ with damped curvature). Its true KL,

        KL(N(μ, σ²) ‖ N(μ, σ²e^{2u})) = u + ½e^{−2u} − ½ = u² − ⅔u³ + …,

    exceeds the quadratic model u² whenever u < 0: at δ = 2 the full step's KL is about 3δ, on any CPU.
    """
    torch.manual_seed(0)
    pol = perturbed(GaussianPolicy(3, 1, hidden_sizes=(8,), log_std_init=-0.5))
    obs = torch.randn(n_states, 3).repeat_interleave(4, 0)
    with torch.no_grad():
        mean, log_std = pol.dist_params(obs)
        z = torch.tensor([0.5, -0.5, 2.0, -2.0]).repeat(n_states)[:, None]
        act = mean + z * log_std.exp()
        lp = pol.log_prob((mean, log_std), act)
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0]).repeat(n_states)
    return pol, obs, act, lp, adv


def _normal(pol, obs, log_std=None):
    """π(·|s) as a torch.distributions object, optionally with another log σ."""
    with torch.no_grad():
        mean, ls = pol.dist_params(obs)
        ls = ls if log_std is None else log_std
        return Independent(Normal(mean, ls.exp().expand_as(mean).clone()), 1)


@pytest.mark.parametrize("curvature", ["damped", "undamped"])
def test_huge_delta_full_step_violates_and_line_search_repairs(compose, curvature):
    """δ = 2 on a batch built so that the quadratic KL model underestimates the full step's KL: the full step
    is recorded as a violation, trpo_no_ls takes it unchecked, trpo's line search backtracks to the first
    βʲ whose KL (from torch.distributions) is within δ, and each records what it did."""
    delta = 2.0
    algo = {a: compose([f"algo={a}", f"algo.max_kl={delta}", f"algo.step_rule.curvature={curvature}"]).algo
            for a in ("trpo_no_ls", "trpo")}
    beta, tries = algo["trpo"].line_search.backtrack_coef, algo["trpo"].line_search.max_backtracks
    kappa = 2.0 + (algo["trpo"].solver.damping if curvature == "damped" else 0.0)
    u = -math.sqrt(2 * delta / kappa)  # the full step in log σ

    # the independent computation: KL and surrogate change of the step f·u in log σ, by torch.distributions
    pol, obs, act, lp, adv = _std_shrinking_batch()
    old, log_std0 = _normal(pol, obs), pol.log_std.detach().clone()

    def kl_and_gain(f):
        new = _normal(pol, obs, log_std0 + f * u)
        ratio = torch.exp(new.log_prob(act) - lp)
        return float(kl_divergence(old, new).mean()), float(((ratio - 1) * adv).mean())

    full_kl, _ = kl_and_gain(1.0)
    assert full_kl > 1.5 * delta  # the premise (3.0δ damped, 3.3δ undamped)
    admissible = [j for j in range(tries) for kl, gain in [kl_and_gain(beta**j)] if kl <= delta and gain > 0]
    j = admissible[0]  # the line search must pick the first admissible βʲ
    assert j >= 1  # the full step is not admissible: the line search has to backtrack

    stats = {}
    for name, cfg in algo.items():
        pol, obs, act, lp, adv = _std_shrinking_batch()
        stats[name] = build_update(cfg)(pol, obs, act, lp, adv).to_dict()
        fraction = 1.0 if name == "trpo_no_ls" else beta**j
        torch.testing.assert_close(pol.log_std.detach(), log_std0 + fraction * u, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(_normal(pol, obs).mean, old.mean, rtol=0, atol=1e-5)  # μ did not move
        assert stats[name]["step/kl_mean"] == pytest.approx(float(kl_divergence(old, _normal(pol, obs)).mean()), rel=1e-4)
        assert stats[name]["full_step/kl_mean"] == pytest.approx(full_kl, rel=1e-4)
        assert stats[name]["full_step/constraint_violated"] == 1

    no_ls, trpo = stats["trpo_no_ls"], stats["trpo"]
    assert no_ls["step/fraction"] == 1 and no_ls["line_search/accepted"] == 1  # taken unchecked …
    assert no_ls["step/constraint_violated"] == 1 and no_ls["step/kl_mean"] > delta  # … and recorded as a violation
    if curvature == "undamped":  # the quadratic model puts the step at δ; the measured KL is far above it
        assert no_ls["step/kl_predicted"] == pytest.approx(delta, rel=1e-4)
    assert trpo["line_search/accepted"] == 1 and trpo["line_search/backtracks"] == j
    assert trpo["step/fraction"] == pytest.approx(beta**j)
    assert trpo["step/kl_mean"] <= delta and trpo["step/constraint_violated"] == 0
    assert trpo["step/kl_mean"] == pytest.approx(kl_and_gain(beta**j)[0], rel=1e-4)


@pytest.mark.slow
def test_offline_wandb_run_lives_in_run_folder_and_reads_back(compose, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose([*SMOKE, "logger.wandb.mode=offline"])
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
    cfg = compose([*SMOKE, "logger.wandb.mode=online"])
    with pytest.warns(UserWarning, match="W&B init in mode 'online' failed"):
        summary = run(cfg, tmp_path / "run")
    assert summary["env_steps"] == 2048
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_wandb_log_failure_never_stops_training(compose, tmp_path, monkeypatch):
    import wandb.sdk.wandb_run as wr

    def broken(self, *a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(wr.Run, "log", broken)
    cfg = compose([*SMOKE, "logger.wandb.mode=offline"])
    with pytest.warns(UserWarning, match="W&B log failed"):
        summary = run(cfg, tmp_path)
    assert summary["env_steps"] == 2048 and len(metrics_rows(tmp_path)) == 4


@pytest.mark.slow
def test_multirun_of_two_jobs_makes_two_wandb_runs(tmp_path):
    out = run_cli("-m", "seed=0,1", *SMOKE, "logger.wandb.mode=offline", f"hydra.sweep.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-2000:]
    ids = []
    for job in ("0", "1"):
        runs = list((tmp_path / job / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, (job, runs)
        ids.append(runs[0].name.rsplit("-", 1)[1])
        assert (tmp_path / job / "summary.json").exists()
    assert ids[0] != ids[1]


def test_periodic_and_paired_evaluation(compose, tmp_path):
    cfg = compose([*SMOKE, "eval.every=2", "eval.paired.every=1", "eval.paired.episodes=3"])
    run(cfg, tmp_path)
    rows = metrics_rows(tmp_path)
    assert [("eval/return_mean" in r) for r in rows] == [False, True, False, True]
    for r in rows:
        assert r["paired/improvement"] == pytest.approx(r["paired/return_new"] - r["paired/return_old"])
        assert math.isfinite(r["paired/return_old"]) and r["paired/return_old"] >= 3  # ≥ 1 per step, 3 episodes


def test_paired_evaluation_of_a_rejected_step_is_zero(compose, tmp_path):
    # a line search that can never accept (KL ≤ 1e-12 impossible): θ_new = θ_old, same seeds → identical returns
    cfg = compose([*SMOKE, "eval.paired.every=1", "algo.line_search.max_kl=1e-12",
                   "algo.line_search.max_backtracks=2"])
    run(cfg, tmp_path)
    for r in metrics_rows(tmp_path):
        assert r["line_search/accepted"] == 0
        assert r["paired/improvement"] == 0.0 and r["paired/improvement_se"] == 0.0 and r["paired/outcome"] == 0
        assert r["monotonic/resolved"] == 0 and r["monotonic/improved_fraction"] is None


def test_resumed_run_logs_into_the_same_wandb_run(compose, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("WANDB_MODE", "offline")
    run(compose([*SMOKE, "logger.wandb.mode=offline"]), tmp_path)
    run_id = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["wandb_run_id"]
    assert run_id
    run(compose([*SMOKE, "logger.wandb.mode=offline", "total_env_steps=4096"]), tmp_path)
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    # W&B appends '-1' to the folder when both runs start within the same second
    assert len(runs) == 2 and all(run_id in r.name for r in runs)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["wandb_run_id"] == run_id
