"""Policies and the value function.

A policy maps a batch of observations to the *parameters* of its action distribution
(``dist_params``) and knows the analytic formulas on those parameters: log-probability,
entropy and KL divergence. The natural-gradient machinery only talks to this small
interface (:class:`Policy`), so the Gaussian and the Categorical policy share every line of the
update. Each distribution's remaining closed forms live on its class too: the Fisher block M of
F = JᵀMJ (:mod:`trpo_lab.natural.fisher`) and the numpy sampler of the per-step actor
(:mod:`trpo_lab.rollout`); the network itself is :func:`trpo_lab.nn.mlp`.

What a fast path needs beyond :class:`Policy` is a protocol too (:class:`FastPathPolicy`,
:class:`FastPathCritic`), checked by its methods, never by class: a policy or critic without it takes the
reference paths (``torch.func`` for the Fisher, the torch module for acting, autograd for the critic).

Distribution parameters are tuples of tensors:

* :class:`GaussianPolicy`: ``(mean, log_std)`` with ``mean`` of shape ``(B, act_dim)`` and
  ``log_std`` of shape ``(act_dim,)`` (state-independent, broadcast over the batch).
* :class:`CategoricalPolicy`: ``(logits,)`` with shape ``(B, n_actions)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence, runtime_checkable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from trpo_lab.nn import MLPLayers, mlp, mlp_layers

DistParams = tuple[torch.Tensor, ...]


class Policy(Protocol):
    """What the trust-region update needs from a policy (an ``nn.Module`` with these methods)."""

    discrete: bool

    def parameters(self) -> Iterator[nn.Parameter]: ...

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]: ...

    def dist_params(self, obs: torch.Tensor) -> DistParams: ...

    def log_prob(self, params: DistParams, actions: torch.Tensor) -> torch.Tensor: ...

    def entropy(self, params: DistParams) -> torch.Tensor: ...

    def kl(self, p: DistParams, q: DistParams) -> torch.Tensor: ...

    def sample(self, params: DistParams) -> torch.Tensor: ...

    def mode(self, params: DistParams) -> torch.Tensor: ...

    def std_mean(self) -> float: ...


FisherBlock = Callable[[DistParams], DistParams]
NumpySampler = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class MLPHead:
    """d(s) = (net(s), *state_independent) with ``net`` a plain MLP (its ``layers``, from
    :func:`~trpo_lab.nn.mlp_layers`) and ``state_independent`` parameters that are distribution parameters
    themselves (the Gaussian's state-independent log σ), so J of the latter is the identity."""

    layers: MLPLayers
    state_independent: tuple[nn.Parameter, ...]


@runtime_checkable
class FastPathPolicy(Protocol):
    r"""What the fast paths need from a policy besides :class:`Policy` (methods only, so a plain
    ``isinstance`` decides on any Python ≥ 3.10):

    * :meth:`mlp_head`: its MLP and state-independent parameters (:class:`MLPHead`), or None when its
      network is no plain MLP: then J·v and Jᵀ·u go through ``torch.func`` and acting through torch;
    * :meth:`fisher_block`: u ↦ M·u, M = ∇²_d KL̄(π_old ‖ π_d) at d_old, the middle of F = JᵀMJ;
    * :meth:`numpy_sampler`: the net's output ↦ a sampled action, in numpy, noise from ``rng``
      (the per-step actor and the paired evaluation's common random numbers).
    """

    def mlp_head(self) -> MLPHead | None: ...

    def fisher_block(self, old: DistParams) -> FisherBlock: ...

    def numpy_sampler(self, rng: np.random.Generator) -> NumpySampler: ...


@runtime_checkable
class FastPathCritic(Protocol):
    """What the fused critic fit needs: :meth:`value_mlp`, the layers of a plain MLP ``f`` with
    V(s) = f(s)[..., 0] and no other parameters, or None (then the fit goes through autograd)."""

    def value_mlp(self) -> MLPLayers | None: ...


def policy_mlp(policy: Policy) -> MLPHead | None:
    """``policy``'s :class:`MLPHead` if it is a :class:`FastPathPolicy` with one; None: the reference paths."""
    return policy.mlp_head() if isinstance(policy, FastPathPolicy) else None


def critic_mlp(critic: nn.Module) -> MLPLayers | None:
    """``critic``'s MLP layers if it is a :class:`FastPathCritic` with one; None: the autograd fit."""
    return critic.value_mlp() if isinstance(critic, FastPathCritic) else None


def _only_params_of(module: nn.Module, layers: MLPLayers, extra: int = 0) -> bool:
    """True if ``module``'s parameters are the layers' weights and biases and ``extra`` more."""
    return len(list(module.parameters())) == 2 * len(layers) + extra


class MLPPolicy(nn.Module):
    r"""The base of the two policies: d(s) = (net(s), *state_independent), an MLP's output followed by
    parameters that are distribution parameters themselves (the Gaussian's log σ).

    With each subclass's closed forms (:meth:`fisher_block`, :meth:`numpy_sampler`) it is a
    :class:`FastPathPolicy`; :meth:`mlp_head` returns None once ``net`` is replaced by something that is
    no plain MLP, or parameters are added besides it.
    """

    net: nn.Module
    state_independent: tuple[nn.Parameter, ...] = ()

    def forward(self, obs: torch.Tensor) -> DistParams:
        return (self.net(obs), *self.state_independent)

    dist_params = forward

    def mlp_head(self) -> MLPHead | None:
        layers = mlp_layers(self.net)
        if layers is None or not _only_params_of(self, layers, len(self.state_independent)):
            return None
        return MLPHead(layers, tuple(self.state_independent))


class GaussianPolicy(MLPPolicy):
    r"""Diagonal Gaussian policy π_θ(a|s) = N(μ_θ(s), diag(σ²)), σ = exp(log_std).

    ``log_std`` is a free parameter vector, independent of the state (as in the TRPO paper and
    Spinning Up). Actions are sampled unbounded; the environment side clips them to the box.

    Args:
        obs_dim: observation size.
        act_dim: action size.
        hidden_sizes: widths of the hidden layers of the mean network.
        activation: ``tanh`` (default), ``relu`` or ``elu``.
        log_std_init: initial value of every entry of ``log_std``.
    """

    discrete = False

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.mean_net = mlp(obs_dim, hidden_sizes, act_dim, activation, out_gain=0.01)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(log_std_init)))

    @property
    def net(self) -> nn.Module:
        return self.mean_net

    @property
    def state_independent(self) -> tuple[nn.Parameter, ...]:
        return (self.log_std,)

    def log_prob(self, params: DistParams, actions: torch.Tensor) -> torch.Tensor:
        """log N(a; μ, σ²) summed over action dimensions, shape ``(B,)``."""
        mean, log_std = params
        z = (actions - mean) * torch.exp(-log_std)
        return -0.5 * (z * z).sum(-1) - log_std.sum(-1) - 0.5 * mean.shape[-1] * math.log(2 * math.pi)

    def entropy(self, params: DistParams) -> torch.Tensor:
        """H = Σ_j (log σ_j + ½ log 2πe), shape ``(B,)`` (the same for every state)."""
        mean, log_std = params
        h = (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)
        return h.expand(mean.shape[:-1])

    def kl(self, p: DistParams, q: DistParams) -> torch.Tensor:
        r"""KL(p‖q) = Σ_j [log σq/σp + (σp² + (μp − μq)²) / (2σq²) − ½], shape ``(B,)``."""
        mu_p, ls_p = p
        mu_q, ls_q = q
        var_ratio = torch.exp(2 * (ls_p - ls_q))
        diff = (mu_p - mu_q) * torch.exp(-ls_q)
        return (ls_q - ls_p + 0.5 * (var_ratio + diff * diff) - 0.5).sum(-1)

    def fisher_block(self, old: DistParams) -> FisherBlock:
        r"""M·(u_μ, u_σ) = (u_μ / (B σ²), 2 u_σ) for d = (μ (B×k), log σ (k, shared by all B states)).

        Per state and dimension ∂²KL/∂μ² = σ⁻² and ∂²KL/∂(log σ)² = 2, with no cross term at d_old;
        the 1/B of the batch mean cancels against the B states sharing log σ.
        """
        mean, log_std = old
        inv_var_over_b = torch.exp(-2.0 * log_std) / mean.shape[0]
        return lambda u: (u[0] * inv_var_over_b, 2.0 * u[1])

    def sample(self, params: DistParams) -> torch.Tensor:
        mean, log_std = params
        return mean + torch.exp(log_std) * torch.randn_like(mean)

    def numpy_sampler(self, rng: np.random.Generator) -> NumpySampler:
        """μ ↦ μ + σ ⊙ ε, ε ~ N(0, I) from ``rng``, with σ frozen now (float32)."""
        std = self.log_std.detach().exp().numpy().astype(np.float32)
        return lambda mean: mean + std * rng.standard_normal(mean.shape, dtype=np.float32)

    def mode(self, params: DistParams) -> torch.Tensor:
        return params[0]

    def std_mean(self) -> float:
        return float(self.log_std.detach().exp().mean())


class CategoricalPolicy(MLPPolicy):
    r"""Categorical policy π_θ(a|s) = softmax(logits_θ(s))_a for discrete action spaces.

    Args:
        obs_dim: observation size.
        n_actions: number of discrete actions.
        hidden_sizes: widths of the hidden layers.
        activation: ``tanh`` (default), ``relu`` or ``elu``.
        log_std_init: ignored (accepted so that one ``policy`` config serves both spaces).
    """

    discrete = True

    def __init__(
        self,
        obs_dim: int,
        n_actions: int,
        hidden_sizes: Sequence[int] = (64, 64),
        activation: str = "tanh",
        log_std_init: float = 0.0,
    ) -> None:
        super().__init__()
        self.logits_net = mlp(obs_dim, hidden_sizes, n_actions, activation, out_gain=0.01)

    @property
    def net(self) -> nn.Module:
        return self.logits_net

    def log_prob(self, params: DistParams, actions: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(params[0], -1)
        return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, params: DistParams) -> torch.Tensor:
        """H = −Σ_a p_a log p_a, shape ``(B,)``."""
        logp = torch.log_softmax(params[0], -1)
        return -(logp.exp() * logp).sum(-1)

    def kl(self, p: DistParams, q: DistParams) -> torch.Tensor:
        """KL(p‖q) = Σ_a p_a (log p_a − log q_a), shape ``(B,)``."""
        logp = torch.log_softmax(p[0], -1)
        logq = torch.log_softmax(q[0], -1)
        return (logp.exp() * (logp - logq)).sum(-1)

    def fisher_block(self, old: DistParams) -> FisherBlock:
        r"""M·u = (p ⊙ u − p (pᵀu)) / B per state, i.e. (diag(p) − ppᵀ)/B, p = softmax(z_old), d = logits z (B×n)."""
        (logits,) = old
        p = torch.softmax(logits, -1)
        b = logits.shape[0]

        def block(u: DistParams) -> DistParams:
            pu = p * u[0]
            return ((pu - p * pu.sum(-1, keepdim=True)) / b,)

        return block

    def sample(self, params: DistParams) -> torch.Tensor:
        return torch.multinomial(torch.softmax(params[0], -1), 1).squeeze(-1)

    def numpy_sampler(self, rng: np.random.Generator) -> NumpySampler:
        """logits ↦ a = #{k : Σ_{j≤k} p_j ≤ u}, u ~ U[0, 1), p = softmax(logits) (inverse-CDF sampling)."""

        def sample(logits: np.ndarray) -> np.ndarray:
            p = np.exp(logits - logits.max(-1, keepdims=True))
            cdf = np.cumsum(p, -1)
            u = rng.random((logits.shape[0], 1)) * cdf[:, -1:]  # u·Σp: no separate normalisation
            return np.minimum((cdf <= u).sum(-1), logits.shape[-1] - 1).astype(np.int64)

        return sample

    def mode(self, params: DistParams) -> torch.Tensor:
        return params[0].argmax(-1)

    def std_mean(self) -> float:
        return 0.0  # no standard deviation: logged as 0 so every run has the same keys


class ValueFunction(nn.Module):
    """The critic V_φ(s): an MLP with a scalar output (a :class:`FastPathCritic`)."""

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh") -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, 1, activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)

    def value_mlp(self) -> MLPLayers | None:
        layers = mlp_layers(self.net)
        return layers if layers is not None and _only_params_of(self, layers) else None


SUPPORTED_ACTION_SPACES = "gymnasium.spaces.Box (1-D, continuous) and gymnasium.spaces.Discrete"


def make_policy(
    observation_space: gym.Space,
    action_space: gym.Space,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
    log_std_init: float = 0.0,
) -> GaussianPolicy | CategoricalPolicy:
    """Build the policy that fits ``action_space`` (Box → Gaussian, Discrete → Categorical)."""
    if not isinstance(observation_space, gym.spaces.Box) or len(observation_space.shape) != 1:
        raise ValueError(
            f"observation space {observation_space} is not supported: trpo-lab's MLP policies take a 1-D Box"
        )
    obs_dim = observation_space.shape[0]
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalPolicy(obs_dim, int(action_space.n), hidden_sizes, activation)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianPolicy(obs_dim, action_space.shape[0], hidden_sizes, activation, log_std_init)
    raise ValueError(f"action space {action_space} is not supported; supported: {SUPPORTED_ACTION_SPACES}")
