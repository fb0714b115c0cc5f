"""Analytic log-prob, entropy, KL and Fisher block against torch.distributions."""
import pytest
import torch
from torch.distributions import Categorical, Independent, Normal, kl_divergence

from trpo_lab.policies import CategoricalPolicy, GaussianPolicy


def _gauss(mean, log_std):
    return Independent(Normal(mean, log_std.exp().expand_as(mean)), 1)


def test_gaussian_matches_torch_distributions():
    torch.manual_seed(0)
    pol = GaussianPolicy(3, 4)
    p = (torch.randn(7, 4), torch.randn(4) * 0.5)
    q = (torch.randn(7, 4), torch.randn(4) * 0.5)
    a = torch.randn(7, 4)
    torch.testing.assert_close(pol.log_prob(p, a), _gauss(*p).log_prob(a))
    torch.testing.assert_close(pol.entropy(p), _gauss(*p).entropy())
    torch.testing.assert_close(pol.kl(p, q), kl_divergence(_gauss(*p), _gauss(*q)))
    torch.testing.assert_close(pol.kl(q, p), kl_divergence(_gauss(*q), _gauss(*p)))


def test_categorical_matches_torch_distributions():
    torch.manual_seed(0)
    pol = CategoricalPolicy(3, 5)
    p, q = (torch.randn(7, 5) * 2,), (torch.randn(7, 5) * 2,)
    a = torch.randint(0, 5, (7,))
    torch.testing.assert_close(pol.log_prob(p, a), Categorical(logits=p[0]).log_prob(a))
    torch.testing.assert_close(pol.entropy(p), Categorical(logits=p[0]).entropy())
    torch.testing.assert_close(pol.kl(p, q), kl_divergence(Categorical(logits=p[0]), Categorical(logits=q[0])))


def test_kl_is_zero_at_identity_and_positive_elsewhere():
    torch.manual_seed(1)
    pol = GaussianPolicy(3, 2)
    p = (torch.randn(5, 2), torch.zeros(2))
    assert torch.allclose(pol.kl(p, p), torch.zeros(5), atol=1e-6)
    q = (p[0] + 0.1, torch.full((2,), 0.2))
    assert (pol.kl(p, q) > 0).all()


def test_sampling_moments_match_distribution():
    torch.manual_seed(2)
    pol = GaussianPolicy(1, 2)
    p = (torch.tensor([[1.0, -2.0]]).expand(200_000, 2), torch.log(torch.tensor([0.5, 2.0])))
    s = pol.sample(p)
    torch.testing.assert_close(s.mean(0), torch.tensor([1.0, -2.0]), atol=0.02, rtol=0)
    torch.testing.assert_close(s.std(0), torch.tensor([0.5, 2.0]), atol=0.02, rtol=0)


def _dense_hessian_of_mean_kl(old, kl_of_params):
    """∇²_d mean_i KL(π_old ‖ π_d) at d = d_old over the flattened distribution parameters, float64."""
    shapes = [t.shape for t in old]
    flat_old = torch.cat([t.reshape(-1) for t in old]).double()

    def f(flat):
        parts, i = [], 0
        for s in shapes:
            n = s.numel()
            parts.append(flat[i : i + n].reshape(s))
            i += n
        return kl_of_params(tuple(parts)).mean()

    return torch.autograd.functional.hessian(f, flat_old)


@pytest.mark.parametrize("kind", ["gaussian", "categorical"])
def test_fisher_block_is_the_hessian_of_the_mean_kl_of_torch_distributions(kind):
    g = torch.Generator().manual_seed(3)
    if kind == "gaussian":
        pol = GaussianPolicy(3, 2)
        old = (torch.randn(5, 2, generator=g), 0.5 * torch.randn(2, generator=g))
        old64 = tuple(t.double() for t in old)
        kl = lambda d: kl_divergence(_gauss(*old64), _gauss(*d))  # noqa: E731
    else:
        pol = CategoricalPolicy(3, 4)
        old = (2 * torch.randn(5, 4, generator=g),)
        kl = lambda d: kl_divergence(Categorical(logits=old[0].double()), Categorical(logits=d[0]))  # noqa: E731
    M = _dense_hessian_of_mean_kl(old, kl)
    block = pol.fisher_block(old)
    for s in range(3):
        u = tuple(torch.randn(t.shape, generator=torch.Generator().manual_seed(s)) for t in old)
        Mu = torch.cat([t.reshape(-1) for t in block(u)])
        expected = M @ torch.cat([t.reshape(-1) for t in u]).double()
        torch.testing.assert_close(Mu, expected.float(), rtol=1e-5, atol=1e-6)
