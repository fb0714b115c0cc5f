r"""One natural-gradient policy update, composed of orthogonal pieces.

    g  = ∇_θ L(θ)|θ_old,   L(θ) = mean_i [π_θ(a_i|s_i) / π_old(a_i|s_i) · Â_i]
    x  ≈ (F + λI)⁻¹ g      (``fisher`` gives F·v, ``solver`` runs CG with damping λ)
    Δ  = c · x              (``step_rule``: c = α, or c = √(2δ / xᵀ(F+λI)x))
    θ  = θ_old + f · Δ      (``line_search``: f = 1, or the first admissible βʲ, or 0)

The three presets are compositions: ``npg`` = (fixed, none), ``trpo_no_ls`` = (kl_scaled, none),
``trpo`` = (kl_scaled, backtracking).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
from torch.nn.utils import vector_to_parameters

from trpo_lab.metrics import PolicyUpdateStats
from trpo_lab.natural.cg import ConjugateGradient
from trpo_lab.natural.fisher import AnalyticFisher, EmpiricalFisher, flat_grad, flat_params
from trpo_lab.natural.line_search import BacktrackingLineSearch, Candidate, NoLineSearch
from trpo_lab.natural.step_rules import FixedStep, KLScaledStep
from trpo_lab.policies import Policy

KL_DIRECTIONS = ("old_new", "new_old")


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
        normalize_advantages: standardise Â over the batch before forming the surrogate.
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
        self.full_step = KLScaledStep(max_kl)
        self.max_kl = float(max_kl)
        self.kl_direction = kl_direction
        self.constraint = constraint
        self.normalize_advantages = normalize_advantages

    def kl(self, policy: Policy, old, new) -> torch.Tensor:
        """Per-state KL in the configured direction."""
        return policy.kl(old, new) if self.kl_direction == "old_new" else policy.kl(new, old)

    def _violated(self, c: Candidate) -> float:
        return float((c.kl_mean if self.constraint == "mean" else c.kl_max) > self.max_kl)

    def __call__(
        self,
        policy: Policy,
        obs: torch.Tensor,
        actions: torch.Tensor,
        log_prob_old: torch.Tensor,
        advantages: torch.Tensor,
    ) -> PolicyUpdateStats:
        """Update ``policy`` in place on one batch and return what the step did."""
        adv = advantages
        if self.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        params = list(policy.parameters())
        theta_old = flat_params(policy)
        with torch.no_grad():
            # Why clone: dist params can be the parameter tensors themselves (the Gaussian's
            # log_std), which the line search overwrites; π_old must stay a snapshot.
            old = tuple(t.detach().clone() for t in policy.dist_params(obs))

        def surrogate(dist) -> torch.Tensor:
            return (torch.exp(policy.log_prob(dist, actions) - log_prob_old) * adv).mean()

        surr_old = surrogate(policy.dist_params(obs))
        g = flat_grad(torch.autograd.grad(surr_old, params))
        L_old = float(surr_old.detach())
        eps = float(adv.abs().max())

        if not torch.isfinite(adv).all():
            return self._skipped(policy, old, "non-finite advantages", eps)
        if not torch.isfinite(g).all():
            return self._skipped(policy, old, "non-finite surrogate gradient", eps)

        fvp = self.fisher.build(policy, obs, actions)
        cg = self.solver(fvp, g)
        x = cg.x
        xFx = float(x @ self.solver.damped(fvp)(x))
        gx = float(g @ x)
        if not math.isfinite(xFx) or xFx <= 0:
            return self._skipped(policy, old, f"xᵀFx = {xFx:.6g} is not positive and finite", eps, cg)
        c = self.step_rule(xFx)

        cache: dict[float, tuple[Candidate, tuple]] = {}

        def evaluate_at(mult: float) -> Candidate:
            """Measure θ_old + mult·x on the batch (cached: the line search and the counterfactual share)."""
            if mult not in cache:
                vector_to_parameters(theta_old + mult * x, params)
                with torch.no_grad():
                    dist = policy.dist_params(obs)
                    kl = self.kl(policy, old, dist)
                    cand = Candidate(float(surrogate(dist)) - L_old, float(kl.mean()), float(kl.max()))
                cache[mult] = (cand, dist)
            return cache[mult][0]

        ls = self.line_search(lambda f: evaluate_at(f * c), c * gx)
        full = evaluate_at(self.full_step(xFx))  # the counterfactual full KL-scaled step

        taken = ls.fraction * c
        if ls.accepted and taken != 0.0:
            final = evaluate_at(taken)
            final_dist = cache[taken][1]
        else:
            final, final_dist = Candidate(0.0, 0.0, 0.0), old
        vector_to_parameters(theta_old + taken * x, params)
        expected = taken * gx
        with torch.no_grad():
            entropy = float(policy.entropy(final_dist).mean())
        return PolicyUpdateStats(
            surrogate_expected=expected,
            surrogate_actual=final.surrogate_improvement,
            improvement_ratio=final.surrogate_improvement / expected if expected != 0 else 0.0,
            kl_predicted=0.5 * taken * taken * xFx,
            kl_mean=final.kl_mean,
            kl_max=final.kl_max,
            kl_over_delta=final.kl_mean / self.max_kl,
            constraint_violated=self._violated(final),
            norm=abs(taken) * float(x.norm()),
            fraction=ls.fraction,
            skipped=0.0,
            skipped_reason="",
            backtracks=float(ls.backtracks),
            accepted=float(ls.accepted),
            cg_residual=cg.residual,
            cg_iters=float(cg.iters),
            gFg=gx,
            xFx=xFx,
            grad_norm=float(g.norm()),
            full_step_kl_mean=full.kl_mean,
            full_step_kl_max=full.kl_max,
            full_step_surrogate_actual=full.surrogate_improvement,
            full_step_violated=self._violated(full),
            entropy=entropy,
            std_mean=policy.std_mean(),
            adv_max_abs=eps,
        )

    def _skipped(self, policy: Policy, old, reason: str, eps: float, cg=None) -> PolicyUpdateStats:
        """No step: θ stays θ_old, the reason is recorded, every numeric field is finite."""
        with torch.no_grad():
            entropy = float(policy.entropy(old).mean())
        zero = dict.fromkeys(
            ("surrogate_expected", "surrogate_actual", "improvement_ratio", "kl_predicted", "kl_mean", "kl_max",
             "kl_over_delta", "constraint_violated", "norm", "fraction", "backtracks", "accepted", "gFg", "xFx",
             "grad_norm", "full_step_kl_mean", "full_step_kl_max", "full_step_surrogate_actual",
             "full_step_violated"),
            0.0,
        )
        return PolicyUpdateStats(
            **zero,
            skipped=1.0,
            skipped_reason=reason,
            cg_residual=cg.residual if cg is not None and math.isfinite(cg.residual) else 0.0,
            cg_iters=float(cg.iters) if cg is not None else 0.0,
            entropy=entropy,
            std_mean=policy.std_mean(),
            adv_max_abs=eps if math.isfinite(eps) else 0.0,
        )
