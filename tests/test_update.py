"""The composed natural-gradient update against a dense, independent computation."""
import math

import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence
from torch.nn.utils import parameters_to_vector

from trpo_lab.natural.cg import ConjugateGradient
from trpo_lab.natural.fisher import AnalyticFisher
from trpo_lab.natural.line_search import BacktrackingLineSearch, NoLineSearch
from trpo_lab.natural.step_rules import FixedStep, KLScaledStep
from trpo_lab.natural.update import NaturalGradientUpdate
from trpo_lab.policies import GaussianPolicy

from helpers import dense_kl_hessian


def _batch(seed=0, n=32):
    torch.manual_seed(seed)
    pol = GaussianPolicy(3, 2, hidden_sizes=(6,), log_std_init=-0.5)
    obs = torch.randn(n, 3)
    with torch.no_grad():
        dist = pol.dist_params(obs)
        act = pol.sample(dist)
        lp = pol.log_prob(dist, act)
    adv = torch.randn(n)
    return pol, obs, act, lp, adv


def _update(step_rule, line_search, delta=0.01, damping=0.1, iters=200, **kw):
    return NaturalGradientUpdate(
        AnalyticFisher(), ConjugateGradient(iters=iters, damping=damping, residual_tol=1e-12),
        step_rule, line_search, max_kl=delta, **kw,
    )


def dense_natural_step(pol, obs, act, lp, adv, damping, delta=None, alpha=None):
    """θ_new − θ_old from a dense Fisher and torch.linalg.solve (float64)."""
    a = (adv - adv.mean()) / (adv.std() + 1e-8)
    surr = (torch.exp(pol.log_prob(pol.dist_params(obs), act) - lp) * a).mean()
    g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(surr, list(pol.parameters()))]).double()
    F = dense_kl_hessian(pol, obs).double() + damping * torch.eye(g.numel(), dtype=torch.float64)
    x = torch.linalg.solve(F, g)
    c = alpha if alpha is not None else math.sqrt(2 * delta / float(x @ F @ x))
    return (c * x).float(), g, F


@pytest.mark.parametrize("rule", ["kl_scaled", "fixed"])
def test_unchecked_step_matches_dense_solve(rule):
    pol, obs, act, lp, adv = _batch()
    theta0 = parameters_to_vector(pol.parameters()).detach().clone()
    expected, g, F = dense_natural_step(pol, obs, act, lp, adv, damping=0.1, delta=0.01, alpha=0.05)
    if rule == "kl_scaled":
        expected, _, _ = dense_natural_step(pol, obs, act, lp, adv, damping=0.1, delta=0.01)
    step_rule = KLScaledStep(0.01) if rule == "kl_scaled" else FixedStep(0.05)
    stats = _update(step_rule, NoLineSearch())(pol, obs, act, lp, adv)
    delta_theta = parameters_to_vector(pol.parameters()).detach() - theta0
    torch.testing.assert_close(delta_theta, expected, rtol=1e-3, atol=1e-6)
    assert stats.accepted == 1 and stats.fraction == 1.0 and stats.backtracks == 0
    assert stats.surrogate_expected == pytest.approx(float(g.float() @ expected), rel=1e-3)
    e = expected.double()
    F_undamped = F - 0.1 * torch.eye(F.shape[0], dtype=torch.float64)
    assert stats.kl_predicted == pytest.approx(0.5 * float(e @ F_undamped @ e), rel=1e-3)
    if rule == "kl_scaled":  # damped curvature: ½Δᵀ(F+λI)Δ = δ, so the undamped model is δ − ½λ‖Δ‖²
        assert stats.kl_predicted == pytest.approx(0.01 - 0.5 * 0.1 * float(e @ e), rel=1e-4)


def test_measured_kl_matches_torch_distributions_in_both_directions():
    for direction in ("old_new", "new_old"):
        pol, obs, act, lp, adv = _batch(seed=1)
        with torch.no_grad():
            m0, ls0 = pol.dist_params(obs)
            old = Independent(Normal(m0, ls0.exp().expand_as(m0)), 1)
        stats = _update(KLScaledStep(0.05), NoLineSearch(), kl_direction=direction)(pol, obs, act, lp, adv)
        with torch.no_grad():
            m1, ls1 = pol.dist_params(obs)
            new = Independent(Normal(m1, ls1.exp().expand_as(m1)), 1)
        kl = kl_divergence(old, new) if direction == "old_new" else kl_divergence(new, old)
        assert stats.kl_mean == pytest.approx(float(kl.mean()), rel=1e-4)
        assert stats.kl_max == pytest.approx(float(kl.max()), rel=1e-4)


def test_line_search_rejection_restores_theta_old_exactly():
    pol, obs, act, lp, adv = _batch(seed=2)
    theta0 = parameters_to_vector(pol.parameters()).detach().clone()
    # a huge fixed step and a tiny trust region: no candidate within 3 backtracks is admissible
    upd = _update(FixedStep(10.0), BacktrackingLineSearch(max_kl=1e-9, backtrack_coef=0.5, max_backtracks=3), delta=0.01)
    stats = upd(pol, obs, act, lp, adv)
    assert torch.equal(parameters_to_vector(pol.parameters()).detach(), theta0)
    assert stats.accepted == 0 and stats.fraction == 0 and stats.backtracks == 3
    assert stats.kl_mean == 0 and stats.surrogate_actual == 0 and stats.norm == 0
    assert stats.full_step_kl_mean > 1e-9  # the counterfactual full step is still measured


def test_trpo_step_satisfies_trust_region_and_improves():
    pol, obs, act, lp, adv = _batch(seed=3, n=256)
    stats = _update(KLScaledStep(0.01), BacktrackingLineSearch(max_kl=0.01), iters=10)(pol, obs, act, lp, adv)
    assert stats.accepted == 1
    assert stats.kl_mean <= 0.01 and stats.surrogate_actual > 0
    assert stats.fraction == pytest.approx(0.8 ** stats.backtracks)
    assert stats.constraint_violated == 0


def test_non_finite_advantages_skip_the_update():
    pol, obs, act, lp, adv = _batch(seed=4)
    adv[3] = float("nan")
    theta0 = parameters_to_vector(pol.parameters()).detach().clone()
    stats = _update(KLScaledStep(0.01), BacktrackingLineSearch())(pol, obs, act, lp, adv)
    assert stats.skipped == 1 and "non-finite" in stats.skipped_reason
    assert torch.equal(parameters_to_vector(pol.parameters()).detach(), theta0)
    assert all(math.isfinite(v) for v in stats.to_dict().values() if isinstance(v, float))


def test_every_variant_reports_the_same_keys():
    keys = []
    for rule, ls in [(FixedStep(0.1), NoLineSearch()), (KLScaledStep(0.01), NoLineSearch()),
                     (KLScaledStep(0.01), BacktrackingLineSearch())]:
        pol, obs, act, lp, adv = _batch(seed=5)
        keys.append(set(_update(rule, ls)(pol, obs, act, lp, adv).to_dict()))
    assert keys[0] == keys[1] == keys[2]


class _ScaledFisher:
    """F·v = s·v: a Fisher whose curvature is positive, zero, negative or NaN as asked."""

    def __init__(self, s: float) -> None:
        self.s = s

    def build(self, policy, obs, actions):
        return lambda v: self.s * v


@pytest.mark.parametrize("scale", [-1.0, float("nan")])
def test_bad_curvature_is_reported_with_its_value_and_no_step_is_taken(scale):
    pol, obs, act, lp, adv = _batch(seed=6)
    theta0 = parameters_to_vector(pol.parameters()).detach().clone()
    # damping 0: F + λI = s·I, so xᵀFx = gᵀg/s is negative for s = −1 and NaN for s = NaN
    upd = NaturalGradientUpdate(_ScaledFisher(scale), ConjugateGradient(iters=5, damping=0.0), KLScaledStep(0.01),
                                NoLineSearch())
    stats = upd(pol, obs, act, lp, adv)
    assert stats.skipped == 1 and "xᵀFx = " in stats.skipped_reason
    assert ("-" in stats.skipped_reason) if scale < 0 else ("nan" in stats.skipped_reason)
    assert torch.equal(parameters_to_vector(pol.parameters()).detach(), theta0)
    assert all(math.isfinite(v) for v in stats.to_dict().values() if isinstance(v, float))


def _dense_step(curvature, delta=0.01, damping=0.1, constraint="mean"):
    """Take one unchecked KL-scaled step with only 3 CG iterations; return (Δ, dense undamped F, stats)."""
    pol, obs, act, lp, adv = _batch(seed=7)
    theta0 = parameters_to_vector(pol.parameters()).detach().clone()
    F = dense_kl_hessian(pol, obs).double()
    upd = _update(KLScaledStep(delta, curvature=curvature), NoLineSearch(), delta=delta, damping=damping, iters=3,
                  constraint=constraint)
    stats = upd(pol, obs, act, lp, adv)
    step = (parameters_to_vector(pol.parameters()).detach() - theta0).double()
    return step, F, stats


def test_undamped_curvature_puts_the_dense_quadratic_kl_model_at_delta():
    step, F, stats = _dense_step("undamped")
    assert 0.5 * float(step @ F @ step) == pytest.approx(0.01, rel=1e-4)
    assert stats.kl_predicted == pytest.approx(0.5 * float(step @ F @ step), rel=1e-4)


def test_damped_curvature_puts_the_damped_model_at_delta_and_logs_the_damping_share():
    damping = 0.1
    step, F, stats = _dense_step("damped", damping=damping)
    F_damped = F + damping * torch.eye(F.shape[0], dtype=torch.float64)
    assert 0.5 * float(step @ F_damped @ step) == pytest.approx(0.01, rel=1e-4)
    # the undamped model falls short of δ by ½λ‖Δ‖², and kl_predicted is that undamped model
    assert stats.kl_predicted == pytest.approx(0.5 * float(step @ F @ step), rel=1e-4)
    assert stats.kl_predicted < 0.01
    # the damping share is scale-free: λ‖Δ‖² / Δᵀ(F+λI)Δ = λ‖x‖² / xᵀ(F+λI)x
    share = damping * float(step @ step) / float(step @ F_damped @ step)
    assert stats.damping_share == pytest.approx(share, rel=1e-4)
    assert 0 < stats.damping_share < 1


def test_kl_over_delta_follows_the_constraint_statistic():
    _, _, by_mean = _dense_step("damped", constraint="mean")
    _, _, by_max = _dense_step("damped", constraint="max")
    assert by_mean.kl_over_delta == pytest.approx(by_mean.kl_mean / 0.01)
    assert by_max.kl_over_delta == pytest.approx(by_max.kl_max / 0.01)
    assert by_max.kl_max > by_max.kl_mean  # so the two can be told apart


def test_bound_terms_in_raw_advantage_units_by_hand():
    from trpo_lab.metrics import bound_terms

    torch.manual_seed(8)
    pol = GaussianPolicy(1, 1, hidden_sizes=(3,), log_std_init=-0.5)
    obs = torch.tensor([[0.5], [-1.0], [2.0]])
    act = torch.tensor([[0.3], [-0.2], [0.1]])
    adv = torch.tensor([1.0, -2.0, 0.5])  # raw: ε = 2
    with torch.no_grad():
        m0, ls0 = pol.dist_params(obs)
        old = Normal(m0.squeeze(-1), ls0.exp())
    lp = old.log_prob(act.squeeze(-1))
    stats = _update(FixedStep(0.5), NoLineSearch())(pol, obs, act, lp, adv)
    with torch.no_grad():
        m1, ls1 = pol.dist_params(obs)
        new = Normal(m1.squeeze(-1), ls1.exp())
        ratio = (new.log_prob(act.squeeze(-1)) - lp).exp()
        kl_max = float(kl_divergence(old, new).max())
    gamma = 0.9
    gain = float(((ratio - 1) * adv).mean()) / (1 - gamma)  # the visitation has mass 1/(1−γ) = 10
    C = 4 * 2.0 * gamma / (1 - gamma) ** 2  # = 720
    b = bound_terms(stats.adv_max_abs, gamma, stats.ratio_advantage_mean, stats.kl_max)
    assert stats.adv_max_abs == 2.0
    assert b["bound/C"] == pytest.approx(720.0)
    assert b["bound/surrogate_gain"] == pytest.approx(gain, rel=1e-4)
    assert b["bound/penalised_surrogate"] == pytest.approx(gain - C * kl_max, rel=1e-4)
    assert abs(gain) > 1e-3  # the step moved the policy, so the check has something to check
