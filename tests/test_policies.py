"""Analytic log-prob, entropy and KL against torch.distributions."""
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
