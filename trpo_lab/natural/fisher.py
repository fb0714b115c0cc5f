r"""Fisher-vector products F·v for the policy at θ_old.

Each estimator's ``build(policy, obs, actions)`` is called once per update, at θ = θ_old, and
returns a function v ↦ F·v over the flat parameter vector (the order of ``policy.parameters()``).
Building does the shared work once (the forward pass and its activations, or the graph of ∇KL),
so each of CG's products costs only what depends on v.

Subsampling (``subsample`` < 1) draws one fixed random subset of the batch per ``build``, i.e.
per update: every product within a CG solve sees the same states, so CG solves one fixed
linear system (the TRPO paper used 10%).

The analytic Fisher has two implementations of the same matrix (``AnalyticFisher(method=...)``):

* ``jmj`` (default): F = Jᵀ M J, with J = ∂(distribution parameters)/∂θ and M the Hessian of
  the mean KL with respect to the distribution parameters, which is known in closed form
  (:func:`kl_hessian_vp`, from the policy's ``fisher_block``). J·v and Jᵀ·u are one forward-tangent
  and one backward pass through the network, written out by hand for a policy with an MLP head
  (:class:`~trpo_lab.nn.MLPLinearization`) and done with ``torch.func`` for any other policy
  (both fast paths are :class:`~trpo_lab.policies.FastPathPolicy`'s).
* ``double_backprop``: F·v = ∇_θ((∇_θ KL̄)·v), the textbook Hessian-vector product through autograd.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch
from torch.func import functional_call, jvp, vjp

from trpo_lab.nn import MLPLinearization
from trpo_lab.policies import DistParams, FastPathPolicy, MLPHead, Policy, policy_mlp

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


def _check_subsample(fraction: float) -> None:
    if not 0 < fraction <= 1:
        raise ValueError(f"subsample={fraction!r} is invalid: must be in (0, 1]")


# -- the distribution part: M = ∇²_d KL̄(π_old ‖ π_d) at d = d_old --------------------------------------


def kl_hessian_vp(policy: Policy, old: DistParams) -> Callable[[DistParams], DistParams]:
    r"""u ↦ M·u, M the Hessian of KL̄ = mean_i KL(π_old(·|s_i) ‖ π_d(·|s_i)) in the distribution parameters d at d_old.

    In closed form from :meth:`~trpo_lab.policies.FastPathPolicy.fisher_block` when the policy has it
    (the policies of :mod:`trpo_lab.policies`); for any other policy, the Hessian-vector product of
    ``policy.kl`` itself, by ``torch.func``.
    """
    if isinstance(policy, FastPathPolicy):
        return policy.fisher_block(old)

    def mean_kl(d: DistParams) -> torch.Tensor:
        return policy.kl(old, d).mean()

    grad_kl = torch.func.grad(mean_kl)
    return lambda u: jvp(grad_kl, (old,), (u,))[1]


# -- J for a whole policy ----------------------------------------------------------------------------


class _Linearization:
    """J·v (flat v → distribution-parameter tangents) and Jᵀ·u (→ flat), plus d_old."""

    old: DistParams

    def jvp(self, v: torch.Tensor) -> DistParams:
        raise NotImplementedError

    def vjp(self, u: DistParams) -> torch.Tensor:
        raise NotImplementedError


class _MLPPolicyLinearization(_Linearization):
    """J of a policy with an :class:`~trpo_lab.policies.MLPHead`: d = (net(s), *state_independent),
    the latter with J = I."""

    def __init__(self, policy: Policy, head: MLPHead, obs: torch.Tensor) -> None:
        layers = head.layers
        params = list(policy.parameters())
        offsets, start = {}, 0
        for p in params:
            offsets[id(p)] = (start, p.numel(), p.shape)
            start += p.numel()
        self.numel = start
        self.net = MLPLinearization(layers, obs)
        self.w_slices = [offsets[id(lin.weight)] for lin, _ in layers]
        self.b_slices = [offsets[id(lin.bias)] for lin, _ in layers]
        self.identity_slices = [offsets[id(p)] for p in head.state_independent]
        self.old = (self.net.output, *(p.detach().clone() for p in head.state_independent))

    @staticmethod
    def _view(flat: torch.Tensor, s: tuple[int, int, torch.Size]) -> torch.Tensor:
        return flat[s[0] : s[0] + s[1]].view(s[2])

    def jvp(self, v: torch.Tensor) -> DistParams:
        out = self.net.jvp([self._view(v, s) for s in self.w_slices], [self._view(v, s) for s in self.b_slices])
        return (out, *(self._view(v, s) for s in self.identity_slices))

    def vjp(self, u: DistParams) -> torch.Tensor:
        g = torch.empty(self.numel)
        self.net.vjp(u[0], [self._view(g, s) for s in self.w_slices], [self._view(g, s) for s in self.b_slices])
        for s, u_s in zip(self.identity_slices, u[1:]):
            self._view(g, s).copy_(u_s)
        return g


class _FuncLinearization(_Linearization):
    """J of any policy, by ``torch.func`` (one ``jvp`` per product; the ``vjp`` closure is built once)."""

    def __init__(self, policy: Policy, obs: torch.Tensor) -> None:
        named = dict(policy.named_parameters())
        names = tuple(named)
        primals = tuple(p.detach().clone() for p in named.values())
        self.primals, self.shapes = primals, [p.shape for p in primals]
        self.numels = [p.numel() for p in primals]

        def dist_params(*ps: torch.Tensor) -> DistParams:
            return tuple(functional_call(policy, dict(zip(names, ps)), (obs,)))

        self.fn = dist_params
        out, self._vjp = vjp(dist_params, *primals)
        self.old = tuple(t.detach() for t in out)

    def jvp(self, v: torch.Tensor) -> DistParams:
        tangents = tuple(t.reshape(s) for t, s in zip(torch.split(v, self.numels), self.shapes))
        return jvp(self.fn, self.primals, tangents)[1]

    def vjp(self, u: DistParams) -> torch.Tensor:
        return flat_grad(self._vjp(tuple(u)))


def linearize_policy(policy: Policy, obs: torch.Tensor) -> _Linearization:
    """J of ``policy``'s distribution parameters at its current θ on ``obs``.

    By hand (:class:`~trpo_lab.nn.MLPLinearization`) for a policy with an
    :class:`~trpo_lab.policies.MLPHead` (a plain MLP and no parameters besides it and its
    state-independent ones, :func:`~trpo_lab.policies.policy_mlp`); by ``torch.func`` for anything else.
    """
    head = policy_mlp(policy)
    if head is None:
        return _FuncLinearization(policy, obs)
    return _MLPPolicyLinearization(policy, head, obs)


# -- the estimators ----------------------------------------------------------------------------------


class AnalyticFisher:
    r"""The Fisher as the Hessian of the mean KL at θ_old (TRPO's analytic estimator):

        F = ∇²_θ KL̄(π_old ‖ π_θ) |_{θ=θ_old} = Jᵀ M J,

    with J the Jacobian of the distribution parameters over the batch and M the KL's Hessian in
    those parameters (the Gauss–Newton identity is exact here because ∇_d KL = 0 at d_old). KL̄ is
    the batch mean of the analytic per-state KL, so F is the exact Fisher of the policy averaged
    over the sampled states, with no dependence on the sampled actions. (KL(old‖new) and
    KL(new‖old) have the same Hessian at θ_old, so the KL direction setting does not affect F.)

    Args:
        subsample: fraction of the batch's states used for F, in (0, 1] (default 1: all).
        method: ``jmj`` (default): J·v forward, M in closed form, Jᵀ·(M J v) backward (its cost
            against ``double_backprop``: experiments/throughput/README.md, measured with
            ``scripts/benchmark.py --update-only``); ``double_backprop``: the Hessian-vector
            product ∇_θ((∇_θ KL̄)·v) through autograd. Both give the same F·v up to float rounding
            (tests/test_fast_paths.py checks each against a dense Hessian).
    """

    def __init__(self, subsample: float = 1.0, method: Literal["jmj", "double_backprop"] = "jmj") -> None:
        _check_subsample(subsample)
        if method not in ("jmj", "double_backprop"):
            raise ValueError(f"method={method!r} is invalid: must be jmj or double_backprop")
        self.subsample = float(subsample)
        self.method = method

    def build(self, policy: Policy, obs: torch.Tensor, actions: torch.Tensor) -> MatVec:
        idx = _subsample(obs.shape[0], self.subsample)
        if idx is not None:
            obs = obs[idx]
        if self.method == "double_backprop":
            return self._build_double_backprop(policy, obs)
        lin = linearize_policy(policy, obs)
        M = kl_hessian_vp(policy, lin.old)

        def fvp(v: torch.Tensor) -> torch.Tensor:
            return lin.vjp(M(lin.jvp(v)))

        return fvp

    @staticmethod
    def _build_double_backprop(policy: Policy, obs: torch.Tensor) -> MatVec:
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
        _check_subsample(subsample)
        self.subsample = float(subsample)

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
