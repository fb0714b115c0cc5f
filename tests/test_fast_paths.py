"""Every optimised path against an independent, straightforward computation of the same numbers.

* the natural-gradient step with JᵀMJ against a dense solve;
* the numpy actor against the torch policy's distribution;
* the in-process vector env against gymnasium's ``SyncVectorEnv``;
* the vectorised episode statistics and the numpy GAE recursion against per-step loops.

The Fisher-vector products (JᵀMJ against the dense KL Hessian and double backprop) are in
tests/test_fisher.py, the critic's fused fit in tests/test_critic.py. No timing is asserted here; speed is measured by scripts/benchmark.py.
"""
from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import TimeLimit
from torch import nn
from torch.nn.utils import parameters_to_vector

from trpo_lab.envs import InProcessVectorEnv, ObservationNormalizer, RewardScaler
from trpo_lab.natural.cg import ConjugateGradient
from trpo_lab.natural.fisher import AnalyticFisher
from trpo_lab.natural.line_search import NoLineSearch
from trpo_lab.natural.step_rules import KLScaledStep
from trpo_lab.natural.update import NaturalGradientUpdate
from trpo_lab.policies import GaussianPolicy
from trpo_lab.rollout import NumpyActor, RolloutCollector, compute_gae

from helpers import CountingEnv, LinearValue, StateStdGaussian, dense_kl_hessian, small_policy


# -- the composed update ---------------------------------------------------------------------------------


def test_update_with_jmj_takes_the_dense_natural_step():
    torch.manual_seed(0)
    pol = GaussianPolicy(3, 2, hidden_sizes=(6,), log_std_init=-0.5)
    obs = torch.randn(32, 3)
    with torch.no_grad():
        dist = pol.dist_params(obs)
        act = pol.sample(dist)
        lp = pol.log_prob(dist, act)
    adv = torch.randn(32)
    theta0 = parameters_to_vector(pol.parameters()).detach().clone()
    # dense reference, float64
    a = (adv - adv.mean()) / (adv.std() + 1e-8)
    surr = (torch.exp(pol.log_prob(pol.dist_params(obs), act) - lp) * a).mean()
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(surr, list(pol.parameters()))]).double()
    F = dense_kl_hessian(pol, obs) + 0.1 * torch.eye(g.numel(), dtype=torch.float64)
    x = torch.linalg.solve(F, g)
    expected = (math.sqrt(2 * 0.01 / float(x @ F @ x)) * x).float()

    update = NaturalGradientUpdate(
        AnalyticFisher(method="jmj"), ConjugateGradient(iters=200, damping=0.1, residual_tol=1e-12),
        KLScaledStep(0.01), NoLineSearch(), max_kl=0.01,
    )
    stats = update(pol, obs, act, lp, adv)
    torch.testing.assert_close(parameters_to_vector(pol.parameters()).detach() - theta0, expected, rtol=1e-3, atol=1e-6)
    e = expected.double()  # kl_predicted is the undamped model ½ΔᵀFΔ = δ − ½λ‖Δ‖²
    assert stats.kl_predicted == pytest.approx(0.01 - 0.5 * 0.1 * float(e @ e), rel=1e-4)


# -- the numpy actor -------------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu", "softplus"])
def test_numpy_actor_mean_is_the_policy_mean(activation):
    pol = small_policy("gaussian", activation, hidden=(64, 64))
    obs = torch.randn(16, 3)
    actor = NumpyActor.from_policy(pol)
    with torch.no_grad():
        mean = pol.dist_params(obs)[0]
    np.testing.assert_allclose(actor.net(obs.numpy()), mean.numpy(), rtol=1e-5, atol=1e-6)


def test_numpy_actor_samples_the_gaussian():
    pol = small_policy("gaussian", hidden=(16,))
    obs = torch.randn(2, 3)
    torch.manual_seed(0)
    actor = NumpyActor.from_policy(pol)
    samples = np.stack([actor(obs.numpy()) for _ in range(20000)])  # (K, 2, act_dim)
    with torch.no_grad():
        mean, log_std = pol.dist_params(obs)
    std = log_std.detach().exp().numpy()
    se = std / math.sqrt(samples.shape[0])
    assert np.all(np.abs(samples.mean(0) - mean.numpy()) < 5 * se)
    np.testing.assert_allclose(samples.std(0), np.broadcast_to(std, samples.shape[1:]), rtol=0.03)


def test_numpy_actor_samples_the_categorical():
    pol = small_policy("categorical", hidden=(16,))
    obs = torch.randn(2, 3)
    torch.manual_seed(0)
    actor = NumpyActor.from_policy(pol)
    k = 40000
    samples = np.stack([actor(obs.numpy()) for _ in range(k)])  # (K, 2)
    with torch.no_grad():
        p = torch.softmax(pol.dist_params(obs)[0], -1).numpy()
    for s in range(2):
        freq = np.bincount(samples[:, s], minlength=p.shape[1]) / k
        se = np.sqrt(p[s] * (1 - p[s]) / k)
        assert np.all(np.abs(freq - p[s]) < 5 * se + 1e-4), (freq, p[s])


def test_numpy_actor_is_reproducible_from_the_torch_seed():
    pol = small_policy("gaussian", hidden=(8,))
    obs = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    torch.manual_seed(3)
    a = NumpyActor.from_policy(pol)(obs)
    torch.manual_seed(3)
    b = NumpyActor.from_policy(pol)(obs)
    np.testing.assert_array_equal(a, b)


def test_no_numpy_actor_for_other_policies():
    assert NumpyActor.from_policy(StateStdGaussian(3, 2)) is None
    pol = small_policy("gaussian", hidden=(8,))
    pol.mean_net.insert(1, nn.LayerNorm(8))  # the protocol's methods, but a net that is no plain MLP
    assert NumpyActor.from_policy(pol) is None


class SampledStateStdGaussian(StateStdGaussian):
    """StateStdGaussian with what acting needs (sample, log-prob) and nothing of the fast path."""

    def sample(self, params):
        mean, log_std = params
        return mean + torch.exp(log_std) * torch.randn_like(mean)

    def log_prob(self, params, actions):
        mean, log_std = params
        z = (actions - mean) * torch.exp(-log_std)
        return -0.5 * (z * z).sum(-1) - log_std.sum(-1) - 0.5 * mean.shape[-1] * math.log(2 * math.pi)


def test_collector_acts_through_torch_for_a_policy_without_the_fast_path():
    """The reference path stays reachable: each step's actions are the torch policy's samples, in order."""
    torch.manual_seed(0)
    pol = SampledStateStdGaussian(1, 1)
    envs = InProcessVectorEnv([lambda: CountingEnv(term_at=None)] * 2)  # obs = steps taken, whatever the action
    col = RolloutCollector(
        envs, pol, LinearValue(), steps_per_env=6, gamma=0.9, gae_lambda=0.9,
        obs_normalizer=ObservationNormalizer((1,), enabled=False), reward_scaler=RewardScaler(2, 0.9, enabled=False),
        seed=0,
    )
    torch.manual_seed(7)
    batch = col.collect()
    envs.close()
    torch.manual_seed(7)
    with torch.no_grad():
        expected = [pol.sample(pol.dist_params(torch.full((2, 1), float(t)))) for t in range(6)]
    torch.testing.assert_close(batch.actions, torch.cat(expected))


# -- vector envs -----------------------------------------------------------------------------------------


def _counting_fns():
    return [lambda: CountingEnv(term_at=3), lambda: TimeLimit(CountingEnv(term_at=None), max_episode_steps=4),
            lambda: TimeLimit(CountingEnv(term_at=5), max_episode_steps=5)]


def _rollout(envs, actions, seed):
    out = []
    obs, _ = envs.reset(seed=seed)
    out.append(("reset", obs.copy()))
    for a in actions:
        obs, rew, term, trunc, info = envs.step(a)
        finals = {}
        if "final_obs" in info:
            finals = {i: np.asarray(info["final_obs"][i]) for i in np.flatnonzero(info["_final_obs"])}
        out.append((obs.copy(), rew.copy(), term.copy(), trunc.copy(), finals))
    envs.close()
    return out


def _assert_same_transitions(got, ref):
    assert len(got) == len(ref)
    np.testing.assert_array_equal(got[0][1], ref[0][1])
    for g, r in zip(got[1:], ref[1:]):
        for x, y in zip(g[:4], r[:4]):
            np.testing.assert_array_equal(x, y)
        assert g[4].keys() == r[4].keys()
        for i in r[4]:
            np.testing.assert_array_equal(g[4][i], r[4][i])


def test_inprocess_vector_env_matches_gymnasium_sync_vector_env_on_counting_envs():
    actions = np.zeros((12, 3, 1), np.float32)
    ref = _rollout(SyncVectorEnv(_counting_fns(), autoreset_mode=AutoresetMode.SAME_STEP), actions, 0)
    _assert_same_transitions(_rollout(InProcessVectorEnv(_counting_fns()), actions, 0), ref)


def test_inprocess_vector_env_matches_gymnasium_on_hopper():
    """Random actions make Hopper fall (terminations); a 20-step time limit adds truncations."""
    make = lambda: gym.make("Hopper-v5", max_episode_steps=20)  # noqa: E731
    actions = np.random.default_rng(0).uniform(-1, 1, (300, 3, 3)).astype(np.float32)
    ref = _rollout(SyncVectorEnv([make] * 3, autoreset_mode=AutoresetMode.SAME_STEP), actions, 7)
    got = _rollout(InProcessVectorEnv([make] * 3), actions, 7)
    _assert_same_transitions(got, ref)
    assert any(r[2].any() for r in ref[1:]) and any(r[3].any() for r in ref[1:])  # both kinds of episode end happened


# -- the collector ---------------------------------------------------------------------------------------


# test_gae.py::test_collector_across_autoreset_with_termination_and_truncation runs its hand-checked
# scenario on InProcessVectorEnv and the numpy actor too.


def test_batch_does_not_alias_the_collector_buffers():
    envs = InProcessVectorEnv(_counting_fns()[:2])
    col = RolloutCollector(
        envs, GaussianPolicy(1, 1), LinearValue(), steps_per_env=5, gamma=0.9, gae_lambda=0.9,
        obs_normalizer=ObservationNormalizer((1,), enabled=False), reward_scaler=RewardScaler(2, 0.9, enabled=False),
        seed=0,
    )
    first = col.collect()
    obs, act = first.obs.clone(), first.actions.clone()
    col.collect()
    torch.testing.assert_close(first.obs, obs)
    torch.testing.assert_close(first.actions, act)


def test_episode_stats_match_a_per_step_loop():
    rng = np.random.default_rng(0)
    T, N = 200, 3
    envs = InProcessVectorEnv(_counting_fns())
    col = RolloutCollector(
        envs, GaussianPolicy(1, 1), LinearValue(), steps_per_env=T, gamma=0.9, gae_lambda=0.9,
        obs_normalizer=ObservationNormalizer((1,), enabled=False), reward_scaler=RewardScaler(N, 0.9, enabled=False),
        seed=0,
    )
    col.ep_return[:] = [1.5, 0.0, 2.0]
    col.ep_length[:] = [2, 0, 1]
    col.rew_buf[:] = rng.normal(size=(T, N))
    dones = rng.random((T, N)) < 0.05
    ep_ret, ep_len = col.ep_return.copy(), col.ep_length.copy()
    exp_r, exp_l = [], []
    for t in range(T):
        ep_ret += col.rew_buf[t]
        ep_len += 1
        for i in np.flatnonzero(dones[t]):
            exp_r.append(ep_ret[i])
            exp_l.append(ep_len[i])
            ep_ret[i], ep_len[i] = 0.0, 0
    r, l = col._episode_stats(dones)
    np.testing.assert_allclose(r, exp_r, rtol=1e-12)
    assert l == exp_l
    np.testing.assert_allclose(col.ep_return, ep_ret, rtol=1e-12)
    np.testing.assert_array_equal(col.ep_length, ep_len)
    envs.close()


def test_gae_matches_torch_recursion_on_random_blocks():
    g = torch.Generator().manual_seed(0)
    T, N, gamma, lam = 64, 5, 0.99, 0.95
    r, v, last = torch.randn(T, N, generator=g), torch.randn(T, N, generator=g), torch.randn(N, generator=g)
    d = torch.rand(T, N, generator=g) < 0.1
    adv, ret = compute_gae(r, v, last, d, gamma, lam)
    ref = torch.zeros(T, N, dtype=torch.float64)
    running = torch.zeros(N, dtype=torch.float64)
    nd = 1.0 - d.double()
    nxt = torch.cat([v[1:], last[None]]).double()
    for t in reversed(range(T)):
        running = r[t].double() + gamma * nd[t] * nxt[t] - v[t].double() + gamma * lam * nd[t] * running
        ref[t] = running
    torch.testing.assert_close(adv.double(), ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ret, adv + v)


# -- the benchmark script --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("extra", [[], ["--update-only", "--repeats", "1", "--warmup", "1", "--threads", "1"]])
def test_benchmark_script_prints_one_json_object_last(extra):
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
    out = subprocess.run(
        [sys.executable, str(script), "env=cartpole", "total_env_steps=1024", "rollout.batch_size=512",
         "rollout.normalizer_warmup=0", *extra],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["settings"]["env_id"] == "CartPole-v1" and result["settings"]["batch_size"] == 512
    if extra:
        assert result["threads"]["1"]["update_total_s"] > 0
    else:
        assert result["env_steps"] == 1024 and result["env_steps_per_s"] > 0
        assert set(result["time_split_s"]) >= {"rollout", "update", "critic"}
        assert result["peak_rss_mb"] > 0 and set(result["peak_rss_mb_at"]) == {"25%", "50%", "100%"}
