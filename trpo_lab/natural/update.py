r"""One natural-gradient policy update, composed of orthogonal pieces.

    g  = ∇_θ L(θ)|θ_old,   L(θ) = mean_i [π_θ(a_i|s_i) / π_old(a_i|s_i) · Â_i]   (``surrogate``; vine: Eq. 15/16)
    x  ≈ (F + λI)⁻¹ g      (``fisher`` gives F·v, ``solver`` runs CG with damping λ)
    Δ  = c · x              (``step_rule``: c = α, or c = √(2δ / κ), κ = xᵀ(F+λI)x or xᵀFx)
    θ  = θ_old + f · Δ      (``line_search``: f = 1, or the first admissible βʲ, or 0)

The stats also carry what Theorem 1 of the TRPO paper needs in the units of the raw (unstandardised)
advantages A: ε = max|A| and mean[(ratio − 1)·A] at θ_new (see :func:`trpo_lab.metrics.bound_terms`).

The three presets are compositions: ``npg`` = (fixed, none), ``trpo_no_ls`` = (kl_scaled, none),
``trpo`` = (kl_scaled, backtracking).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch.nn.utils import vector_to_parameters

from trpo_lab.metrics import PolicyUpdateStats
from trpo_lab.natural.cg import CGResult, ConjugateGradient
from trpo_lab.natural.fisher import AnalyticFisher, EmpiricalFisher, flat_grad, flat_params
from trpo_lab.natural.line_search import BacktrackingLineSearch, Candidate, LineSearchResult, NoLineSearch
from trpo_lab.natural.step_rules import Curvature, FixedStep, KLScaledStep
from trpo_lab.natural.surrogate import SinglePathSurrogate, Surrogate
from trpo_lab.policies import DistParams, Policy

KL_DIRECTIONS = ("old_new", "new_old")


@dataclass
class CandidateMeter:
    r"""Measures θ_old + m·x on the batch: L(θ) − L(θ_old) and the KL to π_old (mean and max).

    Results are cached by multiplier m, so the line search, the full-step counterfactual and the
    final step share their forward passes. ``measure`` leaves θ at the last candidate measured.
    """

    update: NaturalGradientUpdate
    policy: Policy
    surrogate: Surrogate
    old: DistParams
    theta_old: torch.Tensor
    x: torch.Tensor
    surrogate_old: float
    cache: dict[float, tuple[Candidate, DistParams]] = field(default_factory=dict)

    def measure(self, mult: float) -> Candidate:
        if mult not in self.cache:
            self.set_theta(mult)
            with torch.no_grad():
                dist = self.policy.dist_params(self.surrogate.obs)
                kl = self.update.kl(self.policy, self.old, dist)
                surrogate = float(self.surrogate.value(self.policy, dist))
                cand = Candidate(surrogate - self.surrogate_old, float(kl.mean()), float(kl.max()))
            self.cache[mult] = (cand, dist)
        return self.cache[mult][0]

    def dist_at(self, mult: float) -> DistParams:
        """π_θ's distribution parameters at θ_old + m·x (π_old for m = 0)."""
        if mult == 0.0:
            return self.old
        self.measure(mult)
        return self.cache[mult][1]

    def set_theta(self, mult: float) -> None:
        vector_to_parameters(self.theta_old + mult * self.x, list(self.policy.parameters()))


def surrogate_of(
    policy: Policy, dist: DistParams, actions: torch.Tensor, log_prob_old: torch.Tensor, adv: torch.Tensor
) -> torch.Tensor:
    """L = mean_i [π(a_i|s_i) / π_old(a_i|s_i) · Â_i] (:class:`SinglePathSurrogate` on already standardised Â)."""
    return SinglePathSurrogate(dist[0], actions, log_prob_old, adv, normalize=False).value(policy, dist)


class NaturalGradientUpdate:
    r"""The policy update shared by every variant.

    Args:
        fisher: Fisher-vector product estimator (:class:`AnalyticFisher` or :class:`EmpiricalFisher`).
        solver: CG solver with damping (:class:`ConjugateGradient`).
        step_rule: :class:`FixedStep` (npg) or :class:`KLScaledStep` (trpo, trpo_no_ls).
        line_search: :class:`NoLineSearch` or :class:`BacktrackingLineSearch`.
        max_kl: δ > 0. Used to report KL/δ, violations and the full-step counterfactual for every
            variant (the step rule and line search hold their own copy, interpolated from the same key).
        kl_direction: ``old_new`` (default): KL(π_old ‖ π_new), the TRPO paper's direction;
            ``new_old``: KL(π_new ‖ π_old), as written in Spinning Up's docs. Both have the same
            Hessian at θ_old, so only the measured KL and the line-search check differ.
        constraint: ``mean`` (default) or ``max``: which KL statistic counts as a violation.
        normalize_advantages: standardise Â over the batch before forming the surrogate (the single-path
            surrogate that :meth:`__call__` builds; a vine surrogate is built with its own setting).
    """

    def __init__(
        self,
        fisher: AnalyticFisher | EmpiricalFisher,
        solver: ConjugateGradient,
        step_rule: FixedStep | KLScaledStep,
        line_search: NoLineSearch | BacktrackingLineSearch,
        max_kl: float = 0.01,
        kl_direction: Literal["old_new", "new_old"] = "old_new",
        constraint: Literal["mean", "max"] = "mean",
        normalize_advantages: bool = True,
    ) -> None:
        if kl_direction not in KL_DIRECTIONS:
            raise ValueError(f"algo.kl_direction={kl_direction!r} must be one of {KL_DIRECTIONS}")
        if constraint not in ("mean", "max"):
            raise ValueError(f"algo.constraint={constraint!r} must be 'mean' or 'max'")
        self.fisher = fisher
        self.solver = solver
        self.step_rule = step_rule
        self.line_search = line_search
        # the counterfactual full KL-scaled step uses the step rule's curvature when it has one
        self.full_step = step_rule if isinstance(step_rule, KLScaledStep) else KLScaledStep(max_kl)
        self.max_kl = float(max_kl)
        self.kl_direction = kl_direction
        self.constraint = constraint
        self.normalize_advantages = normalize_advantages

    def kl(self, policy: Policy, old: DistParams, new: DistParams) -> torch.Tensor:
        """Per-state KL in the configured direction."""
        return policy.kl(old, new) if self.kl_direction == "old_new" else policy.kl(new, old)

    def constrained_kl(self, c: Candidate) -> float:
        """The KL statistic of ``constraint``: the batch mean or max."""
        return c.kl_mean if self.constraint == "mean" else c.kl_max

    def _violated(self, c: Candidate) -> float:
        return float(self.constrained_kl(c) > self.max_kl)

    def __call__(
        self,
        policy: Policy,
        obs: torch.Tensor,
        actions: torch.Tensor,
        log_prob_old: torch.Tensor,
        advantages: torch.Tensor,
    ) -> PolicyUpdateStats:
        """:meth:`step` on the single-path surrogate of one batch (Â standardised if ``normalize_advantages``)."""
        return self.step(policy, SinglePathSurrogate(obs, actions, log_prob_old, advantages, self.normalize_advantages))

    def step(self, policy: Policy, surrogate: Surrogate) -> PolicyUpdateStats:
        """Update ``policy`` in place on one surrogate and return what the step did: solve for the natural
        gradient x, propose Δ = c·x, let the line search pick the fraction f of it, move θ to
        θ_old + f·c·x, and measure the step (and the full KL-scaled step, as a counterfactual)."""
        obs = surrogate.obs
        theta_old = flat_params(policy)
        with torch.no_grad():
            # Why clone: dist params can be the parameter tensors themselves (the Gaussian's
            # log_std), which the line search overwrites; π_old must stay a snapshot.
            old = tuple(t.detach().clone() for t in policy.dist_params(obs))
        surrogate_old = surrogate.value(policy, policy.dist_params(obs))
        g = flat_grad(torch.autograd.grad(surrogate_old, list(policy.parameters())))
        eps = surrogate.scale
        if not surrogate.is_finite():
            return self._skipped(policy, old, "non-finite advantages", eps)
        if not torch.isfinite(g).all():
            return self._skipped(policy, old, "non-finite surrogate gradient", eps)

        fvp = self.fisher.build(policy, obs, surrogate.actions)
        cg = self.solver(fvp, g)
        curvature = self._curvature(fvp, cg.x)
        kappa = self.full_step.kappa(curvature)
        if not (curvature.is_valid() and math.isfinite(kappa) and kappa > 0):
            reason = (f"curvature not positive and finite: xᵀFx = {curvature.undamped:.6g}, "
                      f"xᵀ(F+λI)x = {curvature.damped:.6g}")
            return self._skipped(policy, old, reason, eps, cg)

        meter = CandidateMeter(self, policy, surrogate, old, theta_old, cg.x, float(surrogate_old.detach()))
        c = self.step_rule(curvature)
        gx = float(g @ cg.x)
        ls = self.line_search(lambda f: meter.measure(f * c), c * gx)
        full = meter.measure(self.full_step(curvature))  # the counterfactual full KL-scaled step
        taken = ls.fraction * c if ls.accepted else 0.0
        final = self._take_step(meter, taken)
        return self._stats(policy, meter, ls, final, full, cg, g, gx, curvature, taken)

    def _curvature(self, fvp, x: torch.Tensor) -> Curvature:
        """xᵀFx from one Fisher product, and xᵀ(F + λI)x = xᵀFx + λ‖x‖²."""
        xFx = float(x @ fvp(x))
        return Curvature(undamped=xFx, damped=xFx + self.solver.damping * float(x @ x))

    @staticmethod
    def _take_step(meter: CandidateMeter, taken: float) -> Candidate:
        """Leave θ at θ_old + taken·x and return its measurements (zeros for no step)."""
        final = meter.measure(taken) if taken != 0.0 else Candidate(0.0, 0.0, 0.0)
        meter.set_theta(taken)
        return final

    def _stats(
        self, policy: Policy, meter: CandidateMeter, ls: LineSearchResult, final: Candidate, full: Candidate,
        cg: CGResult, g: torch.Tensor, gx: float, curvature: Curvature, taken: float,
    ) -> PolicyUpdateStats:
        """What the step θ_old → θ_old + taken·x did on the batch."""
        expected = taken * gx
        with torch.no_grad():
            dist = meter.dist_at(taken)
            entropy = float(policy.entropy(dist).mean())
            ratio_advantage = meter.surrogate.bound_gain(policy, dist)
        return PolicyUpdateStats(
            surrogate_expected=expected,
            surrogate_actual=final.surrogate_improvement,
            improvement_ratio=final.surrogate_improvement / expected if expected != 0 else 0.0,
            kl_predicted=0.5 * taken * taken * curvature.undamped,
            kl_mean=final.kl_mean,
            kl_max=final.kl_max,
            kl_over_delta=self.constrained_kl(final) / self.max_kl,
            constraint_violated=self._violated(final),
            norm=abs(taken) * float(meter.x.norm()),
            fraction=ls.fraction,
            skipped=0.0,
            skipped_reason="",
            backtracks=float(ls.backtracks),
            accepted=float(ls.accepted),
            cg_residual=cg.residual,
            cg_iters=float(cg.iters),
            xFx_damped=curvature.damped,
            xFx=curvature.undamped,
            damping_share=curvature.damping_share,
            grad_norm=float(g.norm()),
            full_step_kl_mean=full.kl_mean,
            full_step_kl_max=full.kl_max,
            full_step_surrogate_actual=full.surrogate_improvement,
            full_step_violated=self._violated(full),
            entropy=entropy,
            std_mean=policy.std_mean(),
            adv_max_abs=meter.surrogate.scale,
            ratio_advantage_mean=ratio_advantage,
        )

    @staticmethod
    def _skipped(policy: Policy, old: DistParams, reason: str, eps: float, cg: CGResult | None = None) -> PolicyUpdateStats:
        """No step: θ stays θ_old, the reason is recorded, every numeric field is finite."""
        with torch.no_grad():
            entropy = float(policy.entropy(old).mean())
        return PolicyUpdateStats.for_skipped(
            reason,
            cg_residual=cg.residual if cg is not None and math.isfinite(cg.residual) else 0.0,
            cg_iters=float(cg.iters) if cg is not None else 0.0,
            entropy=entropy,
            std_mean=policy.std_mean(),
            adv_max_abs=eps if math.isfinite(eps) else 0.0,
        )
