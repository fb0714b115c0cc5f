"""Per-update statistics and the monotonic-improvement accounting across updates.

Every update returns a :class:`PolicyUpdateStats` with the same fields for every variant; a
field that does not apply to a variant takes its natural value (``npg`` never backtracks:
``line_search/backtracks`` is 0). ``to_dict`` gives the ``/``-sectioned metric keys of
DESIGN.md §3.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any


def _key(name: str) -> Any:
    return field(metadata={"key": name})


def _as_dict(obj: Any) -> dict[str, Any]:
    return {f.metadata["key"]: getattr(obj, f.name) for f in fields(obj)}


@dataclass(frozen=True)
class PolicyUpdateStats:
    """What one natural-gradient update did, measured on its own batch."""

    surrogate_expected: float = _key("step/surrogate_expected")  # gᵀΔ for the step taken
    surrogate_actual: float = _key("step/surrogate_actual")  # L(θ_new) − L(θ_old)
    improvement_ratio: float = _key("step/improvement_ratio")  # actual / expected (0 if expected = 0)
    kl_predicted: float = _key("step/kl_predicted")  # ½ΔᵀFΔ (F damped, as CG solved)
    kl_mean: float = _key("step/kl_mean")  # mean over states of KL(π_old, π_new)
    kl_max: float = _key("step/kl_max")
    kl_over_delta: float = _key("step/kl_over_delta")  # kl_mean / δ
    constraint_violated: float = _key("step/constraint_violated")  # 1 if the constrained KL stat > δ
    norm: float = _key("step/norm")  # ‖Δ‖ for the step taken
    fraction: float = _key("step/fraction")  # βʲ; 0 for a rejected or skipped step
    skipped: float = _key("step/skipped")  # 1 if no step could be formed (see skipped_reason)
    skipped_reason: str = _key("step/skipped_reason")
    backtracks: float = _key("line_search/backtracks")
    accepted: float = _key("line_search/accepted")
    cg_residual: float = _key("cg/residual")  # ‖g − (F+λI)x‖ / ‖g‖
    cg_iters: float = _key("cg/iters")
    gFg: float = _key("natural/gFg")  # gᵀx, x ≈ (F+λI)⁻¹g
    xFx: float = _key("natural/xFx")  # xᵀ(F+λI)x
    grad_norm: float = _key("natural/grad_norm")  # ‖g‖
    full_step_kl_mean: float = _key("full_step/kl_mean")  # the full KL-scaled step, counterfactual
    full_step_kl_max: float = _key("full_step/kl_max")
    full_step_surrogate_actual: float = _key("full_step/surrogate_actual")
    full_step_violated: float = _key("full_step/constraint_violated")
    entropy: float = _key("policy/entropy")  # mean entropy at θ_new
    std_mean: float = _key("policy/std_mean")  # mean σ (Gaussian); 0 for Categorical
    adv_max_abs: float = _key("bound/epsilon")  # ε = max|Â| over the batch (the Â of the surrogate)

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)

    @classmethod
    def for_skipped(cls, reason: str, **measured: float) -> PolicyUpdateStats:
        """An update that took no step: ``skipped`` = 1, the ``measured`` fields, every other number 0."""
        zeros = {f.name: 0.0 for f in fields(cls) if f.type == "float"}
        return cls(**{**zeros, **measured, "skipped": 1.0, "skipped_reason": reason})


@dataclass(frozen=True)
class CriticStats:
    loss: float = _key("critic/loss")  # mean squared error on the batch after fitting
    explained_variance: float = _key("critic/explained_variance")  # 1 − Var[R − V] / Var[R], before fitting

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)


def bound_terms(epsilon: float, gamma: float, surrogate_actual: float, kl_max: float) -> dict[str, float]:
    r"""Terms of TRPO's Theorem 1: η(π_new) ≥ L(π_new) − C·D_KL^max with C = 4εγ/(1−γ)².

    ``bound/penalised_surrogate`` = (L(θ_new) − L(θ_old)) − C·KL_max, in the units of the
    surrogate. For γ near 1 it is hugely negative (the bound is vacuous); it is logged, not assumed.
    """
    C = 4.0 * epsilon * gamma / (1.0 - gamma) ** 2 if gamma < 1 else math.inf
    return {"bound/C": C, "bound/penalised_surrogate": surrogate_actual - C * kl_max}


@dataclass
class MonotonicTracker:
    """Accounting of the return from one update to the next.

    Args:
        collapse_share: a drop of more than this share of the best return so far (in absolute
            value) counts as a collapse (default 0.5).
    """

    collapse_share: float = 0.5
    previous: float | None = None
    best: float = -math.inf
    updates: int = 0
    improved: int = 0
    collapses: int = 0
    worst_drop: float = 0.0

    def update(self, return_mean: float) -> dict[str, float]:
        delta = 0.0 if self.previous is None else return_mean - self.previous
        if self.previous is not None:
            self.updates += 1
            self.improved += int(delta > 0)
            self.worst_drop = min(self.worst_drop, delta)
            if self.best > -math.inf and -delta > self.collapse_share * abs(self.best) and delta < 0:
                self.collapses += 1
        self.best = max(self.best, return_mean)
        self.previous = return_mean
        return {
            "return/delta": delta,
            "monotonic/improved_fraction": self.improved / self.updates if self.updates else 0.0,
            "monotonic/collapses": float(self.collapses),
            "monotonic/worst_drop": self.worst_drop,
            "return/best": self.best,
        }

    def current(self) -> dict[str, float]:
        """The accounting as it stands, for an update that brought no new return (delta 0)."""
        return {
            "return/delta": 0.0,
            "monotonic/improved_fraction": self.improved / self.updates if self.updates else 0.0,
            "monotonic/collapses": float(self.collapses),
            "monotonic/worst_drop": self.worst_drop,
            "return/best": self.best if self.best > -math.inf else math.nan,
        }

    def state_dict(self) -> dict[str, Any]:
        return {k.name: getattr(self, k.name) for k in fields(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
