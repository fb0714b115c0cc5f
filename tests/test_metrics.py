"""The accounting across updates, the paired difference and the normaliser shift, against hand values
and torch.distributions."""
import math

import numpy as np
import pytest
import torch
from torch.distributions import Independent, Normal, kl_divergence

from trpo_lab.envs import ObservationNormalizer
from trpo_lab.metrics import MonotonicTracker, PairedDifference, bound_terms, normalizer_kl_shift
from trpo_lab.policies import GaussianPolicy


def test_return_accounting_by_hand():
    m = MonotonicTracker(collapse_share=0.5)
    # update k moved the batch return from returns[k] to returns[k+1]
    returns = (10.0, 20.0, 15.0, 30.0, 12.0, 13.0)
    out = [m.record_returns(a, b) for a, b in zip(returns[:-1], returns[1:])]
    assert [o["return/delta"] for o in out] == [10.0, -5.0, 15.0, -18.0, 1.0]
    # collapse: −18 > 0.5·30 (best so far); −5 < 0.5·20
    assert out[-1]["monotonic/collapses"] == 1.0
    assert out[-1]["monotonic/worst_drop"] == -18.0
    assert out[-1]["return/best"] == 30.0
    unknown = m.record_returns(13.0, math.nan)  # no episode ended in the next batch
    assert math.isnan(unknown["return/delta"]) and unknown["monotonic/worst_drop"] == -18.0


def test_paired_outcomes_are_counted_only_when_resolved():
    m = MonotonicTracker()
    assert m.record_outcome(None)["monotonic/improved_fraction"] is None  # nothing resolved yet
    for outcome in (1, 0, -1, 1, None, 0, 1):
        out = m.record_outcome(outcome)
    assert (out["monotonic/improved"], out["monotonic/worsened"], out["monotonic/resolved"]) == (3.0, 1.0, 4.0)
    assert out["monotonic/improved_fraction"] == pytest.approx(3 / 4)


def test_paired_difference_by_hand():
    # d = [1, 0, 2]: mean 1, sd 1, SE 1/√3 ≈ 0.577 < mean < 2·SE ≈ 1.155: unresolved
    p = PairedDifference.of([1.0, 2.0, 3.0], [2.0, 2.0, 5.0])
    assert p.improvement == pytest.approx(1.0) and p.improvement_se == pytest.approx(1 / math.sqrt(3))
    assert p.outcome == 0
    # independent SE: √((s²_old + s²_new) / 3) with the ddof-1 variances 1 and 3
    var_old, var_new = 1.0, float(np.var([2.0, 2.0, 5.0], ddof=1))
    assert var_new == pytest.approx(3.0)
    assert p.independent_se == pytest.approx(math.sqrt((var_old + var_new) / 3))
    # d = [1, 1.1, 0.9]: mean 1, SE 0.1/√3: improved; and the mirror image is worsened
    assert PairedDifference.of([0.0, 0.0, 0.0], [1.0, 1.1, 0.9]).outcome == 1
    assert PairedDifference.of([1.0, 1.1, 0.9], [0.0, 0.0, 0.0]).outcome == -1
    with pytest.raises(ValueError, match="≥ 2 episodes"):
        PairedDifference.of([1.0], [2.0])


def test_bound_terms_by_hand():
    # ε = 2, γ = 0.9: C = 4·2·0.9 / 0.01 = 720; gain = 0.005 / 0.1 = 0.05; 0.05 − 720·0.001 = −0.67
    b = bound_terms(epsilon=2.0, gamma=0.9, ratio_advantage_mean=0.005, kl_max=0.001)
    assert b["bound/C"] == pytest.approx(720.0)
    assert b["bound/surrogate_gain"] == pytest.approx(0.05)
    assert b["bound/penalised_surrogate"] == pytest.approx(-0.67)


def test_normalizer_kl_shift_matches_torch_distributions():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    pol = GaussianPolicy(3, 2, hidden_sizes=(8,), log_std_init=-0.5)
    with torch.no_grad():
        for p in pol.parameters():  # away from the near-constant initial output
            p.add_(0.5 * torch.randn_like(p))
    before = ObservationNormalizer((3,))
    before.update(rng.normal(0.0, 1.0, (50, 3)))
    after = ObservationNormalizer((3,))
    after.load_state_dict(before.state_dict())
    after.update(rng.normal(2.0, 3.0, (100, 3)))  # the next batch moves the statistics
    raw = rng.normal(1.0, 2.0, (40, 3)).astype(np.float32)

    def dist(norm):
        mean_b = torch.as_tensor(before.rms.mean if norm is before else after.rms.mean, dtype=torch.float64)
        var_b = torch.as_tensor(before.rms.var if norm is before else after.rms.var, dtype=torch.float64)
        obs = ((torch.as_tensor(raw, dtype=torch.float64) - mean_b) / torch.sqrt(var_b + 1e-8)).clamp(-10, 10)
        with torch.no_grad():
            mu, log_std = pol.dist_params(obs.float())
        return Independent(Normal(mu.double(), log_std.detach().exp().double().expand_as(mu)), 1)

    kl = kl_divergence(dist(before), dist(after))
    mean, mx = normalizer_kl_shift(pol, raw, before, after)
    assert mean == pytest.approx(float(kl.mean()), rel=1e-4)
    assert mx == pytest.approx(float(kl.max()), rel=1e-4)
    assert mean > 1e-3  # a real shift
