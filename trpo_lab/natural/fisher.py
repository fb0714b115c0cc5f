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
  (:func:`kl_hessian_vp`). J·v and Jᵀ·u are one forward-tangent and one backward pass through the
  network, written out by hand for the MLPs of :mod:`trpo_lab.policies` (:class:`MLPLinearization`)
  and done with ``torch.func`` for any other policy.
* ``double_backprop``: F·v = ∇_θ((∇_θ KL̄)·v), the textbook Hessian-vector product through autograd.
"""
from __future__ import annotations

from typing import Callable, Literal, Sequence

import torch
from torch import nn
from torch.func import functional_call, jvp, vjp

from trpo_lab.policies import CategoricalPolicy, DistParams, GaussianPolicy, Policy

MatVec = Callable[[torch.Tensor], torch.Tensor]
FISHER_METHODS = ("jmj", "double_backprop")


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


# -- the network part: J·v and Jᵀ·u of a plain MLP, by hand --------------------------------------------

_ACTIVATION_DERIVATIVES: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
    nn.Tanh: lambda h: 1.0 - h * h,  # tanh' = 1 − tanh²
    nn.ReLU: lambda h: (h > 0).to(h.dtype),
    nn.ELU: lambda h: torch.where(h > 0, torch.ones_like(h), h + 1.0),  # ELU(z) = eᶻ − 1 for z ≤ 0 (α = 1)
}


def mlp_layers(net: nn.Module) -> list[tuple[nn.Linear, type | None]] | None:
    """``[(Linear_1, φ), …, (Linear_L, None)]`` if ``net`` is ``Sequential(Linear, φ, …, Linear)``, else None.

    φ must be one of the activations whose derivative :class:`MLPLinearization` knows (Tanh, ReLU,
    ELU with α = 1); anything else (dropout, normalisation layers, custom modules) returns None so
    the caller can fall back to autograd.
    """
    if not isinstance(net, nn.Sequential) or len(net) % 2 != 1:
        return None
    mods = list(net)
    layers: list[tuple[nn.Linear, type | None]] = []
    for i in range(0, len(mods), 2):
        lin = mods[i]
        act = mods[i + 1] if i + 1 < len(mods) else None
        if not isinstance(lin, nn.Linear) or lin.bias is None:
            return None
        if act is not None:
            if type(act) not in _ACTIVATION_DERIVATIVES or (isinstance(act, nn.ELU) and act.alpha != 1.0):
                return None
            layers.append((lin, type(act)))
        else:
            layers.append((lin, None))
    return layers


class MLPLinearization:
    r"""An MLP f_θ linearised at its current θ on a fixed input batch.

    For f = Linear_L ∘ φ ∘ … ∘ φ ∘ Linear_1 with z_l = h_{l−1} W_lᵀ + b_l, h_l = φ(z_l), h_0 = x,
    the constructor runs the forward pass once and keeps h_l and D_l = φ'(z_l). Then

    * :meth:`jvp` (forward tangent, J·v for v = (dW_l, db_l)):
          dz_1 = x dW_1ᵀ + db_1,   dz_l = h_{l−1} dW_lᵀ + db_l + (D_{l−1} ⊙ dz_{l−1}) W_lᵀ,   J·v = dz_L;
    * :meth:`vjp` (backward, Jᵀ·u for a cotangent u on the output):
          δ_L = u,   ∂/∂W_l = δ_lᵀ h_{l−1},   ∂/∂b_l = Σ_rows δ_l,   δ_{l−1} = (δ_l W_l) ⊙ D_{l−1}.

    These are exactly what autograd would do, without building a graph: each costs a handful of
    matmuls of the batch against the weights (the hidden×hidden ones dominate).

    Args:
        layers: from :func:`mlp_layers` (any objects with ``.weight`` and ``.bias`` in place of the
            ``nn.Linear``s will do: the fused critic passes views into its flat parameter buffer).
        x: the input batch ``(B, in_dim)``.
        snapshot: copy the weights (so a later in-place change of the module does not move θ_old).
    """

    def __init__(self, layers: Sequence[tuple[nn.Linear, type | None]], x: torch.Tensor, snapshot: bool = True) -> None:
        with torch.no_grad():
            self.weights = [lin.weight.detach().clone() if snapshot else lin.weight.detach() for lin, _ in layers]
            biases = [lin.bias.detach() for lin, _ in layers]
            self.hidden: list[torch.Tensor] = [x]  # h_0 … h_{L−1}
            self.derivs: list[torch.Tensor] = []  # D_1 … D_{L−1}
            h = x
            for (_, act), W, b in zip(layers[:-1], self.weights[:-1], biases[:-1]):
                h = torch.addmm(b, h, W.T)
                if act is nn.Tanh:
                    h.tanh_()
                elif act is nn.ReLU:
                    h.relu_()
                else:
                    h = nn.functional.elu(h)
                self.hidden.append(h)
                self.derivs.append(_ACTIVATION_DERIVATIVES[act](h))
            self.output = torch.addmm(biases[-1], h, self.weights[-1].T)  # z_L at θ

    def jvp(self, dW: Sequence[torch.Tensor], db: Sequence[torch.Tensor]) -> torch.Tensor:
        """J·v: the change of the output, ``(B, out_dim)``, for the parameter change (dW_l, db_l)."""
        dz = torch.addmm(db[0], self.hidden[0], dW[0].T)
        for l in range(1, len(self.weights)):
            dh = self.derivs[l - 1] * dz
            dz = torch.addmm(db[l], self.hidden[l], dW[l].T)
            dz.addmm_(dh, self.weights[l].T)
        return dz

    def vjp(self, u: torch.Tensor, gW: Sequence[torch.Tensor], gb: Sequence[torch.Tensor]) -> None:
        """Jᵀ·u, written into ``gW[l]`` and ``gb[l]`` (views into a flat gradient, say)."""
        delta = u
        for l in range(len(self.weights) - 1, -1, -1):
            torch.mm(delta.T, self.hidden[l], out=gW[l])
            torch.sum(delta, 0, out=gb[l])
            if l > 0:
                delta = torch.mm(delta, self.weights[l]).mul_(self.derivs[l - 1])


# -- the distribution part: M = ∇²_d KL̄(π_old ‖ π_d) at d = d_old --------------------------------------


def kl_hessian_vp(policy: Policy, old: DistParams) -> Callable[[DistParams], DistParams]:
    r"""u ↦ M·u, M the Hessian of KL̄ = mean_i KL(π_old(·|s_i) ‖ π_d(·|s_i)) in the distribution parameters d at d_old.

    Closed forms (B states; per-state blocks, scaled by 1/B for the batch mean):

    * Gaussian, d = (μ (B×k), log σ (k), shared by all states): M·(u_μ, u_σ) = (u_μ / (B σ²), 2 u_σ).
      (∂²KL/∂μ² = σ⁻², ∂²KL/∂(log σ)² = 2 per state and dimension, no cross term at d_old.)
    * Categorical, d = logits z (B×n), p = softmax(z_old): M·u = (p ⊙ u − p (pᵀu)) / B, i.e. diag(p) − ppᵀ.
    * Any other policy: the Hessian-vector product of ``policy.kl`` itself, by ``torch.func``.
    """
    if isinstance(policy, GaussianPolicy):
        mean, log_std = old
        inv_var_over_b = torch.exp(-2.0 * log_std) / mean.shape[0]
        return lambda u: (u[0] * inv_var_over_b, 2.0 * u[1])
    if isinstance(policy, CategoricalPolicy):
        (logits,) = old
        p = torch.softmax(logits, -1)
        b = logits.shape[0]

        def categorical(u: DistParams) -> DistParams:
            pu = p * u[0]
            return ((pu - p * pu.sum(-1, keepdim=True)) / b,)

        return categorical

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
    """J of a :class:`GaussianPolicy` (d = (mean_net(s), log σ)) or :class:`CategoricalPolicy` (d = logits_net(s))."""

    def __init__(self, policy: GaussianPolicy | CategoricalPolicy, layers, obs: torch.Tensor) -> None:
        params = list(policy.parameters())
        offsets, start = {}, 0
        for p in params:
            offsets[id(p)] = (start, p.numel(), p.shape)
            start += p.numel()
        self.numel = start
        self.net = MLPLinearization(layers, obs)
        self.w_slices = [offsets[id(lin.weight)] for lin, _ in layers]
        self.b_slices = [offsets[id(lin.bias)] for lin, _ in layers]
        self.gaussian = isinstance(policy, GaussianPolicy)
        if self.gaussian:
            self.log_std_slice = offsets[id(policy.log_std)]
            self.old = (self.net.output, policy.log_std.detach().clone())
        else:
            self.old = (self.net.output,)

    @staticmethod
    def _view(flat: torch.Tensor, s: tuple[int, int, torch.Size]) -> torch.Tensor:
        return flat[s[0] : s[0] + s[1]].view(s[2])

    def jvp(self, v: torch.Tensor) -> DistParams:
        out = self.net.jvp([self._view(v, s) for s in self.w_slices], [self._view(v, s) for s in self.b_slices])
        return (out, self._view(v, self.log_std_slice)) if self.gaussian else (out,)

    def vjp(self, u: DistParams) -> torch.Tensor:
        g = torch.empty(self.numel)
        self.net.vjp(u[0], [self._view(g, s) for s in self.w_slices], [self._view(g, s) for s in self.b_slices])
        if self.gaussian:
            self._view(g, self.log_std_slice).copy_(u[1])
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

    By hand (:class:`MLPLinearization`) for a :class:`GaussianPolicy`/:class:`CategoricalPolicy`
    whose network is a plain MLP and which has no parameters besides it (and log σ); by
    ``torch.func`` for anything else.
    """
    if isinstance(policy, GaussianPolicy):
        net, n_extra = policy.mean_net, 1  # + log σ
    elif isinstance(policy, CategoricalPolicy):
        net, n_extra = policy.logits_net, 0
    else:
        return _FuncLinearization(policy, obs)
    layers = mlp_layers(net)
    if layers is None or len(list(policy.parameters())) != 2 * len(layers) + n_extra:
        return _FuncLinearization(policy, obs)
    return _MLPPolicyLinearization(policy, layers, obs)


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
        method: ``jmj`` (default): J·v forward, M in closed form, Jᵀ·(M J v) backward, about 2.5×
            cheaper per product for the 64×64 MLP policies; ``double_backprop``: the Hessian-vector
            product ∇_θ((∇_θ KL̄)·v) through autograd. Both give the same F·v up to float rounding
            (tests/test_fast_paths.py checks each against a dense Hessian).
    """

    def __init__(self, subsample: float = 1.0, method: Literal["jmj", "double_backprop"] = "jmj") -> None:
        self.subsample = _check_fraction(subsample)
        if method not in FISHER_METHODS:
            raise ValueError(f"algo.fisher.method={method!r} must be one of {FISHER_METHODS}")
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
