"""GAE and batch collection against hand-computed values (in the style of SB3's tests/test_gae.py)."""
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers import TimeLimit

from trpo_lab.envs import InProcessVectorEnv, ObservationNormalizer, RewardScaler
from trpo_lab.policies import GaussianPolicy
from trpo_lab.rollout import RolloutCollector, compute_gae

from helpers import CountingEnv, LinearValue


def test_gae_termination_by_hand():
    # γ = λ = 0.5; rewards 1, 2, 3; V = .5, 1, 1.5; V(s_3) = 2; the episode terminates after step 1.
    # δ0 = 1 + .5·1 − .5 = 1;  δ1 = 2 − 1 = 1 (terminal);  δ2 = 3 + .5·2 − 1.5 = 2.5
    # A2 = 2.5;  A1 = 1;  A0 = 1 + .25·1 = 1.25
    adv, ret = compute_gae(
        torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[0.5], [1.0], [1.5]]), torch.tensor([2.0]),
        torch.tensor([[False], [True], [False]]), gamma=0.5, lam=0.5,
    )
    torch.testing.assert_close(adv.squeeze(1), torch.tensor([1.25, 1.0, 2.5]))
    torch.testing.assert_close(ret.squeeze(1), torch.tensor([1.75, 2.0, 4.0]))


def test_gae_truncation_bootstrap_by_hand():
    # as above, but step 1 is a time-limit cut with V(s_final) = 4 added to its reward by the caller:
    # r1 = 2 + .5·4 = 4 → δ1 = 3, A1 = 3, A0 = 1 + .25·3 = 1.75
    adv, _ = compute_gae(
        torch.tensor([[1.0], [4.0], [3.0]]), torch.tensor([[0.5], [1.0], [1.5]]), torch.tensor([2.0]),
        torch.tensor([[False], [True], [False]]), gamma=0.5, lam=0.5,
    )
    torch.testing.assert_close(adv.squeeze(1), torch.tensor([1.75, 3.0, 2.5]))


def test_gae_lambda_one_is_discounted_return_minus_value():
    r = torch.tensor([[1.0], [1.0], [1.0]])
    v = torch.tensor([[0.3], [0.2], [0.1]])
    adv, ret = compute_gae(r, v, torch.tensor([5.0]), torch.zeros(3, 1, dtype=torch.bool), gamma=0.9, lam=1.0)
    expected_ret = torch.tensor([1 + 0.9 + 0.81 + 0.729 * 5, 1 + 0.9 + 0.81 * 5, 1 + 0.9 * 5])
    torch.testing.assert_close(ret.squeeze(1), expected_ret)


def reference_advantages(obs_seq, rew_seq, next_obs_seq, terminal_seq, end_seq, V, gamma, lam):
    """Per-episode sums Â_t = Σ_k (γλ)^k δ_{t+k} over the rest of t's episode inside the batch."""
    T = len(rew_seq)
    deltas = [
        rew_seq[t] + (0.0 if terminal_seq[t] else gamma * V(next_obs_seq[t])) - V(obs_seq[t]) for t in range(T)
    ]
    adv = []
    for t in range(T):
        total, k = 0.0, 0
        while t + k < T:
            total += (gamma * lam) ** k * deltas[t + k]
            if end_seq[t + k]:
                break
            k += 1
        adv.append(total)
    return np.array(adv)


@pytest.mark.parametrize(
    "vector_env, numpy_actor",
    [("gymnasium", False), ("inprocess", False), ("inprocess", True)],  # the reference path and both fast paths
)
def test_collector_across_autoreset_with_termination_and_truncation(vector_env, numpy_actor):
    """Env 0 terminates every 3 steps, env 1 is cut by a 4-step time limit; T = 7 spans both resets."""
    fns = [lambda: CountingEnv(term_at=3), lambda: TimeLimit(CountingEnv(term_at=None), max_episode_steps=4)]
    envs = (SyncVectorEnv(fns, autoreset_mode=AutoresetMode.SAME_STEP) if vector_env == "gymnasium"
            else InProcessVectorEnv(fns))
    gamma, lam, T = 0.9, 0.8, 7
    torch.manual_seed(0)
    col = RolloutCollector(
        envs, GaussianPolicy(1, 1), LinearValue(), steps_per_env=T, gamma=gamma, gae_lambda=lam,
        obs_normalizer=ObservationNormalizer((1,), enabled=False), reward_scaler=RewardScaler(2, gamma, enabled=False),
        seed=0, numpy_actor=numpy_actor,
    )
    batch = col.collect()
    obs = batch.obs.reshape(T, 2)
    # no dummy transition: the step after an episode end starts at the reset observation 0
    np.testing.assert_array_equal(obs[:, 0].numpy(), [0, 1, 2, 0, 1, 2, 0])
    np.testing.assert_array_equal(obs[:, 1].numpy(), [0, 1, 2, 3, 0, 1, 2])

    V = lambda s: 10.0 + s  # noqa: E731
    # env 0: terminal after obs 2 (→ no bootstrap); last step's next obs is 1
    ref0 = reference_advantages(
        [0, 1, 2, 0, 1, 2, 0], [1, 2, 3, 1, 2, 3, 1], [1, 2, None, 1, 2, None, 1],
        [0, 0, 1, 0, 0, 1, 0], [0, 0, 1, 0, 0, 1, 0], V, gamma, lam,
    )
    # env 1: truncated after obs 3 → bootstrap from the true final observation 4 (not the reset obs 0)
    ref1 = reference_advantages(
        [0, 1, 2, 3, 0, 1, 2], [1, 2, 3, 4, 1, 2, 3], [1, 2, 3, 4, 1, 2, 3],
        [0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 0, 0], V, gamma, lam,
    )
    adv = batch.advantages.reshape(T, 2).numpy()
    np.testing.assert_allclose(adv[:, 0], ref0, rtol=1e-5)
    np.testing.assert_allclose(adv[:, 1], ref1, rtol=1e-5)
    np.testing.assert_allclose(batch.returns.reshape(T, 2).numpy(), adv + 10.0 + obs.numpy(), rtol=1e-5)
    # episode statistics: env 0 ended twice (return 6 each), env 1 once (return 10)
    assert sorted(batch.episode_returns) == [6.0, 6.0, 10.0]
    assert sorted(batch.episode_lengths) == [3, 3, 4]
    # log π_old matches the policy on the stored (obs, action) pairs
    with torch.no_grad():
        lp = col.policy.log_prob(col.policy.dist_params(batch.obs), batch.actions)
    torch.testing.assert_close(batch.log_prob_old, lp)


def test_reward_scaler_divides_by_running_return_std():
    rs = RewardScaler(1, gamma=0.5)
    r = np.array([[1.0], [1.0], [1.0], [1.0]])
    d = np.zeros((4, 1))
    out = rs.scale(r, d)
    returns = np.array([1.0, 1.5, 1.75, 1.875])
    # running var starts at 1 with count 1e-4; merge with this batch's var
    n0, b = 1e-4, 4
    mean = returns.mean() * b / (n0 + b)
    m2 = 1.0 * n0 + returns.var() * b + returns.mean() ** 2 * n0 * b / (n0 + b)
    np.testing.assert_allclose(out[:, 0], 1.0 / np.sqrt(m2 / (n0 + b) + 1e-8), rtol=1e-6)
    assert mean == pytest.approx(rs.rms.mean)


def test_observation_normalizer_uses_running_moments():
    norm = ObservationNormalizer((2,))
    x = np.random.default_rng(0).normal([3.0, -1.0], [2.0, 0.5], size=(5000, 2))
    norm.update(x)
    z = norm.normalize(x)
    np.testing.assert_allclose(z.mean(0), 0.0, atol=1e-3)
    np.testing.assert_allclose(z.std(0), 1.0, atol=1e-3)
