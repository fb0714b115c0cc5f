r"""Step rules: how far to move along the natural gradient x ≈ (F + λI)⁻¹g.

A step rule maps the :class:`Curvature` of ``x`` to a scalar ``c``; the proposed step is Δ = c·x.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Curvature:
    r"""The curvature of the natural gradient x along itself.

    Attributes:
        undamped: xᵀFx, the Fisher alone: ½(cx)ᵀF(cx) is the quadratic model of the KL that a step
            c·x will measure.
        damped: xᵀ(F + λI)x = xᵀFx + λ‖x‖², the system CG solved. For CG started at x₀ = 0 every
            iterate satisfies gᵀx = xᵀ(F + λI)x (converged or not), so this is also gᵀx.
    """

    undamped: float
    damped: float

    @property
    def damping_share(self) -> float:
        """λ‖x‖² / xᵀ(F + λI)x: the share of the damped curvature that the damping contributes."""
        return (self.damped - self.undamped) / self.damped

    def is_valid(self) -> bool:
        """Both numbers finite and the damped one positive (F is PSD, so xᵀFx ≥ 0 up to rounding)."""
        return math.isfinite(self.undamped) and math.isfinite(self.damped) and self.damped > 0


class FixedStep:
    r"""The classic natural gradient (Kakade 2001): Δ = α·F⁻¹g.

    This is the ``npg`` baseline of the TRPO paper (Tianshou's ``NPG``).

    Args:
        step_size: α > 0. No trust region is enforced; the KL of the step is only measured.
    """

    def __init__(self, step_size: float = 0.1) -> None:
        if not step_size > 0:
            raise ValueError(f"step_size={step_size!r} is invalid: must be > 0")
        self.step_size = float(step_size)

    def __call__(self, curvature: Curvature) -> float:
        return self.step_size


class KLScaledStep:
    r"""The TRPO step: Δ = √(2δ / κ)·x, so that the quadratic KL model ½κc² equals δ.

    With ``curvature=damped`` (the default; the convention of Spinning Up, SB3-contrib and Tianshou)
    κ = xᵀ(F + λI)x, so the undamped model ½ΔᵀFΔ = δ − ½λ‖Δ‖² falls short of δ. With
    ``curvature=undamped`` κ = xᵀFx and ½ΔᵀFΔ = δ exactly.

    Args:
        max_kl: δ > 0, the trust-region radius in mean KL.
        curvature: ``damped`` or ``undamped``: which κ scales the step.
    """

    def __init__(self, max_kl: float = 0.01, curvature: Literal["damped", "undamped"] = "damped") -> None:
        if not max_kl > 0:
            raise ValueError(f"max_kl={max_kl!r} is invalid: must be > 0")
        if curvature not in ("damped", "undamped"):
            raise ValueError(f"curvature={curvature!r} is invalid: must be damped or undamped")
        self.max_kl = float(max_kl)
        self.curvature = curvature

    def kappa(self, curvature: Curvature) -> float:
        """The curvature κ this rule scales by."""
        return curvature.damped if self.curvature == "damped" else curvature.undamped

    def __call__(self, curvature: Curvature) -> float:
        """c = √(2δ / κ); the update checks that κ is positive and finite before calling."""
        return math.sqrt(2.0 * self.max_kl / self.kappa(curvature))
