"""The critic's fused fast path (flat buffers, an analytic MLP backward) against ``loss.backward()`` +
``torch.optim.Adam``, its fallback to autograd for a critic without the protocol, and its argument checks.
No timing is asserted here; speed is measured by scripts/benchmark.py.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from trpo_lab.critic import CriticFitter
from trpo_lab.policies import ValueFunction


# -- critic ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("minibatch, n", [(128, 1000), (256, 2048), (2048, 2048)])
def test_fused_critic_fit_matches_autograd_and_torch_adam(minibatch, n):
    torch.manual_seed(0)
    obs, y = torch.randn(n, 11), 3 * torch.randn(n)
    vf_fused = ValueFunction(11)
    vf_ref = copy.deepcopy(vf_fused)
    fused = CriticFitter(vf_fused, 1e-3, 3, minibatch, implementation="fused")
    ref = CriticFitter(vf_ref, 1e-3, 3, minibatch, implementation="autograd")
    assert fused.implementation == "fused"
    for k in range(2):  # the second fit continues from the Adam state the first left behind
        torch.manual_seed(k)
        s_fused = fused.fit(obs, y, torch.zeros(n))
        torch.manual_seed(k)
        s_ref = ref.fit(obs, y, torch.zeros(n))
        assert s_fused.loss == pytest.approx(s_ref.loss, rel=1e-5)
        for p, q in zip(vf_fused.parameters(), vf_ref.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    sd_f, sd_r = fused.optimizer.state_dict(), ref.optimizer.state_dict()
    assert sd_f["param_groups"] == sd_r["param_groups"]
    for i, st in sd_r["state"].items():
        assert float(sd_f["state"][i]["step"]) == float(st["step"])
        torch.testing.assert_close(sd_f["state"][i]["exp_avg"], st["exp_avg"], rtol=1e-4, atol=1e-7)
        torch.testing.assert_close(sd_f["state"][i]["exp_avg_sq"], st["exp_avg_sq"], rtol=1e-4, atol=1e-9)


def test_fused_critic_continues_from_a_loaded_optimizer_state():
    torch.manual_seed(0)
    obs, y = torch.randn(512, 5), torch.randn(512)
    vf_a = ValueFunction(5)
    a = CriticFitter(vf_a, 1e-3, 2, 64, implementation="autograd")
    a.fit(obs, y, torch.zeros(512))
    vf_b, vf_c = copy.deepcopy(vf_a), copy.deepcopy(vf_a)
    b = CriticFitter(vf_b, 1e-3, 2, 64, implementation="fused")
    c = CriticFitter(vf_c, 1e-3, 2, 64, implementation="autograd")
    b.optimizer.load_state_dict(a.optimizer.state_dict())
    c.optimizer.load_state_dict(a.optimizer.state_dict())
    torch.manual_seed(1)
    b.fit(obs, y, torch.zeros(512))
    torch.manual_seed(1)
    c.fit(obs, y, torch.zeros(512))
    for p, q in zip(vf_b.parameters(), vf_c.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kwargs, named", [
    ({"lr": 0.0}, "lr"), ({"lr": -1e-3}, "lr"), ({"epochs": 0}, "epochs"),
    ({"minibatch_size": 0}, "minibatch_size"), ({"epochs": 2.5}, "epochs"),
    ({"implementation": "jit"}, "implementation"),
])
def test_critic_rejects_bad_settings_naming_the_argument(kwargs, named):
    with pytest.raises(ValueError, match=f"^{named}=") as e:
        CriticFitter(ValueFunction(3, (8,)), **kwargs)
    assert "\n" not in str(e.value)


def test_critic_that_is_not_a_plain_mlp_falls_back_to_autograd():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(3, 1)

        def forward(self, x):
            return self.lin(x).squeeze(-1)

    fitter = CriticFitter(Odd(), implementation="fused")
    assert fitter.implementation == "autograd"
    fitter.fit(torch.randn(64, 3), torch.randn(64), torch.zeros(64))


class NetButNoProtocol(nn.Module):
    """Has a plain-MLP ``net`` but does not say V(s) = net(s) (no ``value_mlp``): here V = 2·net(s)."""

    def __init__(self):
        super().__init__()
        self.net = ValueFunction(3, (8,)).net

    def forward(self, x):
        return 2.0 * self.net(x).squeeze(-1)


class ValueWithOffset(ValueFunction):
    """A parameter besides the MLP: the flat fused fit would not know it."""

    def __init__(self):
        super().__init__(3, (8,))
        self.offset = nn.Parameter(torch.zeros(()))

    def forward(self, obs):
        return super().forward(obs) + self.offset


@pytest.mark.parametrize("make, fused", [(lambda: ValueFunction(3, (8,)), True), (NetButNoProtocol, False),
                                         (ValueWithOffset, False)])
def test_the_fused_critic_fit_is_chosen_by_the_protocol_and_matches_autograd(make, fused):
    torch.manual_seed(0)
    critic = make()
    ref = copy.deepcopy(critic)
    fitter = CriticFitter(critic, 1e-2, 2, 16, implementation="fused")
    assert fitter.implementation == ("fused" if fused else "autograd")
    obs, y = torch.randn(64, 3), torch.randn(64)
    torch.manual_seed(1)
    fitter.fit(obs, y, torch.zeros(64))
    torch.manual_seed(1)
    CriticFitter(ref, 1e-2, 2, 16, implementation="autograd").fit(obs, y, torch.zeros(64))
    for p, q in zip(critic.parameters(), ref.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
