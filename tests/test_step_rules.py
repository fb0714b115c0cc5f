"""Step rules and line search on analytic models."""
import math

import pytest
import torch

from trpo_lab.natural.cg import conjugate_gradient
from trpo_lab.natural.line_search import BacktrackingLineSearch, Candidate, NoLineSearch
from trpo_lab.natural.step_rules import Curvature, FixedStep, KLScaledStep


@pytest.mark.parametrize("delta", [0.001, 0.01, 0.1])
def test_kl_scaled_step_hits_delta_on_quadratic_model(delta):
    g = torch.Generator().manual_seed(0)
    M = torch.randn(8, 8, generator=g, dtype=torch.float64)
    F = M @ M.T + 0.1 * torch.eye(8, dtype=torch.float64)
    grad = torch.randn(8, generator=g, dtype=torch.float64)
    x = conjugate_gradient(lambda v: F @ v, grad, iters=50, residual_tol=1e-14).x
    xFx = float(x @ F @ x)
    c = KLScaledStep(delta, curvature="undamped")(Curvature(undamped=xFx, damped=xFx + 1.0))
    step = c * x
    assert 0.5 * float(step @ F @ step) == pytest.approx(delta, rel=1e-10)
    # and it is the natural-gradient direction F⁻¹g
    torch.testing.assert_close(step / step.norm(), (torch.linalg.solve(F, grad)) / torch.linalg.solve(F, grad).norm())


def test_fixed_step_is_alpha():
    assert FixedStep(0.3)(Curvature(123.0, 124.0)) == 0.3


def test_kl_scaled_step_uses_the_configured_curvature():
    curv = Curvature(undamped=2.0, damped=8.0)
    assert KLScaledStep(0.01, curvature="undamped")(curv) == pytest.approx(math.sqrt(2 * 0.01 / 2.0))
    assert KLScaledStep(0.01, curvature="damped")(curv) == pytest.approx(math.sqrt(2 * 0.01 / 8.0))
    assert curv.damping_share == pytest.approx(6.0 / 8.0)
    with pytest.raises(ValueError, match="curvature='both' is invalid"):
        KLScaledStep(0.01, curvature="both")


@pytest.mark.parametrize("bad", [{"max_kl": 0.0}, {"max_kl": -0.01}, {"backtrack_coef": 1.0}, {"backtrack_coef": 0.0},
                                 {"max_backtracks": 0}, {"constraint": "median"}])
def test_backtracking_rejects_bad_settings_naming_the_argument(bad):
    ((name, value),) = bad.items()
    with pytest.raises(ValueError, match=f"{name}={value!r} is invalid"):
        BacktrackingLineSearch(**bad)


def _quadratic_problem(kl_curv=2.0, surr_peak=0.5):
    """Along the step: KL(f) = ½·kl_curv·f², surrogate(f) = f − f²/(2·surr_peak) (max at f = surr_peak)."""
    tried = []

    def evaluate(f):
        tried.append(f)
        kl = 0.5 * kl_curv * f * f
        return Candidate(surrogate_improvement=f - f * f / (2 * surr_peak), kl_mean=kl, kl_max=2 * kl)

    return evaluate, tried


def test_backtracking_accepts_first_admissible_fraction():
    # KL ≤ 0.01 needs f ≤ 0.1; surrogate > 0 needs f < 2·surr_peak = 1.0.
    evaluate, tried = _quadratic_problem(kl_curv=2.0, surr_peak=0.5)
    ls = BacktrackingLineSearch(max_kl=0.01, backtrack_coef=0.5, max_backtracks=10)
    res = ls(evaluate, expected_improvement=1.0)
    # fractions 1, .5, .25, .125, .0625: the first with ½·2·f² ≤ 0.01 is f = 0.0625
    assert tried == [1.0, 0.5, 0.25, 0.125, 0.0625]
    assert res.accepted and res.fraction == 0.0625 and res.backtracks == 4


def test_backtracking_uses_max_kl_when_asked():
    # kl_mean = f², kl_max = 2f². With δ = 0.005: mean needs f ≤ 0.0707 → 0.0625; max needs f ≤ 0.05 → 0.03125.
    evaluate, _ = _quadratic_problem(kl_curv=2.0, surr_peak=0.5)
    by_max = BacktrackingLineSearch(max_kl=0.005, backtrack_coef=0.5, max_backtracks=10, constraint="max")
    by_mean = BacktrackingLineSearch(max_kl=0.005, backtrack_coef=0.5, max_backtracks=10, constraint="mean")
    assert by_max(evaluate, 1.0).fraction == 0.03125
    assert by_mean(evaluate, 1.0).fraction == 0.0625


def test_backtracking_rejects_when_surrogate_never_improves():
    def evaluate(f):
        return Candidate(surrogate_improvement=-f, kl_mean=0.0, kl_max=0.0)

    res = BacktrackingLineSearch(max_kl=0.01, backtrack_coef=0.8, max_backtracks=7)(evaluate, 1.0)
    assert not res.accepted and res.fraction == 0.0 and res.backtracks == 7


def test_accept_ratio_requires_enough_of_the_expected_improvement():
    # actual = 0.3·f while expected = f: ratio 0.3 everywhere
    def evaluate(f):
        return Candidate(0.3 * f, 0.0, 0.0)

    assert BacktrackingLineSearch(max_kl=1, accept_ratio=0.2)(evaluate, 1.0).accepted
    assert not BacktrackingLineSearch(max_kl=1, accept_ratio=0.5)(evaluate, 1.0).accepted


def test_no_line_search_takes_the_full_step_unchecked():
    called = []
    res = NoLineSearch()(lambda f: called.append(f), 1.0)
    assert res.accepted and res.fraction == 1.0 and res.backtracks == 0


def test_step_statistics_variants_compose_to_their_curvature(compose):
    from trpo_lab.train import build_update

    def update(variant):
        return build_update(compose(["experiment=step_statistics", f"experiment/step_variant={variant}"]).algo)

    assert update("trpo").step_rule.curvature == "damped"
    undamped = update("trpo_undamped")
    assert undamped.step_rule.curvature == "undamped" and undamped.full_step is undamped.step_rule
    assert isinstance(update("npg_a0.7").step_rule, FixedStep) and update("npg_a0.7").step_rule.step_size == 0.7
