"""Conjugate gradient: x ≈ A⁻¹b using only products A·v."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class CGResult:
    """The outcome of a CG solve.

    Attributes:
        x: the approximate solution (the natural gradient when A is the Fisher).
        iters: iterations run (≤ the budget; fewer when the residual tolerance was met).
        residual: the final relative residual ‖b − A x‖ / ‖b‖, from the CG recursion.
    """

    x: torch.Tensor
    iters: int
    residual: float


def conjugate_gradient(Avp: MatVec, b: torch.Tensor, iters: int = 10, residual_tol: float = 1e-10) -> CGResult:
    r"""Solve A x = b for symmetric positive-definite A, starting from x₀ = 0.

    Standard CG (Hestenes & Stiefel; Nocedal & Wright Alg. 5.2) run for at most ``iters``
    iterations, stopping early once the relative residual ‖r‖/‖b‖ < ``residual_tol``.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    p = b.clone()
    b_norm = float(b.norm())
    if b_norm == 0.0:
        return CGResult(x, 0, 0.0)
    rr = torch.dot(r, r)
    done = 0
    for i in range(iters):
        if float(rr.sqrt()) / b_norm < residual_tol:
            break
        Ap = Avp(p)
        alpha = rr / torch.dot(p, Ap)
        x += alpha * p
        r -= alpha * Ap
        rr_new = torch.dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
        done = i + 1
    return CGResult(x, done, float(rr.sqrt()) / b_norm)


class ConjugateGradient:
    """The CG solver of the natural-gradient update, with Tikhonov damping.

    Solves (F + λI) x = g, where F is the Fisher estimate and λ = ``damping``.

    Args:
        iters: maximum CG iterations (``cg_iters``; TRPO paper and Spinning Up: 10).
        damping: λ ≥ 0 added to the Fisher's diagonal; keeps the system well posed when F is
            rank-deficient (always, with more parameters than samples × action dims).
        residual_tol: stop once ‖r‖/‖g‖ falls below this.
    """

    def __init__(self, iters: int = 10, damping: float = 0.1, residual_tol: float = 1e-10) -> None:
        if not (iters >= 1 and iters == int(iters)):
            raise ValueError(f"iters={iters!r} is invalid: must be an integer ≥ 1 (0 iterations give x = 0)")
        if not damping >= 0:
            raise ValueError(f"damping={damping!r} is invalid: must be ≥ 0 (F + λI must stay positive definite)")
        self.iters = int(iters)
        self.damping = float(damping)
        self.residual_tol = float(residual_tol)

    def damped(self, fvp: MatVec) -> MatVec:
        """v ↦ (F + λI) v."""
        if self.damping == 0.0:
            return fvp
        return lambda v: fvp(v) + self.damping * v

    def __call__(self, fvp: MatVec, g: torch.Tensor) -> CGResult:
        return conjugate_gradient(self.damped(fvp), g, self.iters, self.residual_tol)
