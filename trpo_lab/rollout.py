r"""Batch collection across a vector env, time-limit bootstrapping and GAE(γ, λ).

The per-step loop does only what cannot be batched: normalise the observation, one batched
policy call for all envs, one ``envs.step``, and writes into preallocated buffers. For a policy with
an MLP fast path (:func:`~trpo_lab.policies.policy_mlp`: the policies of :mod:`trpo_lab.policies`) the
per-step policy call is :class:`NumpyActor` (a numpy copy of the weights, refreshed once per batch): for the 2–16 states of one vector step a dozen numpy
calls cost less than the torch module call's per-op dispatch (scripts/benchmark.py measures it).
Log-probabilities under π_old (in torch, on the stored observations and actions), values,
reward scaling, episode statistics and advantages are computed once per batch afterwards.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch

from trpo_lab.envs import ObservationNormalizer, RewardScaler, restore_vector_env, snapshot_vector_env
from trpo_lab.nn import NumpyMLP
from trpo_lab.policies import Policy, ValueFunction, policy_mlp


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

    The δ_t are formed with torch ops on the whole block; the backward recursion runs over numpy
    views of the same memory, cheaper per step than torch ops on N-vectors (experiments/throughput/README.md).

    Returns:
        (advantages Â, value targets Â + V), both ``(T, N)``.
    """
    T = rewards.shape[0]
    not_done = 1.0 - dones.to(rewards.dtype)
    next_values = torch.cat([values[1:], last_values.unsqueeze(0)], 0)
    deltas = (rewards + gamma * not_done * next_values - values).detach().contiguous()
    adv = torch.empty_like(deltas)
    d, nd, a = deltas.numpy(), (gamma * lam * not_done).numpy(), adv.numpy()
    running = np.zeros_like(d[0])
    for t in range(T - 1, -1, -1):
        running = d[t] + nd[t] * running
        a[t] = running
    return adv, adv + values.detach()


class NumpyActor:
    r"""Samples a ~ π_θ(·|s) for the few states of one vector step, with numpy.

    A snapshot of a policy with an MLP fast path (:meth:`from_policy`, once per batch): its network as a
    :class:`~trpo_lab.nn.NumpyMLP` and its distribution's
    :meth:`~trpo_lab.policies.FastPathPolicy.numpy_sampler`, a = sample(net(s)).

    The noise comes from a numpy generator seeded from torch's global RNG at each snapshot, so a
    run stays a function of ``torch.manual_seed`` (and of the RNG state checkpoints save).
    """

    def __init__(self, net: NumpyMLP, sample: Callable[[np.ndarray], np.ndarray]) -> None:
        self.net, self.sample = net, sample

    @classmethod
    def from_policy(cls, policy: Policy) -> NumpyActor | None:
        """The snapshot of a policy with an :class:`~trpo_lab.policies.MLPHead`; None otherwise (act with torch)."""
        head = policy_mlp(policy)
        if head is None:
            return None
        net = NumpyMLP(head.layers)
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        return cls(net, policy.numpy_sampler(rng))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.sample(self.net(obs))


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
    raw_obs: np.ndarray | None = None  # (T·N, obs_dim) the observations before normalisation
    surrogate: Any = None  # a Surrogate other than single path's (vine: trpo_lab.vine.VineSurrogate); None: single path
    branch_steps: int = 0  # simulator steps taken besides the T·N samples (vine branches)
    sampling_stats: dict[str, Any] | None = None  # the sampler's per-update keys (trpo_lab.vine.SAMPLING_KEYS)

    @property
    def size(self) -> int:
        return self.obs.shape[0]

    @property
    def env_steps(self) -> int:
        """Every simulator step this batch took: its samples and any branches."""
        return self.size + self.branch_steps


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
        numpy_actor: act with :class:`NumpyActor` when the policy has an MLP fast path (default); False
            always calls the torch policy (the reference path).
        baseline: ``critic`` (default): Â = GAE(γ, λ) with the critic's V; ``none``: Â = the value target
            Â + V, i.e. with λ = 1 the discounted return-to-go Σ_l γ^l r_{t+l} and no baseline subtracted (a
            time-limit cut and the batch's end still bootstrap from the critic, as the GAE targets do).
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
        numpy_actor: bool = True,
        baseline: str = "critic",
    ) -> None:
        if baseline not in ("critic", "none"):
            raise ValueError(f"sampling.baseline={baseline!r} must be 'critic' or 'none'")
        self.baseline = baseline
        self.envs, self.policy, self.critic = envs, policy, critic
        self.T, self.N = steps_per_env, envs.num_envs
        self.gamma, self.lam = gamma, gae_lambda
        self.obs_normalizer, self.reward_scaler = obs_normalizer, reward_scaler
        self.numpy_actor = numpy_actor
        space = envs.single_action_space
        self.discrete = isinstance(space, gym.spaces.Discrete)
        if not self.discrete:
            self.low, self.high = space.low.astype(np.float32), space.high.astype(np.float32)
        obs_dim = envs.single_observation_space.shape[0]
        act_shape = () if self.discrete else space.shape
        self.raw_obs_buf = np.zeros((self.T, self.N, obs_dim), np.float32)
        self.act_buf = np.zeros((self.T, self.N, *act_shape), np.int64 if self.discrete else np.float32)
        self.rew_buf = np.zeros((self.T, self.N), np.float64)
        self.term_buf = np.zeros((self.T, self.N), bool)
        self.trunc_buf = np.zeros((self.T, self.N), bool)
        self.raw_obs, _ = envs.reset(seed=seed)
        self.ep_return = np.zeros(self.N, np.float64)
        self.ep_length = np.zeros(self.N, np.int64)

    def _actor(self) -> Callable[[np.ndarray], np.ndarray]:
        """obs ``(N, obs_dim)`` float32 → actions, for this batch (the policy is fixed during a batch)."""
        actor = NumpyActor.from_policy(self.policy) if self.numpy_actor else None
        if actor is not None:
            return actor
        policy = self.policy

        def torch_actor(obs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return policy.sample(policy.dist_params(torch.from_numpy(obs))).numpy()

        return torch_actor

    def close(self) -> None:
        """Close the envs this collector steps."""
        self.envs.close()

    def budget_note(self, total_env_steps: int, start: int) -> str | None:
        """What the run's budget means, or None when it is whole batches: the run collects whole batches of
        B = T·N env steps until it has ``total_env_steps``, so it stops at S₀ + ⌈(total − S₀)/B⌉·B, with S₀ =
        ``start`` the env steps before the first batch (the normaliser warm-up)."""
        batch = self.T * self.N
        final = start + -(-max(0, total_env_steps - start) // batch) * batch
        if final == total_env_steps:
            return None
        warm = f" after {start} warm-up steps" if start else ""
        return (f"total_env_steps={total_env_steps} is rounded up to whole batches of {batch} env steps{warm}: "
                f"the run stops at {final} env steps")

    def collect(self) -> RolloutBatch:
        """One batch of T·N single-path samples (Â from GAE, or the return-to-go for ``baseline=none``)."""
        return self._collect()

    def _collect(self, on_step: Callable[[int], None] | None = None) -> RolloutBatch:
        """:meth:`collect`; ``on_step(t)`` runs before the envs' step t (vine snapshots the envs there)."""
        T, N = self.T, self.N
        normalize = self.obs_normalizer.normalize
        raw_obs_buf, act_buf, rew_buf = self.raw_obs_buf, self.act_buf, self.rew_buf
        truncated_final = self._run(self._actor(), on_step)
        raw_obs = self.raw_obs

        dones = self.term_buf | self.trunc_buf
        episode_returns, episode_lengths = self._episode_stats(dones)
        policy = self.policy
        # the whole batch at once, with the statistics the policy acted with (frozen during the batch)
        obs_np = normalize(raw_obs_buf.reshape(T * N, -1))
        if np.shares_memory(obs_np, raw_obs_buf):  # normalisation off: the batch must not alias the buffer
            obs_np = obs_np.copy()
        obs_t = torch.from_numpy(obs_np)
        act_t = torch.from_numpy(act_buf.reshape(T * N, *act_buf.shape[2:]).copy())
        last_obs = torch.from_numpy(normalize(raw_obs))
        final_obs = torch.from_numpy(normalize(np.stack([f for _, _, f in truncated_final]))) if truncated_final else None
        with torch.no_grad():
            log_prob_old = policy.log_prob(policy.dist_params(obs_t), act_t)
            v_in = [obs_t, last_obs] + ([final_obs] if final_obs is not None else [])
            v_all = self.critic(torch.cat(v_in, 0))
        values = v_all[: T * N].reshape(T, N)
        last_values = v_all[T * N : T * N + N]

        rewards = torch.from_numpy(self.reward_scaler.scale(rew_buf, dones))
        if final_obs is not None:
            # Why: a time-limit cut is not a terminal state; its target keeps γV(s_final).
            v_final = v_all[T * N + N :]
            ts = torch.tensor([t for t, _, _ in truncated_final])
            es = torch.tensor([i for _, i, _ in truncated_final])
            rewards[ts, es] += self.gamma * v_final
        adv, ret = compute_gae(rewards, values, last_values, torch.from_numpy(dones), self.gamma, self.lam)
        self.obs_normalizer.update(raw_obs_buf.reshape(T * N, -1))
        return RolloutBatch(
            obs=obs_t,
            actions=act_t,
            log_prob_old=log_prob_old,
            advantages=(ret if self.baseline == "none" else adv).reshape(-1),
            returns=ret.reshape(-1),
            values=values.reshape(-1),
            episode_returns=episode_returns,
            episode_lengths=episode_lengths,
            raw_obs=raw_obs_buf.reshape(T * N, -1).copy(),
        )

    def warm_up(self, steps: int) -> int:
        """Run the current policy only to fit the observation and reward statistics before the first batch.

        Removes the first update's jump: without it the first batch is collected with mean 0 and
        variance 1, and the policy fitted to those inputs then acts on inputs standardised with the
        first batch's statistics. Runs ⌈steps/N⌉ vector steps; episodes in progress carry on into the
        first batch (episodes that end here are in no batch). Returns the env steps taken (they count
        toward the run's env steps).
        """
        rounds = -(-steps // self.N)
        act, normalize, step = self._actor(), self.obs_normalizer.normalize, self.envs.step
        raw_obs = np.empty((rounds, *self.raw_obs.shape), np.float32)
        rewards = np.empty((rounds, self.N), np.float64)
        dones = np.empty((rounds, self.N), bool)
        for t in range(rounds):
            raw_obs[t] = self.raw_obs
            self.raw_obs, rewards[t], term, trunc, _ = step(self._env_action(act(normalize(raw_obs[t]))))
            dones[t] = term | trunc
            self.ep_return = (self.ep_return + rewards[t]) * ~dones[t]
            self.ep_length = (self.ep_length + 1) * ~dones[t]
        self.reward_scaler.scale(rewards, dones)
        self.obs_normalizer.update(raw_obs.reshape(rounds * self.N, -1))
        return rounds * self.N

    def _env_action(self, action: np.ndarray) -> np.ndarray:
        """A fresh array per step (an env may keep a reference to its action); Box actions clipped to the box."""
        return action.copy() if self.discrete else np.clip(action, self.low, self.high)

    def _run(self, act: Callable[[np.ndarray], np.ndarray],
             on_step: Callable[[int], None] | None = None) -> list[tuple[int, int, np.ndarray]]:
        """T steps of all envs; fills the buffers, returns (t, env, s_final) of time-limit truncations."""
        normalize, step = self.obs_normalizer.normalize, self.envs.step
        raw_obs_buf, act_buf, rew_buf, term_buf, trunc_buf = (
            self.raw_obs_buf, self.act_buf, self.rew_buf, self.term_buf, self.trunc_buf)
        truncated_final: list[tuple[int, int, np.ndarray]] = []
        raw_obs = self.raw_obs
        for t in range(self.T):
            raw_obs_buf[t] = raw_obs
            if on_step is not None:
                on_step(t)
            act_buf[t] = act(normalize(raw_obs_buf[t]))
            raw_obs, rew_buf[t], term_buf[t], trunc_buf[t], info = step(self._env_action(act_buf[t]))
            if info and trunc_buf[t].any():
                for i in np.flatnonzero(trunc_buf[t] & ~term_buf[t]):
                    truncated_final.append((t, i, info["final_obs"][i]))
        self.raw_obs = raw_obs
        return truncated_final

    def reset(self, seed: int) -> None:
        """Reseed and reset every env, dropping the episodes in progress (a resume without env snapshots)."""
        self.raw_obs, _ = self.envs.reset(seed=seed)
        self.ep_return[:] = 0.0
        self.ep_length[:] = 0

    def state_dict(self) -> dict[str, Any]:
        """What decides the next batch besides the policy, critic, normalisers and torch's RNG: every env's
        snapshot mid-episode (:func:`~trpo_lab.envs.snapshot_vector_env`), the observations the next
        actions act on, and the returns and lengths of the episodes in progress. Raises
        :class:`~trpo_lab.snapshots.SnapshotError` if an env cannot be snapshotted."""
        return {
            "envs": snapshot_vector_env(self.envs),
            "raw_obs": torch.from_numpy(np.array(self.raw_obs)),
            "ep_return": torch.from_numpy(self.ep_return.copy()),
            "ep_length": torch.from_numpy(self.ep_length.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue exactly where :meth:`state_dict` was taken: the next batch is the one the run would have
        collected (bitwise, on the same machine and software stack)."""
        self.raw_obs = state["raw_obs"].numpy().copy()
        restore_vector_env(self.envs, state["envs"], self.raw_obs)
        self.ep_return = state["ep_return"].numpy().copy()
        self.ep_length = state["ep_length"].numpy().copy()

    def _episode_stats(self, dones: np.ndarray) -> tuple[list[float], list[int]]:
        """Returns and lengths of the episodes that ended in this batch, in time order.

        Rewards are summed segment by segment between the steps where some episode ended,
        rather than step by step.
        """
        returns: list[float] = []
        lengths: list[int] = []
        start = 0
        for t in np.flatnonzero(dones.any(1)):
            self.ep_return += self.rew_buf[start : t + 1].sum(0)
            self.ep_length += t + 1 - start
            idx = np.flatnonzero(dones[t])
            returns += self.ep_return[idx].tolist()
            lengths += self.ep_length[idx].tolist()
            self.ep_return[idx] = 0.0
            self.ep_length[idx] = 0
            start = t + 1
        self.ep_return += self.rew_buf[start:].sum(0)
        self.ep_length += self.T - start
        return returns, lengths
