"""Conjugate gradient against torch.linalg.solve."""
import pytest
import torch

from trpo_lab.natural.cg import ConjugateGradient, conjugate_gradient


def _spd(n, cond=50.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    eig = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=torch.float64)
    return q @ torch.diag(eig) @ q.T, torch.randn(n, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cg_converges_to_linalg_solve(seed):
    A, b = _spd(20, seed=seed)
    res = conjugate_gradient(lambda v: A @ v, b, iters=100, residual_tol=1e-12)
    torch.testing.assert_close(res.x, torch.linalg.solve(A, b), rtol=1e-8, atol=1e-10)
    assert res.iters <= 25  # n = 20 in exact arithmetic; early stop must have happened
    true_resid = float((b - A @ res.x).norm() / b.norm())
    assert res.residual == pytest.approx(true_resid, abs=1e-10)


def test_cg_truncated_reports_its_residual():
    A, b = _spd(30, cond=1e4, seed=3)
    res = conjugate_gradient(lambda v: A @ v, b, iters=3, residual_tol=0.0)
    assert res.iters == 3
    true_resid = float((b - A @ res.x).norm() / b.norm())
    assert res.residual == pytest.approx(true_resid, rel=1e-6)
    assert res.residual > 1e-3  # not converged (CG may even raise ‖r‖: it minimises the A-norm of the error)


def test_damped_solver_solves_shifted_system():
    A, b = _spd(10, seed=4)
    solver = ConjugateGradient(iters=50, damping=0.3, residual_tol=1e-12)
    res = solver(lambda v: A @ v, b)
    torch.testing.assert_close(res.x, torch.linalg.solve(A + 0.3 * torch.eye(10, dtype=A.dtype), b))


@pytest.mark.parametrize("kwargs, named", [({"iters": 0}, "iters=0"), ({"iters": 2.5}, "iters=2.5"),
                                           ({"damping": -0.1}, "damping=-0.1")])
def test_solver_rejects_bad_settings_naming_the_argument(kwargs, named):
    with pytest.raises(ValueError, match=named + " is invalid"):
        ConjugateGradient(**kwargs)


@pytest.mark.parametrize("iters", [1, 2, 3, 5])
def test_every_cg_iterate_from_zero_has_gx_equal_to_xAx(iters):
    """For x₀ = 0, x_k minimises ½xᵀAx − gᵀx over a Krylov space that contains x_k, so gᵀx_k = x_kᵀAx_k
    exactly whether or not CG has converged: logging both would log one number twice."""
    gen = torch.Generator().manual_seed(3)
    M = torch.randn(12, 12, generator=gen, dtype=torch.float64)
    A = M @ M.T + 0.1 * torch.eye(12, dtype=torch.float64)
    g = torch.randn(12, generator=gen, dtype=torch.float64)
    res = conjugate_gradient(lambda v: A @ v, g, iters=iters, residual_tol=0.0)
    assert res.residual > 1e-3  # not converged
    assert float(g @ res.x) == pytest.approx(float(res.x @ A @ res.x), rel=1e-10)
