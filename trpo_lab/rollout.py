r"""Batch collection across a vector env, time-limit bootstrapping and GAE(γ, λ).

The per-step loop does only what cannot be batched: normalise the observation, one batched
policy call for all envs, one ``envs.step``. Log-probabilities under π_old, values, reward
scaling, episode statistics and advantages are computed once per batch afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch

from trpo_lab.envs import ObservationNormalizer, RewardScaler
from trpo_lab.policies import Policy, ValueFunction


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    last_values: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    lam: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Generalised advantage estimation (Schulman et al. 2016) on a ``(T, N)`` block.

        δ_t = r_t + γ (1 − d_t) V(s_{t+1}) − V(s_t)
        Â_t = δ_t + γλ (1 − d_t) Â_{t+1}

    ``dones[t]`` marks that the episode ended at step t (terminated *or* truncated): nothing
    flows back across it. A truncated step's bootstrap γV(s_final) must already be added to its
    reward by the caller. ``last_values`` is V(s_T) for the observation after the block.

    Returns:
        (advantages Â, value targets Â + V), both ``(T, N)``.
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    not_done = 1.0 - dones.to(rewards.dtype)
    next_values = torch.cat([values[1:], last_values.unsqueeze(0)], 0)
    deltas = rewards + gamma * not_done * next_values - values
    running = torch.zeros_like(last_values)
    for t in reversed(range(T)):
        running = deltas[t] + gamma * lam * not_done[t] * running
        adv[t] = running
    return adv, adv + values


@dataclass
class RolloutBatch:
    """One batch of T steps from N envs, flattened to T·N samples (time-major)."""

    obs: torch.Tensor  # (T·N, obs_dim), normalised as the policy saw them
    actions: torch.Tensor  # (T·N, act_dim) float or (T·N,) int
    log_prob_old: torch.Tensor  # (T·N,) log π_old(a|s)
    advantages: torch.Tensor  # (T·N,) GAE, not normalised
    returns: torch.Tensor  # (T·N,) value targets Â + V
    values: torch.Tensor  # (T·N,) V(s) before the critic is fitted
    episode_returns: list[float] = field(default_factory=list)  # raw returns of episodes ended in this batch
    episode_lengths: list[int] = field(default_factory=list)

    @property
    def size(self) -> int:
        return self.obs.shape[0]


class RolloutCollector:
    """Collects fixed-size batches from a SAME_STEP-autoreset vector env.

    Args:
        envs: the vector env (see :func:`trpo_lab.envs.make_vec_env`).
        policy: acts by sampling from its distribution.
        critic: gives V(s) for GAE and the time-limit bootstraps.
        steps_per_env: T, so a batch has T·N samples.
        gamma: discount γ.
        gae_lambda: GAE λ.
        obs_normalizer: frozen during a batch, updated with its raw observations afterwards.
        reward_scaler: divides rewards by the running std of the discounted return.
        seed: seeds the envs' first reset (env i gets seed + i).
    """

    def __init__(
        self,
        envs: gym.vector.VectorEnv,
        policy: Policy,
        critic: ValueFunction,
        steps_per_env: int,
        gamma: float,
        gae_lambda: float,
        obs_normalizer: ObservationNormalizer,
        reward_scaler: RewardScaler,
        seed: int,
    ) -> None:
        self.envs, self.policy, self.critic = envs, policy, critic
        self.T, self.N = steps_per_env, envs.num_envs
        self.gamma, self.lam = gamma, gae_lambda
        self.obs_normalizer, self.reward_scaler = obs_normalizer, reward_scaler
        space = envs.single_action_space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if not self.discrete:
            self.low, self.high = space.low, space.high
        obs_dim = envs.single_observation_space.shape[0]
        act_shape = () if self.discrete else space.shape
        self.obs_buf = np.zeros((self.T, self.N, obs_dim), np.float32)
        self.raw_obs_buf = np.zeros((self.T, self.N, obs_dim), np.float32)
        self.act_buf = np.zeros((self.T, self.N, *act_shape), np.int64 if self.discrete else np.float32)
        self.rew_buf = np.zeros((self.T, self.N), np.float64)
        self.term_buf = np.zeros((self.T, self.N), bool)
        self.trunc_buf = np.zeros((self.T, self.N), bool)
        self.raw_obs, _ = envs.reset(seed=seed)
        self.ep_return = np.zeros(self.N, np.float64)
        self.ep_length = np.zeros(self.N, np.int64)

    def collect(self) -> RolloutBatch:
        T, N = self.T, self.N
        policy, normalize = self.policy, self.obs_normalizer.normalize
        truncated_final: list[tuple[int, int, np.ndarray]] = []
        for t in range(T):
            obs = normalize(self.raw_obs)
            self.raw_obs_buf[t] = self.raw_obs
            self.obs_buf[t] = obs
            with torch.inference_mode():
                action = policy.sample(policy.dist_params(torch.from_numpy(obs))).numpy()
            self.act_buf[t] = action
            env_action = action if self.discrete else np.clip(action, self.low, self.high)
            self.raw_obs, reward, term, trunc, info = self.envs.step(env_action)
            self.rew_buf[t], self.term_buf[t], self.trunc_buf[t] = reward, term, trunc
            if trunc.any():
                for i in np.flatnonzero(trunc & ~term):
                    truncated_final.append((t, i, info["final_obs"][i]))

        dones = self.term_buf | self.trunc_buf
        episode_returns, episode_lengths = self._episode_stats(dones)

        obs_t = torch.from_numpy(self.obs_buf.reshape(T * N, -1))
        act_t = torch.from_numpy(self.act_buf.reshape(T * N, *self.act_buf.shape[2:]))
        last_obs = torch.from_numpy(normalize(self.raw_obs))
        final_obs = torch.from_numpy(normalize(np.stack([f for _, _, f in truncated_final]))) if truncated_final else None
        with torch.no_grad():
            log_prob_old = policy.log_prob(policy.dist_params(obs_t), act_t)
            v_in = [obs_t, last_obs] + ([final_obs] if final_obs is not None else [])
            v_all = self.critic(torch.cat(v_in, 0))
        values = v_all[: T * N].reshape(T, N)
        last_values = v_all[T * N : T * N + N]

        rewards = torch.from_numpy(self.reward_scaler.scale(self.rew_buf, dones))
        if final_obs is not None:
            # Why: a time-limit cut is not a terminal state; its target keeps γV(s_final).
            v_final = v_all[T * N + N :]
            ts = torch.tensor([t for t, _, _ in truncated_final])
            es = torch.tensor([i for _, i, _ in truncated_final])
            rewards[ts, es] += self.gamma * v_final
        adv, ret = compute_gae(rewards, values, last_values, torch.from_numpy(dones), self.gamma, self.lam)
        self.obs_normalizer.update(self.raw_obs_buf.reshape(T * N, -1))
        return RolloutBatch(
            obs=obs_t.clone(),
            actions=act_t.clone(),
            log_prob_old=log_prob_old,
            advantages=adv.reshape(-1),
            returns=ret.reshape(-1),
            values=values.reshape(-1),
            episode_returns=episode_returns,
            episode_lengths=episode_lengths,
        )

    def reset(self, seed: int) -> None:
        """Reseed and reset every env, dropping the episodes in progress (used when resuming)."""
        self.raw_obs, _ = self.envs.reset(seed=seed)
        self.ep_return[:] = 0.0
        self.ep_length[:] = 0

    def _episode_stats(self, dones: np.ndarray) -> tuple[list[float], list[int]]:
        returns: list[float] = []
        lengths: list[int] = []
        for t in range(self.T):
            self.ep_return += self.rew_buf[t]
            self.ep_length += 1
            if dones[t].any():
                idx = np.flatnonzero(dones[t])
                returns += self.ep_return[idx].tolist()
                lengths += self.ep_length[idx].tolist()
                self.ep_return[idx] = 0.0
                self.ep_length[idx] = 0
        return returns, lengths
