r"""Step rules: how far to move along the natural gradient x ≈ F⁻¹g.

A step rule maps the natural gradient ``x`` and its curvature xᵀFx to a scalar ``c``; the proposed
step is Δ = c·x.
"""
from __future__ import annotations

import math

from trpo_lab.config import check_args


class InvalidStepError(ArithmeticError):
    """The step cannot be formed (e.g. xᵀFx ≤ 0 or non-finite); the update is skipped."""


class FixedStep:
    r"""The classic natural gradient (Kakade 2001): Δ = α·F⁻¹g.

    This is the ``npg`` baseline of the TRPO paper (Tianshou's ``NPG``).

    Args:
        step_size: α > 0. No trust region is enforced; the KL of the step is only measured.
    """

    def __init__(self, step_size: float = 0.1) -> None:
        check_args("algo.step_rule", FixedStep, step_size=step_size)
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
        check_args("algo.step_rule", KLScaledStep, max_kl=max_kl)
        self.max_kl = float(max_kl)

    def __call__(self, xFx: float) -> float:
        if not math.isfinite(xFx) or xFx <= 0:
            raise InvalidStepError(
                f"xᵀFx = {xFx!r} is not positive and finite; the KL-scaled step √(2δ/xᵀFx) is undefined "
                "(raise algo.solver.damping, or check the Fisher estimate)"
            )
        return math.sqrt(2.0 * self.max_kl / xFx)
