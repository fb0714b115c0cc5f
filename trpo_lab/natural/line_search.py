r"""Line searches over the fraction of a proposed step Δ that is taken.

A line search receives ``evaluate(fraction) -> Candidate``, which measures the policy
θ_old + fraction·Δ on the batch, and the expected improvement gᵀΔ of the full step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal


@dataclass(frozen=True)
class Candidate:
    """Measurements of one candidate θ on the batch.

    Attributes:
        surrogate_improvement: L(θ) − L(θ_old), with L the importance-weighted surrogate.
        kl_mean: mean over states of the KL between π_old and π_θ (the configured direction).
        kl_max: the maximum of that KL over states.
    """

    surrogate_improvement: float
    kl_mean: float
    kl_max: float


@dataclass(frozen=True)
class LineSearchResult:
    """Attributes:
    fraction: the share βʲ of Δ that was taken; 0 when every candidate was rejected.
    backtracks: candidates rejected before the accepted one (``max_backtracks`` if none was).
    accepted: whether a candidate was accepted (``none`` always accepts).
    """

    fraction: float
    backtracks: int
    accepted: bool


Evaluate = Callable[[float], Candidate]


class NoLineSearch:
    """Take the proposed step unchecked (``trpo_no_ls`` and ``npg``)."""

    def __call__(self, evaluate: Evaluate, expected_improvement: float) -> LineSearchResult:
        return LineSearchResult(fraction=1.0, backtracks=0, accepted=True)


class BacktrackingLineSearch:
    r"""Accept the first βʲ·Δ, j = 0, 1, …, that satisfies the trust region and improves the surrogate.

    A candidate is admissible when
      * KL(π_old, π_new) ≤ δ, with KL the batch mean (``constraint=mean``) or max (``constraint=max``),
      * L(θ_new) − L(θ_old) > 0, and
      * if ``accept_ratio`` > 0: (L(θ_new) − L(θ_old)) / (βʲ gᵀΔ) > ``accept_ratio``.
    If none of the ``max_backtracks`` candidates is admissible, the old parameters are kept.

    Args:
        max_kl: δ > 0, the trust-region radius.
        backtrack_coef: β ∈ (0, 1), the shrink factor per backtrack (default 0.8).
        max_backtracks: number of candidates tried, j = 0 … max_backtracks − 1 (default 10).
        accept_ratio: minimum actual/expected improvement ratio; 0 disables the check
            (Schulman's modular_rl used 0.1).
        constraint: ``mean`` (default; TRPO's practical algorithm) or ``max`` (the theory's max-KL).
    """

    def __init__(
        self,
        max_kl: float = 0.01,
        backtrack_coef: float = 0.8,
        max_backtracks: int = 10,
        accept_ratio: float = 0.0,
        constraint: Literal["mean", "max"] = "mean",
    ) -> None:
        if not max_kl > 0:
            raise ValueError(f"max_kl={max_kl!r} is invalid: must be > 0")
        if not 0 < backtrack_coef < 1:
            raise ValueError(f"backtrack_coef={backtrack_coef!r} is invalid: must be in (0, 1)")
        if not (max_backtracks >= 1 and max_backtracks == int(max_backtracks)):
            raise ValueError(f"max_backtracks={max_backtracks!r} is invalid: must be an integer ≥ 1")
        if constraint not in ("mean", "max"):
            raise ValueError(f"constraint={constraint!r} is invalid: must be mean or max")
        self.max_kl = float(max_kl)
        self.backtrack_coef = float(backtrack_coef)
        self.max_backtracks = int(max_backtracks)
        self.accept_ratio = float(accept_ratio)
        self.constraint = constraint

    def admissible(self, c: Candidate, expected: float) -> bool:
        kl = c.kl_mean if self.constraint == "mean" else c.kl_max
        if not (kl <= self.max_kl and c.surrogate_improvement > 0):
            return False
        if self.accept_ratio > 0:
            return expected > 0 and c.surrogate_improvement / expected > self.accept_ratio
        return True

    def __call__(self, evaluate: Evaluate, expected_improvement: float) -> LineSearchResult:
        fraction = 1.0
        for j in range(self.max_backtracks):
            if self.admissible(evaluate(fraction), fraction * expected_improvement):
                return LineSearchResult(fraction=fraction, backtracks=j, accepted=True)
            fraction *= self.backtrack_coef
        return LineSearchResult(fraction=0.0, backtracks=self.max_backtracks, accepted=False)
