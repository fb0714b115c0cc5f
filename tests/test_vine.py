"""Vine sampling (trpo_lab/vine.py) and single path's Monte Carlo preset, against hand computations."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

from trpo_lab.envs import InProcessVectorEnv, ObservationNormalizer, RewardScaler
from trpo_lab.policies import CategoricalPolicy, GaussianPolicy
from trpo_lab.rollout import RolloutCollector
from trpo_lab.vine import VineCollector, VineSurrogate, crn_correlation

from helpers import CountingEnv, LinearValue

GAMMA = 0.9


def _grad(fn, policy):
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(fn(), list(policy.parameters()))])


# -- the surrogates: Eq. 16 and Eq. 15 on explicit numbers --------------------------------------------------------


def test_eq16_value_and_gradient_match_the_self_normalised_formula():
    torch.manual_seed(0)
    pol = GaussianPolicy(2, 1, [4], "tanh", log_std_init=-0.3)
    s = torch.tensor([[0.5, -1.0], [0.2, 0.3]]).repeat_interleave(3, 0)  # N = 2 states, K = 3 branches
    a = torch.tensor([[0.1], [-0.4], [0.9], [0.0], [0.3], [-0.2]])
    q = torch.tensor([[1.0, 2.0, 4.0], [-1.0, 0.5, 0.0]])
    with torch.no_grad():
        lpo = pol.log_prob(pol.dist_params(s), a)
    sur = VineSurrogate(s, a, lpo, q, discrete=False, normalize=False)
    with torch.no_grad():  # move θ away from θ_old so that the weights are not all 1
        for p in pol.parameters():
            p.add_(0.1 * torch.randn_like(p))

    def by_hand():  # L = 1/N Σ_n Σ_k w_nk q_nk / Σ_k w_nk, w = N(a; μ_θ(s), σ_θ) / π_old(a|s)
        mu = pol.net(s)
        w = torch.exp(torch.distributions.Normal(mu, pol.log_std.exp()).log_prob(a).sum(-1) - lpo).reshape(2, 3)
        return ((w * q).sum(1) / w.sum(1)).mean()

    lab = lambda: sur.value(pol, pol.dist_params(s))
    assert float(lab().detach()) == pytest.approx(float(by_hand().detach()), rel=1e-6)
    assert torch.allclose(_grad(lab, pol), _grad(by_hand, pol), rtol=1e-5, atol=1e-7)


def test_eq16_gradient_at_theta_old_is_the_centred_score_average():
    torch.manual_seed(1)
    pol = GaussianPolicy(2, 1, [4], "tanh", log_std_init=0.0)
    s = torch.tensor([[0.5, -1.0]]).repeat(4, 1)
    a = torch.tensor([[0.1], [-0.4], [0.9], [1.5]])
    q = torch.tensor([[3.0, 1.0, -2.0, 0.5]])
    with torch.no_grad():
        lpo = pol.log_prob(pol.dist_params(s), a)
    sur = VineSurrogate(s, a, lpo, q, discrete=False, normalize=False)
    g = _grad(lambda: sur.value(pol, pol.dist_params(s)), pol)
    centred = q - q.mean()  # ∇L = 1/K Σ_k ∇log π(a_k|s)(q_k − q̄) at θ_old (self-normalisation)
    expected = _grad(lambda: (pol.log_prob(pol.dist_params(s), a) * centred.reshape(-1)).mean(), pol)
    assert torch.allclose(g, expected, rtol=1e-5, atol=1e-7)


def test_eq15_value_and_gradient_match_the_sum_over_every_action():
    torch.manual_seed(2)
    pol = CategoricalPolicy(2, 3, [4], "tanh")
    s = torch.tensor([[0.5, -1.0], [0.2, 0.3]]).repeat_interleave(3, 0)
    a = torch.tensor([0, 1, 2, 0, 1, 2])
    q = torch.tensor([[1.0, 2.0, 4.0], [-1.0, 0.5, 0.0]])
    with torch.no_grad():
        lpo = pol.log_prob(pol.dist_params(s), a)
    sur = VineSurrogate(s, a, lpo, q, discrete=True, normalize=False)

    def by_hand():  # L = 1/N Σ_n Σ_a softmax(logits(s_n))_a q_na
        return (torch.softmax(pol.net(s[::3]), -1) * q).sum(1).mean()

    lab = lambda: sur.value(pol, pol.dist_params(s))
    assert float(lab().detach()) == pytest.approx(float(by_hand().detach()), rel=1e-6)
    assert torch.allclose(_grad(lab, pol), _grad(by_hand, pol), rtol=1e-5, atol=1e-7)
    # centring Q̂ per state leaves the gradient unchanged (Σ_a π(a|s) = 1 for every θ)
    shifted = VineSurrogate(s, a, lpo, q - q.mean(1, keepdim=True), discrete=True, normalize=False)
    assert torch.allclose(_grad(lambda: shifted.value(pol, pol.dist_params(s)), pol), _grad(lab, pol), atol=1e-6)


# -- the sampler --------------------------------------------------------------------------------------------------


def _vine(env_fn, policy, k, states=3, branch_length=4, steps_per_env=5, num_envs=2, critic=None, bootstrap=False):
    envs = InProcessVectorEnv([env_fn] * num_envs)
    obs_space = envs.single_observation_space
    return VineCollector(
        envs, policy, critic or LinearValue(), steps_per_env=steps_per_env, gamma=GAMMA, gae_lambda=0.95,
        obs_normalizer=ObservationNormalizer(obs_space.shape, enabled=False),
        reward_scaler=RewardScaler(num_envs, GAMMA, enabled=False), seed=0,
        branch_envs=InProcessVectorEnv([env_fn] * k), states=states, actions_per_state=k,
        branch_length=branch_length, bootstrap=bootstrap, baseline="none", normalize=False)


def test_branch_q_on_a_counting_env_is_the_hand_sum_and_env_steps_count_every_step():
    """CountingEnv: obs = t, reward = t + 1, terminates at t = 7. From a state with obs t_n, every branch gets
    Q̂ = Σ_{j < min(T_b, 7 − t_n)} γ^j (t_n + 1 + j), whatever its actions."""
    torch.manual_seed(0)
    pol = GaussianPolicy(1, 1, [4], "tanh")
    col = _vine(lambda: CountingEnv(term_at=7), pol, k=3, states=6, branch_length=4)
    batch = col.collect()
    sur = batch.surrogate
    t_n = sur.obs[::3, 0].numpy()
    expected = [sum(GAMMA**j * (t + 1 + j) for j in range(min(4, 7 - int(t)))) for t in t_n]
    assert np.allclose(sur.raw.numpy(), np.repeat(np.array(expected)[:, None], 3, 1))
    steps = sum(3 * min(4, 7 - int(t)) for t in t_n)
    assert batch.branch_steps == steps and batch.env_steps == 10 + steps
    assert batch.sampling_stats["vine/q_spread"] == 0.0


def test_a_resumed_trunk_snapshots_the_observation_the_run_stopped_at():
    """CountingEnv (obs = t, term_at = 7): after one batch of 5 steps per env every env sits at obs 5. A collector
    that resumes from that batch's state (its envs freshly reset to obs 0) must hand vine's first trunk
    snapshot obs 5, not the reset's 0: a branch restored from it acts on that observation."""
    torch.manual_seed(0)
    pol = GaussianPolicy(1, 1, [4], "tanh")
    col = _vine(lambda: CountingEnv(term_at=7), pol, k=3)
    col.collect()
    resumed = _vine(lambda: CountingEnv(term_at=7), pol, k=3)
    resumed.load_state_dict(col.state_dict())
    for i in range(2):
        assert resumed.envs.snapshot_env(i)["obs"].tolist() == [5.0]
        assert resumed.envs.restore_env(0, resumed.envs.snapshot_env(i)).tolist() == [5.0]


@pytest.mark.parametrize("bootstrap", [False, True])
def test_branch_bootstraps_from_the_critic_at_the_time_limit_and_optionally_at_t_b(bootstrap):
    """CountingEnv (reward t + 1, V(s) = 10 + s) under a TimeLimit of 6 steps and T_b = 4: a branch from t_n sums
    Σ_{j < m} γ^j (t_n + 1 + j) with m = min(T_b, 6 − t_n); a branch cut by the time limit (6 − t_n ≤ T_b) adds
    γ^m V(6); with ``bootstrap`` a branch still running after T_b steps adds γ^{T_b} V(t_n + T_b)."""
    torch.manual_seed(0)
    env_fn = lambda: gym.wrappers.TimeLimit(CountingEnv(), max_episode_steps=6)  # noqa: E731
    col = _vine(env_fn, GaussianPolicy(1, 1, [4], "tanh"), k=2, states=8, branch_length=4, bootstrap=bootstrap)
    sur = col.collect().surrogate
    t_n = sur.obs[::2, 0].numpy().astype(int)  # the trunk's t ∈ {0..4}; 8 of its 10 samples hold both kinds
    assert (6 - t_n <= 4).any() and (6 - t_n > 4).any()

    def q_hat(t: int) -> float:
        m = min(4, 6 - t)
        q = sum(GAMMA**j * (t + 1 + j) for j in range(m))
        if 6 - t <= 4:
            return q + GAMMA**m * (10 + 6)
        return q + (GAMMA**4 * (10 + t + 4) if bootstrap else 0.0)

    assert np.allclose(sur.raw.numpy(), np.repeat(np.array([q_hat(t) for t in t_n])[:, None], 2, 1))


def test_discrete_branches_enumerate_every_action_with_known_rewards():
    """Reward = 1 + 2·[action = 1]: Q̂(s, a) = 2·[a = 1] + Σ_{j<T_b} γ^j (no termination within the branch)."""

    class ActionReward(CountingEnv):
        def __init__(self):
            super().__init__()
            self.action_space = gym.spaces.Discrete(3)

        def step(self, action):
            obs, _, term, trunc, info = super().step(action)
            return obs, 1.0 + 2.0 * (int(action) == 1), term, trunc, info

    torch.manual_seed(0)
    pol = CategoricalPolicy(1, 3, [4], "tanh")
    with torch.no_grad():  # later actions: 0 with probability ≈ 1, so only the first action's reward varies
        pol.net[-1].weight.zero_()
        pol.net[-1].bias.copy_(torch.tensor([60.0, 0.0, 0.0]))
    col = _vine(ActionReward, pol, k=3, states=2, branch_length=3)
    sur = col.collect().surrogate
    base = 1 + GAMMA + GAMMA**2
    assert sur.actions.tolist() == [0, 1, 2, 0, 1, 2]
    assert np.allclose(sur.raw.numpy(), [[base, base + 2, base]] * 2)


def _pendulum_collector(k=3):
    torch.manual_seed(0)
    fn = lambda: gym.make("InvertedPendulum-v5")
    pol = GaussianPolicy(4, 1, [8], "tanh", log_std_init=0.0)
    return _vine(fn, pol, k=k, branch_length=30, critic=LinearValue())


def _branch(col, snap, first, seed=5):
    return col.branches(snap, first, np.random.default_rng(seed), lambda o: o, col._head(), 1.0)


def test_two_branches_with_the_same_action_and_random_numbers_have_the_same_q():
    col = _pendulum_collector()
    col._std = np.ones(1, np.float32)
    col.envs.reset(seed=3)
    for _ in range(3):
        col.envs.step(np.full((2, 1), 0.2, np.float32))
    snap = col.envs.snapshot_env(0)
    res = _branch(col, snap, np.array([[0.5], [0.5], [-0.5]], np.float32))
    assert res.q[0] == res.q[1] and res.actions[0] == res.actions[1]  # the same noise after the first action
    assert res.q[0] != res.q[2]


def test_a_branch_restored_from_a_snapshot_equals_a_replay_of_the_same_trajectory():
    col = _pendulum_collector()
    col._std = np.ones(1, np.float32)
    prefix = [np.array([[0.3], [-0.1]], np.float32) * (i + 1) for i in range(4)]
    col.envs.reset(seed=11)
    for a in prefix:
        col.envs.step(a)
    res = _branch(col, col.envs.snapshot_env(1), np.array([[0.4], [-0.7], [0.0]], np.float32))
    for k in range(3):
        env = gym.make("InvertedPendulum-v5")
        env.reset(seed=12)  # sub-env 1 of a vector env reset with seed 11
        for a in prefix:
            env.step(a[1])
        q, disc = 0.0, 1.0
        for a in res.actions[k]:
            _, r, term, trunc, _ = env.step(a)
            q, disc = q + disc * r, disc * GAMMA
            if term or trunc:
                break
        assert q == res.q[k]


def test_crn_correlation_is_pearson_over_branch_pairs():
    q = np.array([[1.0, 2.0], [3.0, 5.0], [0.0, -1.0]])
    x = np.concatenate([q[:, 0], q[:, 1]])
    y = np.concatenate([q[:, 1], q[:, 0]])
    assert crn_correlation(q) == pytest.approx(np.corrcoef(x, y)[0, 1])


# -- single path as the paper ran it: Monte Carlo, with and without the critic baseline -----------------------------


def test_mc_without_baseline_is_the_discounted_return_to_go():
    envs = InProcessVectorEnv([lambda: CountingEnv(term_at=3)])
    col = RolloutCollector(envs, GaussianPolicy(1, 1, [4], "tanh"), LinearValue(), steps_per_env=5, gamma=GAMMA,
                           gae_lambda=1.0, obs_normalizer=ObservationNormalizer((1,), enabled=False),
                           reward_scaler=RewardScaler(1, GAMMA, enabled=False), seed=0, baseline="none")
    adv = col.collect().advantages.numpy()
    # rewards 1, 2, 3 | 1, 2 (episode ends after 3 steps); the batch's end bootstraps γV(s=2) = γ·12
    expected = [1 + GAMMA * 2 + GAMMA**2 * 3, 2 + GAMMA * 3, 3.0, 1 + GAMMA * 2 + GAMMA**2 * 12, 2 + GAMMA * 12]
    assert np.allclose(adv, expected)


# -- composition with the update's pieces (a 2-update smoke run each) -----------------------------------------------


@pytest.mark.parametrize("extra", [["algo=npg"], ["algo=trpo"], ["algo/fisher=empirical"],
                                   ["env=inverted_pendulum", "algo=trpo_no_ls"]])
def test_vine_composes_with_step_rules_line_searches_and_fishers(compose, tmp_path, extra, monkeypatch, caplog):
    from gymnasium.envs.classic_control.cartpole import CartPoleEnv
    from gymnasium.envs.mujoco.inverted_pendulum_v5 import InvertedPendulumEnv

    from trpo_lab.train import build_trainer

    counts = {"n": 0}
    for cls in (CartPoleEnv, InvertedPendulumEnv):
        step = cls.step

        def counting(self, action, _step=step):
            counts["n"] += 1
            return _step(self, action)

        monkeypatch.setattr(cls, "step", counting)
    cfg = compose(["env=cartpole", "debug=smoke", "sampling=vine", "sampling.states=16", "sampling.branch_length=10",
                   "total_env_steps=1000", "eval.every=0", *extra])
    caplog.set_level("INFO", logger="trpo_lab.trainer")
    with build_trainer(cfg, tmp_path / "run") as trainer:
        trainer.run_updates()
    assert trainer.updates == 2
    assert trainer.env_steps == counts["n"]  # every simulator step: trunk and branches
    # the budget is not whole batches (branches vary), so no rounding is announced, only what the budget counts
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("total_env_steps=")]
    assert said == ["total_env_steps=1000 counts vine's trunk (512 env steps per batch) and branch steps alike: "
                    "the run stops after the first update that reaches it"]
    rows = [__import__("json").loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["vine/states"] == 16 and r["vine/branch_steps"] > 0 for r in rows)


def test_a_resumed_vine_run_is_the_uninterrupted_run(compose, tmp_path):
    """Stop after 2 updates (checkpoint at the end), continue to the same total: the rows equal those of the run
    that never stopped (but row 2's return/delta and return/best, written at the stop without batch 3, and time/perf)."""
    import json

    from trpo_lab.train import run

    base = ["env=inverted_pendulum", "debug=smoke", "sampling=vine", "sampling.states=16", "sampling.branch_length=8",
            "eval.every=0"]
    run(compose([*base, "total_env_steps=3000"]), tmp_path / "straight")
    run(compose([*base, "total_env_steps=1200"]), tmp_path / "resumed")  # 2 updates of ≈ 512 + ≤ 512 branch steps
    run(compose([*base, "total_env_steps=3000"]), tmp_path / "resumed")

    def rows(d):
        out = [json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/"))} for r in out]

    a, b = rows("straight"), rows("resumed")
    assert len(a) == len(b) >= 4 and b[1]["update"] == 2
    for k in ("return/delta", "return/best"):  # written from batch 3's return, which the stopped run did not have
        a[1].pop(k), b[1].pop(k)
    assert a == b
