r"""Vine sampling (TRPO paper §5.2, Appendix on vine): a trunk, a rollout set, K branches per state.

* **Trunk:** π_old rolls the vector env for the batch (:class:`~trpo_lab.rollout.RolloutCollector`'s own
  loop: the trunk is a single-path batch, whose GAE targets fit the critic). Before it runs, N of its
  T·E (step, env) slots are drawn uniformly without replacement; while it runs, the sub-env of each chosen
  slot is snapshotted (:meth:`~trpo_lab.envs.InProcessVectorEnv.snapshot_env`) just before its step:
  the **rollout set** s_1 … s_N.
* **Branches:** from each s_n, actions a_{n,k} ~ π_old(·|s_n), k = 1 … K (continuous), or every action
  (discrete, K = |A|). The snapshot is restored into sub-envs 0 … K−1 of a separate branch vector env; each
  takes its a_{n,k}, then T_b − 1 more steps under π_old. **Common random numbers:** after the first action
  all K branches of a state use one noise stream (one ε_t ~ N(0, I) or one u_t ~ U[0, 1) per step, shared),
  and the same env noise (each restores the same ``np_random``).
* **Q̂(s_n, a_{n,k}) = Σ_{t<T_b} γ^t r_t** with r the (scaled) rewards the critic sees. A branch that
  terminates ends there; one cut by the time limit adds γ^{t+1} V(s_final); ``bootstrap`` adds γ^{T_b} V(s_{T_b})
  to a branch still running after T_b steps (off by default, as in the paper). Every simulator step,
  trunk and branch, counts in ``env_steps``.

Surrogate per state, mean over the rollout set (:class:`VineSurrogate`), w_k = π_θ(a_k|s_n)/π_old(a_k|s_n):

    discrete   (Eq. 15):  L_n(θ) = Σ_k π_θ(a_k|s_n) Q̂_k
    continuous (Eq. 16):  L_n(θ) = Σ_k w_k Q̂_k / Σ_k w_k      (self-normalised; at θ_old ∇L_n = 1/K Σ_k ∇log π·(Q̂_k − Q̄_n))

**Baseline.** ``baseline=state_mean`` replaces Q̂_k by Q̂_k − Q̄_n, Q̄_n = mean_k Q̂_{n,k}. For both equations
this changes L_n by a constant and its gradient not at all: Σ_k w_k (Q̂_k − b) / Σ_k w_k = L_n − b (the
self-normalised weights sum to 1), and Σ_k π_θ(a_k|s) (Q̂_k − b) = L_n − b·Σ_{a∈A} π_θ(a|s) = L_n − b (every
action is enumerated, so the weights sum to 1 for every θ). It only sets L(θ_old) = 0 and makes the raw
Q̂ spread the scale of ``normalize`` (Q̂ divided by its std over the whole set, a positive constant: the
direction is unchanged, the scale comparable with single path's standardised Â for fixed NPG steps).
With a *sampled* subset of discrete actions Σ_k π_θ(a_k|s) would depend on θ and centring would bias
the gradient; this module always enumerates all actions.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from trpo_lab.envs import InProcessVectorEnv
from trpo_lab.nn import NumpyMLP
from trpo_lab.policies import DistParams, GaussianPolicy, Policy, policy_mlp
from trpo_lab.rollout import RolloutBatch, RolloutCollector

#: the per-update keys every sampler logs (null for single path)
SAMPLING_KEYS = ("vine/states", "vine/branch_steps", "vine/q_spread", "vine/crn_corr")
NULL_SAMPLING_ROW: dict[str, Any] = {k: None for k in SAMPLING_KEYS}


class VineSurrogate:
    r"""Eq. 15 (``discrete``) or Eq. 16 over N states × K branches (see the module docstring).

    Args:
        obs: ``(N·K, obs_dim)`` each rollout-set state repeated K times (state-major), normalised as π_old saw it.
        actions: ``(N·K, …)`` the first actions a_{n,k}.
        log_prob_old: ``(N·K,)`` log π_old(a_{n,k}|s_n).
        q: ``(N, K)`` Q̂(s_n, a_{n,k}) in reward units (centred per state if the baseline says so).
        discrete: Eq. 15 (every action enumerated) instead of Eq. 16.
        normalize: divide Q̂ by its std over all N·K branches (+1e-8) before forming L.
    """

    def __init__(self, obs: torch.Tensor, actions: torch.Tensor, log_prob_old: torch.Tensor, q: torch.Tensor,
                 discrete: bool, normalize: bool = True) -> None:
        self.obs, self.actions, self.log_prob_old = obs, actions, log_prob_old
        self.raw, self.discrete = q, discrete
        self.q = q / (q.std() + 1e-8) if normalize and q.numel() > 1 else q

    def _per_state(self, policy: Policy, dist: DistParams, q: torch.Tensor) -> torch.Tensor:
        log_p = policy.log_prob(dist, self.actions).reshape(q.shape)
        if self.discrete:
            return (torch.exp(log_p) * q).sum(1)
        w = torch.exp(log_p - self.log_prob_old.reshape(q.shape))
        return (w * q).sum(1) / w.sum(1)

    def value(self, policy: Policy, dist: DistParams) -> torch.Tensor:
        return self._per_state(policy, dist, self.q).mean()

    @property
    def scale(self) -> float:
        return float(self.raw.abs().max())

    def bound_gain(self, policy: Policy, dist: DistParams) -> float:
        """L_raw(θ) − L_raw(θ_old) in raw Q̂ units (at θ_old w ≡ 1 and π_θ = π_old)."""
        old = (torch.exp(self.log_prob_old.reshape(self.raw.shape)) * self.raw).sum(1) if self.discrete \
            else self.raw.mean(1)
        return float((self._per_state(policy, dist, self.raw) - old).mean())

    def is_finite(self) -> bool:
        return bool(torch.isfinite(self.q).all())


@dataclass
class BranchResult:
    """The K branches of one state: Q̂ per branch, simulator steps taken, and (for replay tests) the actions."""

    q: np.ndarray  # (K,) discounted rewards (+ bootstraps added later by the caller)
    steps: int
    bootstrap_obs: list[tuple[int, float, np.ndarray]]  # (branch k, γ^t, raw obs) to add γ^t V(obs) for
    actions: list[list[np.ndarray]]  # actions[k]: the actions branch k took, in order


class VineCollector(RolloutCollector):
    r"""A :class:`RolloutCollector` whose batches carry a :class:`VineSurrogate` (see the module docstring).

    Args (besides the collector's):
        branch_envs: an :class:`~trpo_lab.envs.InProcessVectorEnv` of K sub-envs (continuous) or |A| (discrete).
        states: N, the rollout-set size (≤ the trunk's T·E samples).
        actions_per_state: K for continuous actions (ignored for discrete: every action).
        branch_length: T_b ≥ 1 simulator steps per branch, the first action's included.
        bootstrap: add γ^{T_b} V(s_{T_b}) to a branch still running after T_b steps.
        baseline: ``state_mean`` (centre Q̂ per state) or ``none``.
        normalize: divide Q̂ by its std over the set (``algo.normalize_advantages``).
    """

    def __init__(self, *args: Any, branch_envs: InProcessVectorEnv, states: int, actions_per_state: int,
                 branch_length: int, bootstrap: bool = False, baseline: str = "state_mean",
                 normalize: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.envs, InProcessVectorEnv):
            raise ValueError("sampling=vine needs rollout.vector_env=inprocess (it snapshots the trunk's sub-envs)")
        if not (self.discrete or isinstance(self.policy, GaussianPolicy)):
            raise ValueError("sampling=vine samples continuous actions from a GaussianPolicy (its σ is the shared noise's scale)")
        self.branch_envs = branch_envs
        self.K = int(self.envs.single_action_space.n) if self.discrete else actions_per_state
        if branch_envs.num_envs != self.K:
            raise ValueError(f"the branch env has {branch_envs.num_envs} sub-envs, vine needs {self.K}")
        if states > self.T * self.N:
            raise ValueError(f"sampling.states={states} exceeds the trunk's {self.T * self.N} samples")
        self.states, self.branch_length = states, branch_length
        self.bootstrap, self.baseline, self.normalize = bootstrap, baseline, normalize

    def budget_note(self, total_env_steps: int, start: int) -> str | None:
        """The branches' steps vary from batch to batch, so the run stops after the first update that reaches
        ``total_env_steps``, with no whole-batch rounding to announce."""
        return (f"total_env_steps={total_env_steps} counts vine's trunk ({self.T * self.N} env steps per batch) and "
                "branch steps alike: the run stops after the first update that reaches it")

    def close(self) -> None:
        super().close()
        self.branch_envs.close()

    # -- the policy in numpy, with common random numbers -------------------------------------------------
    def _head(self) -> Callable[[np.ndarray], np.ndarray]:
        """normalised obs ↦ the first distribution parameter (Gaussian mean or logits), numpy."""
        head = policy_mlp(self.policy)
        if head is not None:
            return NumpyMLP(head.layers)
        policy = self.policy

        def torch_head(obs: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return policy.dist_params(torch.from_numpy(obs))[0].numpy()

        return torch_head

    def _sample(self, out: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """Actions from head outputs ``out`` and noise rows (ε ~ N(0, I) or u ~ U[0, 1), one row per state)."""
        if not self.discrete:
            return out + self._std * noise
        p = np.exp(out - out.max(-1, keepdims=True))
        cdf = np.cumsum(p, -1)
        return np.minimum((cdf <= noise[:, :1] * cdf[:, -1:]).sum(-1), out.shape[-1] - 1).astype(np.int64)

    def _noise(self, rng: np.random.Generator, rows: int) -> np.ndarray:
        shape = (1,) if self.discrete else self.envs.single_action_space.shape
        return rng.random((rows, *shape)) if self.discrete else rng.standard_normal((rows, *shape), dtype=np.float32)

    def branches(self, snap: dict[str, Any], first_actions: np.ndarray, rng: np.random.Generator,
                 normalize: Callable[[np.ndarray], np.ndarray], head: Callable[[np.ndarray], np.ndarray],
                 reward_scale: float) -> BranchResult:
        """Restore ``snap`` into the K branch sub-envs, take ``first_actions[k]`` then T_b − 1 steps of π_old
        on one shared noise stream from ``rng``; sum γ^t·reward_scale·r_t per branch."""
        K, benv = len(first_actions), self.branch_envs
        obs = np.stack([benv.restore_env(k, snap) for k in range(K)]).astype(np.float32)
        q, alive, disc = np.zeros(K), np.ones(K, bool), 1.0
        acts: list[list[np.ndarray]] = [[] for _ in range(K)]
        boot: list[tuple[int, float, np.ndarray]] = []
        steps, action = 0, first_actions
        for t in range(self.branch_length):
            if t > 0:
                shared = self._noise(rng, 1)  # one draw for every branch: common random numbers
                action = self._sample(head(normalize(obs)), np.repeat(shared, K, 0))
            for k in np.flatnonzero(alive):
                a = self._env_action(action[k])
                acts[k].append(a)
                obs[k], r, term, trunc, _ = benv.envs[k].step(a)
                steps += 1
                q[k] += disc * reward_scale * r
                if term or trunc:
                    alive[k] = False
                    if trunc and not term:
                        boot.append((k, disc * self.gamma, obs[k].copy()))
            disc *= self.gamma
            if not alive.any():
                break
        if self.bootstrap:
            boot += [(k, disc, obs[k].copy()) for k in np.flatnonzero(alive)]
        return BranchResult(q, steps, boot, acts)

    # -- one batch -----------------------------------------------------------------------------------
    def collect(self) -> RolloutBatch:
        frozen = copy.deepcopy(self.obs_normalizer)  # the statistics the trunk (and so the branches) act with
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        slots = np.sort(rng.choice(self.T * self.N, self.states, replace=False))
        by_t: dict[int, list[int]] = {}
        for s in slots:
            by_t.setdefault(int(s) // self.N, []).append(int(s) % self.N)
        snaps: list[tuple[int, dict[str, Any]]] = []

        def on_step(t: int) -> None:
            for i in by_t.get(t, ()):
                snaps.append((t * self.N + i, self.envs.snapshot_env(i)))

        batch = self._collect(on_step)
        if isinstance(self.policy, GaussianPolicy):
            self._std = self.policy.log_std.detach().exp().numpy().astype(np.float32)
        head, normalize = self._head(), frozen.normalize
        rs = self.reward_scaler
        reward_scale = 1.0 / math.sqrt(float(rs.rms.var) + rs.eps) if rs.enabled else 1.0
        idx = torch.tensor([i for i, _ in snaps])
        states = batch.obs[idx]
        q = np.zeros((len(snaps), self.K))
        first = np.zeros((len(snaps), self.K, *self.act_buf.shape[2:]), self.act_buf.dtype)
        boot_rows: list[tuple[int, int, float, np.ndarray]] = []
        branch_steps = 0
        for n, (_, snap) in enumerate(snaps):
            s = states[n].numpy()[None]
            first[n] = np.arange(self.K) if self.discrete else self._sample(
                np.repeat(head(s), self.K, 0), self._noise(rng, self.K))
            res = self.branches(snap, first[n], rng, normalize, head, reward_scale)
            q[n], branch_steps = res.q, branch_steps + res.steps
            boot_rows += [(n, k, d, o) for k, d, o in res.bootstrap_obs]
        if boot_rows:
            with torch.no_grad():
                v = self.critic(torch.from_numpy(normalize(np.stack([o for *_, o in boot_rows]))))
            for (n, k, d, _), vi in zip(boot_rows, v.tolist()):
                q[n, k] += d * vi
        batch.surrogate, batch.branch_steps = self._surrogate(states, first, q), branch_steps
        batch.sampling_stats = {"vine/states": len(snaps), "vine/branch_steps": branch_steps,
                                "vine/q_spread": q_spread(q), "vine/crn_corr": crn_correlation(q)}
        return batch

    def _surrogate(self, states: torch.Tensor, first: np.ndarray, q: np.ndarray) -> VineSurrogate:
        n, k = q.shape
        obs = states.repeat_interleave(k, 0)
        actions = torch.from_numpy(first.reshape(n * k, *first.shape[2:]).copy())
        with torch.no_grad():
            log_prob_old = self.policy.log_prob(self.policy.dist_params(obs), actions)
        qt = torch.from_numpy(q).to(torch.float32)
        if self.baseline == "state_mean":
            qt = qt - qt.mean(1, keepdim=True)
        return VineSurrogate(obs, actions, log_prob_old, qt, self.discrete, self.normalize)


def q_spread(q: np.ndarray) -> float:
    """Mean over states of the std (ddof 1) of Q̂ over a state's branches."""
    return float(q.std(1, ddof=1).mean()) if q.shape[1] > 1 and q.shape[0] else math.nan


def crn_correlation(q: np.ndarray) -> float:
    """Pearson correlation of (Q̂_{n,k}, Q̂_{n,k'}) pooled over states n and branch pairs k ≠ k' (NaN if constant).

    Pooled over states, it includes the spread of Q̄_n between states; the within-state effect of common
    random numbers is Var(Q̂_k − Q̂_k') = 2σ²(1 − ρ), which this ρ bounds from the pooled side."""
    n, k = q.shape
    if n == 0 or k < 2:
        return math.nan
    i, j = np.where(~np.eye(k, dtype=bool))
    x, y = q[:, i].ravel(), q[:, j].ravel()
    if x.std() == 0 or y.std() == 0:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])
