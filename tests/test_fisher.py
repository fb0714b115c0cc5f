"""Fisher-vector products (both estimators, both analytic methods) against dense Fisher matrices built independently.

* the analytic Fisher, JᵀMJ (J by hand for the MLP policies, by torch.func for any other) and double
  backprop, against the dense KL Hessian from ``torch.autograd.functional.hessian`` (float64), and
  against each other on a full-size network where no dense matrix fits;
* the empirical Fisher against per-sample score outer products, and against the analytic one in expectation.
"""
import pytest
import torch
from torch import nn

from trpo_lab.natural.fisher import (
    AnalyticFisher,
    EmpiricalFisher,
    _FuncLinearization,
    _MLPPolicyLinearization,
    kl_hessian_vp,
    linearize_policy,
)
from trpo_lab.policies import CategoricalPolicy, FastPathPolicy, GaussianPolicy

from helpers import dense_kl_hessian, perturbed, small_policy


def _obs_actions(pol, n=12, seed=1):
    obs = torch.randn(n, 3, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    with torch.no_grad():
        act = pol.sample(pol.dist_params(obs)) if hasattr(pol, "sample") else None
    return obs, act


def dense_empirical_fisher(pol, obs, act):
    """(1/N) Σ_i s_i s_iᵀ with s_i from one autograd.grad per sample."""
    rows = []
    for i in range(obs.shape[0]):
        lp = pol.log_prob(pol.dist_params(obs[i : i + 1]), act[i : i + 1]).sum()
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(lp, list(pol.parameters()))]))
    S = torch.stack(rows)
    return S.T @ S / obs.shape[0]


def _assert_products_match(fvp, F, rtol=1e-4, atol=1e-5):
    for s in range(3):
        v = torch.randn(F.shape[0], generator=torch.Generator().manual_seed(s))
        torch.testing.assert_close(fvp(v), (F @ v.to(F.dtype)).float(), rtol=rtol, atol=atol)


# -- the analytic Fisher -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["jmj", "double_backprop"])
@pytest.mark.parametrize(
    "kind, activation",
    [(k, a) for k in ("gaussian", "categorical") for a in ("tanh", "relu", "elu", "softplus")] + [("custom", "tanh")],
)
def test_analytic_fvp_matches_dense_kl_hessian(kind, activation, method):
    """jmj: by hand for the MLP policies; by torch.func (J) and the KL's own Hessian (M) for any other policy."""
    pol = small_policy(kind, activation)
    obs, act = _obs_actions(pol)
    lin = linearize_policy(pol, obs)
    assert isinstance(lin, _FuncLinearization if kind == "custom" else _MLPPolicyLinearization)
    _assert_products_match(AnalyticFisher(method=method).build(pol, obs, act), dense_kl_hessian(pol, obs))


class GaussianByComposition(nn.Module):
    """A policy outside the class tree of trpo_lab.policies that has every fast-path method (by delegation)."""

    discrete = False

    def __init__(self, inner: GaussianPolicy) -> None:
        super().__init__()
        self.inner = inner

    def dist_params(self, obs):
        return self.inner.dist_params(obs)

    forward = dist_params

    def kl(self, p, q):
        return self.inner.kl(p, q)

    def mlp_head(self):
        return self.inner.mlp_head()

    def fisher_block(self, old):
        return self.inner.fisher_block(old)

    def numpy_sampler(self, rng):
        return self.inner.numpy_sampler(rng)


def _variant(kind):
    """Policies at the edges of the fast path, each with the Gaussian's closed-form Fisher block."""
    pol = small_policy("gaussian")
    if kind == "composed":  # the protocol, not the class, decides: the fast path
        return GaussianByComposition(pol)
    if kind == "layernorm_net":  # a net that is no plain MLP: J by torch.func, M still in closed form
        pol.mean_net.insert(1, nn.LayerNorm(5))
    if kind == "extra_parameter":  # a parameter besides the MLP and log σ: the by-hand J would miss it
        pol.temperature = nn.Parameter(torch.ones(()))
    return pol


@pytest.mark.parametrize("kind, by_hand", [("composed", True), ("layernorm_net", False), ("extra_parameter", False)])
def test_the_fast_path_protocol_decides_the_linearization(kind, by_hand):
    pol = _variant(kind)
    obs, act = _obs_actions(pol)
    assert isinstance(pol, FastPathPolicy)
    assert isinstance(linearize_policy(pol, obs), _MLPPolicyLinearization if by_hand else _FuncLinearization)
    _assert_products_match(AnalyticFisher(method="jmj").build(pol, obs, act), dense_kl_hessian(pol, obs))


def test_m_in_closed_form_only_for_a_policy_with_a_fisher_block(monkeypatch):
    """M comes from ``fisher_block`` when the policy has one, else from the Hessian of its own ``kl``; both are M."""
    pol, custom = small_policy("gaussian"), small_policy("custom")
    calls = []
    real = GaussianPolicy.fisher_block
    monkeypatch.setattr(GaussianPolicy, "fisher_block", lambda self, old: calls.append(1) or real(self, old))
    obs = torch.randn(6, 3)
    for p in (pol, custom):
        with torch.no_grad():
            old = tuple(t.detach() for t in p.dist_params(obs))
        u = tuple(torch.randn_like(t) for t in old)
        expected = torch.func.jvp(torch.func.grad(lambda d: p.kl(old, d).mean()), (old,), (u,))[1]
        for got, want in zip(kl_hessian_vp(p, old)(u), expected):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert not isinstance(custom, FastPathPolicy) and calls == [1]


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_jmj_equals_double_backprop_on_a_full_size_batch(kind):
    """The training-size case (64×64 MLP, 2048 states), where a dense Hessian is too big to form."""
    torch.manual_seed(0)
    pol = (GaussianPolicy(11, 3) if kind == "gaussian" else CategoricalPolicy(11, 5))
    perturbed(pol, 0.05)
    obs = torch.randn(2048, 11)
    jmj = AnalyticFisher(method="jmj").build(pol, obs, None)
    ref = AnalyticFisher(method="double_backprop").build(pol, obs, None)
    for s in range(3):
        v = torch.randn(sum(p.numel() for p in pol.parameters()), generator=torch.Generator().manual_seed(s))
        a, b = jmj(v), ref(v)
        assert float((a - b).norm() / b.norm()) < 1e-5


@pytest.mark.parametrize("method", ["jmj", "double_backprop"])
def test_subsample_is_the_dense_fisher_of_the_states_drawn_once_per_build(method):
    pol = small_policy("gaussian")
    obs = torch.randn(40, 3)
    torch.manual_seed(5)
    fvp = AnalyticFisher(subsample=0.25, method=method).build(pol, obs, None)
    v = torch.randn(sum(p.numel() for p in pol.parameters()))
    torch.testing.assert_close(fvp(v), fvp(v))  # same subset on every product
    torch.manual_seed(5)  # recover the 10-state subset from the RNG
    idx = torch.randperm(40)[:10]
    torch.testing.assert_close(fvp(v), (dense_kl_hessian(pol, obs[idx]) @ v.double()).float(), rtol=1e-4, atol=1e-5)


def test_fvp_is_unaffected_by_later_parameter_changes():
    """The line search overwrites θ after the Fisher is built; F must stay the Fisher at θ_old."""
    pol = small_policy("gaussian")
    obs, _ = _obs_actions(pol)
    F = dense_kl_hessian(pol, obs)
    fvp = AnalyticFisher(method="jmj").build(pol, obs, None)
    with torch.no_grad():
        for p in pol.parameters():
            p.mul_(1.7)
    _assert_products_match(fvp, F)


# -- the empirical Fisher --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_empirical_fvp_matches_score_outer_products(kind):
    pol = small_policy(kind, hidden=(5,))
    obs, act = _obs_actions(pol, n=6)
    _assert_products_match(EmpiricalFisher().build(pol, obs, act), dense_empirical_fisher(pol, obs, act))


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_analytic_and_empirical_agree_in_expectation(kind):
    """E_a[s sᵀ] = KL Hessian: with many sampled actions per state the two estimates converge."""
    pol = small_policy(kind, hidden=(5,))
    obs, _ = _obs_actions(pol, n=3)
    reps = 20000
    obs_rep = obs.repeat(reps, 1)
    with torch.no_grad():
        act_rep = pol.sample(pol.dist_params(obs_rep))
    v = torch.randn(sum(p.numel() for p in pol.parameters()), generator=torch.Generator().manual_seed(0))
    exact = AnalyticFisher().build(pol, obs, None)(v)
    emp = EmpiricalFisher().build(pol, obs_rep, act_rep)(v)
    assert float((emp - exact).norm() / exact.norm()) < 0.05


# -- configuration errors --------------------------------------------------------------------------------


@pytest.mark.parametrize("frac", [0.0, -0.1, 1.5])
@pytest.mark.parametrize("estimator", [AnalyticFisher, EmpiricalFisher])
def test_bad_subsample_fraction_is_rejected(estimator, frac):
    with pytest.raises(ValueError, match=f"subsample={frac!r} is invalid"):
        estimator(subsample=frac)


def test_bad_fisher_method_is_rejected():
    with pytest.raises(ValueError, match="method='magic' is invalid"):
        AnalyticFisher(method="magic")
