"""Policies and the value function.

A policy maps a batch of observations to the *parameters* of its action distribution
(``dist_params``) and knows the analytic formulas on those parameters: log-probability,
entropy and KL divergence. The natural-gradient machinery only talks to this small
interface, so the Gaussian and the Categorical policy share every line of the update.

Distribution parameters are tuples of tensors:

* :class:`GaussianPolicy`: ``(mean, log_std)`` with ``mean`` of shape ``(B, act_dim)`` and
  ``log_std`` of shape ``(act_dim,)`` (state-independent, broadcast over the batch).
* :class:`CategoricalPolicy`: ``(logits,)`` with shape ``(B, n_actions)``.
"""
from __future__ import annotations

import math
from typing import Protocol, Sequence

import gymnasium as gym
import torch
from torch import nn

DistParams = tuple[torch.Tensor, ...]

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def mlp(
    in_dim: int,
    hidden_sizes: Sequence[int],
    out_dim: int,
    activation: str = "tanh",
    out_gain: float = 1.0,
) -> nn.Sequential:
    """A fully connected network with orthogonal initialisation.

    Hidden layers use gain √2 and the output layer ``out_gain`` (0.01 for policy heads, so the
    initial policy is close to uniform / zero-mean, as in most TRPO/PPO implementations).
    """
    if activation not in _ACTIVATIONS:
        raise ValueError(f"policy activation={activation!r} is not one of {sorted(_ACTIVATIONS)}")
    layers: list[nn.Module] = []
    sizes = [in_dim, *hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:]):
        lin = nn.Linear(a, b)
        nn.init.orthogonal_(lin.weight, math.sqrt(2.0))
        nn.init.zeros_(lin.bias)
        layers += [lin, _ACTIVATIONS[activation]()]
    out = nn.Linear(sizes[-1], out_dim)
    nn.init.orthogonal_(out.weight, out_gain)
    nn.init.zeros_(out.bias)
    layers.append(out)
    return nn.Sequential(*layers)


class Policy(Protocol):
    """What the trust-region update needs from a policy."""

    discrete: bool

    def dist_params(self, obs: torch.Tensor) -> DistParams: ...

    def log_prob(self, params: DistParams, actions: torch.Tensor) -> torch.Tensor: ...

    def entropy(self, params: DistParams) -> torch.Tensor: ...

    def kl(self, p: DistParams, q: DistParams) -> torch.Tensor: ...

    def sample(self, params: DistParams) -> torch.Tensor: ...

    def mode(self, params: DistParams) -> torch.Tensor: ...


class GaussianPolicy(nn.Module):
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

    def forward(self, obs: torch.Tensor) -> DistParams:
        return self.mean_net(obs), self.log_std

    dist_params = forward

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

    def sample(self, params: DistParams) -> torch.Tensor:
        mean, log_std = params
        return mean + torch.exp(log_std) * torch.randn_like(mean)

    def mode(self, params: DistParams) -> torch.Tensor:
        return params[0]

    def std_mean(self) -> float:
        return float(self.log_std.detach().exp().mean())


class CategoricalPolicy(nn.Module):
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

    def forward(self, obs: torch.Tensor) -> DistParams:
        return (self.logits_net(obs),)

    dist_params = forward

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

    def sample(self, params: DistParams) -> torch.Tensor:
        return torch.multinomial(torch.softmax(params[0], -1), 1).squeeze(-1)

    def mode(self, params: DistParams) -> torch.Tensor:
        return params[0].argmax(-1)

    def std_mean(self) -> float:
        return 0.0  # no standard deviation: logged as 0 so every run has the same keys


class ValueFunction(nn.Module):
    """The critic V_φ(s): an MLP with a scalar output."""

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int] = (64, 64), activation: str = "tanh") -> None:
        super().__init__()
        self.net = mlp(obs_dim, hidden_sizes, 1, activation, out_gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


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
