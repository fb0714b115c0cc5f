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
    assert stats.kl_predicted == pytest.approx(0.5 * float(expected.double() @ F @ expected.double()), rel=1e-3)
    if rule == "kl_scaled":
        assert stats.kl_predicted == pytest.approx(0.01, rel=1e-5)


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
