r"""Step rules: how far to move along the natural gradient x ≈ F⁻¹g.

A step rule maps the natural gradient ``x`` and its curvature xᵀFx to a scalar ``c``; the proposed
step is Δ = c·x.
"""
from __future__ import annotations

import math


class FixedStep:
    r"""The classic natural gradient (Kakade 2001): Δ = α·F⁻¹g.

    This is the ``npg`` baseline of the TRPO paper (Tianshou's ``NPG``).

    Args:
        step_size: α > 0. No trust region is enforced; the KL of the step is only measured.
    """

    def __init__(self, step_size: float = 0.1) -> None:
        if not step_size > 0:
            raise ValueError(f"algo.step_rule.step_size={step_size} must be > 0")
        self.step_size = float(step_size)

    def __call__(self, xFx: float) -> float:
        return self.step_size


class KLScaledStep:
    r"""The TRPO step: Δ = √(2δ / xᵀFx)·x, so that the quadratic KL model ½ΔᵀFΔ equals δ.

    xᵀFx (not gᵀx) is used: the two agree only when CG has converged.

    Args:
        max_kl: δ > 0, the trust-region radius in mean KL.
    """

    def __init__(self, max_kl: float = 0.01) -> None:
        if not max_kl > 0:
            raise ValueError(f"algo.max_kl={max_kl} must be > 0")
        self.max_kl = float(max_kl)

    def __call__(self, xFx: float) -> float:
        """c = √(2δ / xᵀFx); the update checks that xᵀFx is positive and finite before calling."""
        return math.sqrt(2.0 * self.max_kl / xFx)
