"""Fisher-vector products against dense Fisher matrices built independently."""
import pytest
import torch
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector

from trpo_lab.natural.fisher import AnalyticFisher, EmpiricalFisher
from trpo_lab.policies import CategoricalPolicy, GaussianPolicy


def _setup(kind, n=6, seed=0):
    torch.manual_seed(seed)
    if kind == "gaussian":
        pol = GaussianPolicy(3, 2, hidden_sizes=(5,), log_std_init=-0.3)
    else:
        pol = CategoricalPolicy(3, 4, hidden_sizes=(5,))
    with torch.no_grad():
        for p in pol.parameters():  # a non-trivial operating point, away from the near-zero init
            p.add_(0.3 * torch.randn_like(p))
        obs = torch.randn(n, 3)
        act = pol.sample(pol.dist_params(obs))
    return pol, obs, act


def _unflatten(pol, flat):
    out, i = {}, 0
    for name, p in pol.named_parameters():
        out[name] = flat[i : i + p.numel()].reshape(p.shape)
        i += p.numel()
    return out


def dense_kl_hessian(pol, obs):
    """∇²_θ mean KL(π_θold ‖ π_θ) at θ_old, by torch.autograd.functional.hessian."""
    theta0 = parameters_to_vector(pol.parameters()).detach()
    with torch.no_grad():
        old = pol.dist_params(obs)

    def kl_of(theta):
        return pol.kl(old, functional_call(pol, _unflatten(pol, theta), (obs,))).mean()

    return torch.autograd.functional.hessian(kl_of, theta0)


def dense_empirical_fisher(pol, obs, act):
    """(1/N) Σ_i s_i s_iᵀ with s_i from one autograd.grad per sample."""
    rows = []
    for i in range(obs.shape[0]):
        lp = pol.log_prob(pol.dist_params(obs[i : i + 1]), act[i : i + 1]).sum()
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(lp, list(pol.parameters()))]))
    S = torch.stack(rows)
    return S.T @ S / obs.shape[0]


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
@pytest.mark.parametrize(
    "estimator, dense",
    [(AnalyticFisher, lambda pol, obs, act: dense_kl_hessian(pol, obs)), (EmpiricalFisher, dense_empirical_fisher)],
    ids=["analytic-vs-kl-hessian", "empirical-vs-score-outer-products"],
)
def test_fvp_matches_dense_fisher(kind, estimator, dense):
    pol, obs, act = _setup(kind)
    F = dense(pol, obs, act)
    fvp = estimator().build(pol, obs, act)
    for s in range(3):
        v = torch.randn(F.shape[0], generator=torch.Generator().manual_seed(s))
        torch.testing.assert_close(fvp(v), F @ v, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_analytic_and_empirical_agree_in_expectation(kind):
    """E_a[s sᵀ] = KL Hessian: with many sampled actions per state the two estimates converge."""
    pol, obs, _ = _setup(kind, n=3)
    reps = 20000
    obs_rep = obs.repeat(reps, 1)
    with torch.no_grad():
        act_rep = pol.sample(pol.dist_params(obs_rep))
    v = torch.randn(sum(p.numel() for p in pol.parameters()), generator=torch.Generator().manual_seed(0))
    exact = AnalyticFisher().build(pol, obs, None)(v)
    emp = EmpiricalFisher().build(pol, obs_rep, act_rep)(v)
    assert float((emp - exact).norm() / exact.norm()) < 0.05


def test_subsample_is_fixed_within_one_build():
    pol, obs, act = _setup("gaussian", n=40)
    torch.manual_seed(5)
    fvp = AnalyticFisher(subsample=0.25).build(pol, obs, act)
    v = torch.randn(sum(p.numel() for p in pol.parameters()))
    torch.testing.assert_close(fvp(v), fvp(v))  # same subset on every product
    # it is the dense Fisher of *some* 10-state subset: recover the subset from the RNG
    torch.manual_seed(5)
    idx = torch.randperm(40)[:10]
    torch.testing.assert_close(fvp(v), dense_kl_hessian(pol, obs[idx]) @ v, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("frac", [0.0, -0.1, 1.5])
def test_bad_subsample_fraction_is_rejected(frac):
    with pytest.raises(ValueError, match="algo.fisher.subsample"):
        AnalyticFisher(subsample=frac)
