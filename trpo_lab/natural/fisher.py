r"""Fisher-vector products F·v for the policy at θ_old.

Each estimator's ``build(policy, obs, actions)`` is called once per update, at θ = θ_old, and
returns a function v ↦ F·v over the flat parameter vector (the order of ``policy.parameters()``).
Building does the shared work once (the graph of ∇KL, or the linearisation of log π), so each of
CG's products costs one extra backward pass.

Subsampling (``subsample`` < 1) draws one fixed random subset of the batch per ``build``, i.e.
per update: every product within a CG solve sees the same states, so CG solves one fixed
linear system (the TRPO paper used 10%).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.func import functional_call, jvp, vjp

from trpo_lab.policies import Policy

MatVec = Callable[[torch.Tensor], torch.Tensor]


def flat_params(policy: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in policy.parameters()])


def flat_grad(grads: tuple[torch.Tensor, ...]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads])


def _subsample(n: int, fraction: float) -> torch.Tensor | None:
    if fraction >= 1.0:
        return None
    k = max(1, int(round(fraction * n)))
    return torch.randperm(n)[:k]


def _check_fraction(subsample: float) -> float:
    if not 0 < subsample <= 1:
        raise ValueError(f"algo.fisher.subsample={subsample} must be in (0, 1]")
    return float(subsample)


class AnalyticFisher:
    r"""The Fisher as the Hessian of the mean KL at θ_old (TRPO's analytic estimator):

        F·v = ∇_θ ( (∇_θ KL̄(π_old ‖ π_θ)) · v ) |_{θ=θ_old},

    computed by double backpropagation. KL̄ is the batch mean of the analytic per-state KL,
    so this is the exact Fisher of the policy averaged over the sampled states, with no
    dependence on the sampled actions. (KL(old‖new) and KL(new‖old) have the same Hessian at
    θ_old, so the KL direction setting does not affect F.)

    Args:
        subsample: fraction of the batch's states used for F, in (0, 1] (default 1: all).
    """

    def __init__(self, subsample: float = 1.0) -> None:
        self.subsample = _check_fraction(subsample)

    def build(self, policy: Policy, obs: torch.Tensor, actions: torch.Tensor) -> MatVec:
        idx = _subsample(obs.shape[0], self.subsample)
        if idx is not None:
            obs = obs[idx]
        params = list(policy.parameters())
        new = policy.dist_params(obs)
        old = tuple(t.detach() for t in new)
        kl_mean = policy.kl(old, new).mean()
        grad_kl = flat_grad(torch.autograd.grad(kl_mean, params, create_graph=True))

        def fvp(v: torch.Tensor) -> torch.Tensor:
            return flat_grad(torch.autograd.grad(grad_kl @ v, params, retain_graph=True)).detach()

        return fvp


class EmpiricalFisher:
    r"""The empirical Fisher, the mean outer product of per-sample scores (the TRPO paper's ablation):

        F = (1/N) Σ_i s_i s_iᵀ,  s_i = ∇_θ log π_θ(a_i | s_i) |_{θ_old},   F·v = Jᵀ(J v) / N,

    with J the N×P Jacobian of the batch's log-probabilities, applied with one forward-mode
    (``torch.func.jvp``) and one reverse-mode (``torch.func.vjp``) pass; J is never formed.

    Args:
        subsample: fraction of the batch's samples used for F, in (0, 1] (default 1: all).
    """

    def __init__(self, subsample: float = 1.0) -> None:
        self.subsample = _check_fraction(subsample)

    def build(self, policy: Policy, obs: torch.Tensor, actions: torch.Tensor) -> MatVec:
        idx = _subsample(obs.shape[0], self.subsample)
        if idx is not None:
            obs, actions = obs[idx], actions[idx]
        named = dict(policy.named_parameters())
        names = tuple(named)
        primals = tuple(p.detach() for p in named.values())
        shapes = [p.shape for p in primals]
        numels = [p.numel() for p in primals]
        n = obs.shape[0]

        def log_prob(*ps: torch.Tensor) -> torch.Tensor:
            return policy.log_prob(functional_call(policy, dict(zip(names, ps)), (obs,)), actions)

        _, vjp_fn = vjp(log_prob, *primals)

        def fvp(v: torch.Tensor) -> torch.Tensor:
            tangents = tuple(t.reshape(s) for t, s in zip(torch.split(v, numels), shapes))
            _, jv = jvp(log_prob, primals, tangents)
            return flat_grad(vjp_fn(jv / n))

        return fvp
