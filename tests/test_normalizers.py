"""The running normalisers inside a rollout: frozen within a batch, reset at episode ends.

Each expected value is computed here by hand (numpy on the raw observations and rewards the envs
produced), never by the code under test.
"""
import numpy as np
import torch

from trpo_lab.envs import InProcessVectorEnv, ObservationNormalizer, RewardScaler
from trpo_lab.policies import ValueFunction, make_policy
from trpo_lab.rollout import RolloutCollector

from helpers import CountingEnv

T, N, TERM_AT, GAMMA = 8, 2, 3, 0.9


def _collector(numpy_actor: bool, obs_normalizer, reward_scaler) -> RolloutCollector:
    envs = InProcessVectorEnv([lambda: CountingEnv(term_at=TERM_AT)] * N)
    torch.manual_seed(0)
    policy = make_policy(envs.single_observation_space, envs.single_action_space, (8,))
    return RolloutCollector(
        envs, policy, ValueFunction(1, (8,)), steps_per_env=T, gamma=GAMMA, gae_lambda=0.95,
        obs_normalizer=obs_normalizer, reward_scaler=reward_scaler, seed=0, numpy_actor=numpy_actor,
    )


def _raw_obs(batches: int) -> np.ndarray:
    """CountingEnv's observation is the step count within the episode: 0, 1, 2, 0, 1, 2, … in every env."""
    t = np.arange(batches * T) % TERM_AT
    return np.repeat(t[:, None], N, 1).astype(np.float64)  # (time, env)


def test_observation_normaliser_is_frozen_within_a_batch():
    norm = ObservationNormalizer((1,))
    col = _collector(False, norm, RewardScaler(N, GAMMA, enabled=False))
    seen = []
    act = col._actor

    def recording_actor():
        inner = act()
        return lambda obs: (seen.append(obs.copy()), inner(obs))[1]

    col._actor = recording_actor
    raw = _raw_obs(2)
    for b in range(2):
        seen.clear()
        # the statistics before this batch, as numpy sees them: prior count 1e-4 at mean 0, var 1
        before = raw[: b * T].reshape(-1)
        count = 1e-4 + before.size
        mean = before.sum() / count
        var = (1e-4 * (0 - mean) ** 2 + 1e-4 + ((before - mean) ** 2).sum()) / count
        expected = np.clip((raw[b * T:(b + 1) * T] - mean) / np.sqrt(var + 1e-8), -10, 10)  # (T, N)
        batch = col.collect()
        np.testing.assert_allclose(np.stack(seen)[..., 0], expected, rtol=1e-5, atol=1e-6)  # what the policy acted on
        np.testing.assert_allclose(batch.obs.numpy()[:, 0].reshape(T, N), expected, rtol=1e-5, atol=1e-6)  # trained on
    # after the second batch the statistics include both batches' raw observations
    allobs = raw.reshape(-1)
    count = 1e-4 + allobs.size
    mean = allobs.sum() / count
    np.testing.assert_allclose(norm.rms.mean, [mean], rtol=1e-6)
    np.testing.assert_allclose(norm.rms.count, count)


def _discounted_returns_with_resets(rewards: np.ndarray, dones: np.ndarray, gamma: float, start: np.ndarray):
    """R_t = γ·R_{t−1}·(1 − done_{t−1}) + r_t, written out step by step."""
    out, ret = np.zeros_like(rewards), start.copy()
    for t in range(len(rewards)):
        ret = gamma * ret + rewards[t]
        out[t] = ret
        ret = np.where(dones[t], 0.0, ret)
    return out, ret


def test_reward_scaler_resets_the_running_return_at_episode_end():
    rewards = np.array([[1.0, 2.0], [3.0, 1.0], [2.0, 5.0], [4.0, 1.0], [1.0, 1.0]])
    dones = np.array([[0, 0], [1, 0], [0, 0], [0, 1], [0, 0]], bool)
    scaler = RewardScaler(2, GAMMA)
    scaled = scaler.scale(rewards, dones)
    returns, last = _discounted_returns_with_resets(rewards, dones, GAMMA, np.zeros(2))
    np.testing.assert_allclose(scaler.ret, last)
    # one update of the running variance with this batch's returns (prior count 1e-4, mean 0, var 1)
    x = returns.reshape(-1)
    count = 1e-4 + x.size
    mean = x.sum() / count
    var = (1e-4 * mean**2 + 1e-4 + ((x - mean) ** 2).sum()) / count
    np.testing.assert_allclose(scaled, rewards / np.sqrt(var + 1e-8), rtol=1e-6)
    # the next block continues the open returns and resets the finished ones
    more = np.array([[1.0, 1.0]])
    scaler.scale(more, np.zeros((1, 2), bool))
    np.testing.assert_allclose(scaler.ret, GAMMA * last + 1.0)


def test_reward_scaler_in_a_rollout_sees_episode_boundaries():
    scaler = RewardScaler(N, GAMMA)
    col = _collector(True, ObservationNormalizer((1,), enabled=False), scaler)
    col.collect()
    # CountingEnv: reward = step count + 1 = 1, 2, 3, 1, 2, 3, …; episodes end every TERM_AT steps
    t = np.arange(T)
    rewards = np.repeat(((t % TERM_AT) + 1.0)[:, None], N, 1)
    dones = np.repeat(((t % TERM_AT) == TERM_AT - 1)[:, None], N, 1)
    returns, last = _discounted_returns_with_resets(rewards, dones, GAMMA, np.zeros(N))
    np.testing.assert_allclose(scaler.ret, last)
    x = returns.reshape(-1)
    np.testing.assert_allclose(scaler.rms.mean, x.sum() / (1e-4 + x.size), rtol=1e-6)
