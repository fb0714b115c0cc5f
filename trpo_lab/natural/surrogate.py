r"""The surrogate objective the update ascends: one swappable piece of :class:`~trpo_lab.natural.update.NaturalGradientUpdate`.

A surrogate is L(θ) on a fixed batch of samples from π_old, with

* ``obs``: the states over which the KL, the Fisher and the line search are measured;
* ``actions``: the sampled actions (the empirical Fisher's scores ∇log π_θ(a|s));
* ``value(policy, dist)``: L at the θ whose distribution parameters on ``obs`` are ``dist`` (differentiable);
  the update takes g = ∇_θ L(θ_old) from it by autograd;
* ``scale``: ε = max|A| in raw (unstandardised) units and ``bound_gain``: mean[(ratio − 1)·A] in those units,
  for the Theorem 1 terms (:func:`trpo_lab.metrics.bound_terms`).

Single path (today's default, TRPO paper §5.1):

    L(θ) = mean_i [π_θ(a_i|s_i) / π_old(a_i|s_i) · Â_i]

Vine (§5.2, Eqs. 15 and 16) is :class:`trpo_lab.vine.VineSurrogate`.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from trpo_lab.policies import DistParams, Policy


@runtime_checkable
class Surrogate(Protocol):
    """What the update needs of a surrogate (see the module docstring)."""

    obs: torch.Tensor
    actions: torch.Tensor

    def value(self, policy: Policy, dist: DistParams) -> torch.Tensor: ...

    @property
    def scale(self) -> float: ...

    def bound_gain(self, policy: Policy, dist: DistParams) -> float: ...

    def is_finite(self) -> bool: ...


class SinglePathSurrogate:
    r"""L(θ) = mean_i [π_θ(a_i|s_i) / π_old(a_i|s_i) · Â_i] over one batch of single-path samples.

    Args:
        obs, actions, log_prob_old: the batch (log π_old(a_i|s_i) per sample).
        advantages: the raw Â_i (GAE, or the return-to-go for ``sampling.baseline=none``).
        normalize: standardise Â over the batch, Â ← (Â − mean)/(std + 1e-8), before forming L.
    """

    def __init__(self, obs: torch.Tensor, actions: torch.Tensor, log_prob_old: torch.Tensor,
                 advantages: torch.Tensor, normalize: bool = True) -> None:
        self.obs, self.actions, self.log_prob_old = obs, actions, log_prob_old
        self.raw = advantages
        self.adv = (advantages - advantages.mean()) / (advantages.std() + 1e-8) if normalize else advantages

    def value(self, policy: Policy, dist: DistParams) -> torch.Tensor:
        return (torch.exp(policy.log_prob(dist, self.actions) - self.log_prob_old) * self.adv).mean()

    @property
    def scale(self) -> float:
        return float(self.raw.abs().max())

    def bound_gain(self, policy: Policy, dist: DistParams) -> float:
        ratio = torch.exp(policy.log_prob(dist, self.actions) - self.log_prob_old)
        return float(((ratio - 1.0) * self.raw).mean())

    def is_finite(self) -> bool:
        return bool(torch.isfinite(self.adv).all())
