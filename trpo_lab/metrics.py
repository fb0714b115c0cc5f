"""Per-update statistics and the monotonic-improvement accounting across updates.

Every update returns a :class:`PolicyUpdateStats` with the same fields for every variant; a
field that does not apply to a variant takes its natural value (``npg`` never backtracks:
``line_search/backtracks`` is 0). ``to_dict`` gives the ``/``-sectioned metric keys of
DESIGN.md §3.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    from trpo_lab.envs import ObservationNormalizer
    from trpo_lab.policies import Policy


def _key(name: str) -> Any:
    return field(metadata={"key": name})


def _as_dict(obj: Any) -> dict[str, Any]:
    return {f.metadata["key"]: getattr(obj, f.name) for f in fields(obj)}


@dataclass(frozen=True)
class PolicyUpdateStats:
    """What one natural-gradient update did, measured on its own batch."""

    surrogate_expected: float = _key("step/surrogate_expected")  # gᵀΔ for the step taken
    surrogate_actual: float = _key("step/surrogate_actual")  # L(θ_new) − L(θ_old)
    improvement_ratio: float = _key("step/improvement_ratio")  # actual / expected (0 if expected = 0)
    kl_predicted: float = _key("step/kl_predicted")  # ½ΔᵀFΔ, F undamped: the model of the KL measured
    kl_mean: float = _key("step/kl_mean")  # mean over states of KL(π_old, π_new)
    kl_max: float = _key("step/kl_max")
    kl_over_delta: float = _key("step/kl_over_delta")  # the constrained KL statistic (mean or max) / δ
    constraint_violated: float = _key("step/constraint_violated")  # 1 if the constrained KL stat > δ
    norm: float = _key("step/norm")  # ‖Δ‖ for the step taken
    fraction: float = _key("step/fraction")  # βʲ; 0 for a rejected or skipped step
    skipped: float = _key("step/skipped")  # 1 if no step could be formed (see skipped_reason)
    skipped_reason: str = _key("step/skipped_reason")
    backtracks: float = _key("line_search/backtracks")
    accepted: float = _key("line_search/accepted")
    cg_residual: float = _key("cg/residual")  # ‖g − (F+λI)x‖ / ‖g‖
    cg_iters: float = _key("cg/iters")
    xFx_damped: float = _key("natural/xFx_damped")  # xᵀ(F+λI)x = gᵀx for CG from x₀ = 0, x ≈ (F+λI)⁻¹g
    xFx: float = _key("natural/xFx")  # xᵀFx, undamped
    damping_share: float = _key("natural/damping_share")  # λ‖x‖² / xᵀ(F+λI)x
    grad_norm: float = _key("natural/grad_norm")  # ‖g‖
    full_step_kl_mean: float = _key("full_step/kl_mean")  # the full KL-scaled step, counterfactual
    full_step_kl_max: float = _key("full_step/kl_max")
    full_step_surrogate_actual: float = _key("full_step/surrogate_actual")
    full_step_violated: float = _key("full_step/constraint_violated")
    entropy: float = _key("policy/entropy")  # mean entropy at θ_new
    std_mean: float = _key("policy/std_mean")  # mean σ (Gaussian); 0 for Categorical
    adv_max_abs: float = _key("bound/epsilon")  # ε = max|A| over the batch, raw (unstandardised) GAE
    ratio_advantage_mean: float = _key("bound/ratio_advantage_mean")  # mean[(π_new/π_old − 1)·A], raw A

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)

    @classmethod
    def for_skipped(cls, reason: str, **measured: float) -> PolicyUpdateStats:
        """An update that took no step: ``skipped`` = 1, the ``measured`` fields, every other number 0."""
        zeros = {f.name: 0.0 for f in fields(cls) if f.type == "float"}
        return cls(**{**zeros, **measured, "skipped": 1.0, "skipped_reason": reason})


@dataclass(frozen=True)
class CriticStats:
    loss: float = _key("critic/loss")  # mean squared error on the batch after fitting
    explained_variance: float = _key("critic/explained_variance")  # 1 − Var[R − V] / Var[R], before fitting

    def to_dict(self) -> dict[str, Any]:
        return _as_dict(self)


def bound_terms(epsilon: float, gamma: float, ratio_advantage_mean: float, kl_max: float) -> dict[str, float]:
    r"""Terms of TRPO's Theorem 1, η(π_new) − η(π_old) ≥ gain − C·D_KL^max, in one unit system.

    All in the units of the raw (unstandardised) GAE advantages A, i.e. of the (scaled) rewards the
    critic sees. The surrogate sums over the discounted state visitation, whose mass is 1/(1−γ):

        gain = mean[(π_new/π_old − 1)·A] / (1 − γ),   ε = max|A|,   C = 4εγ / (1 − γ)²,
        ``bound/penalised_surrogate`` = gain − C·KL_max.

    For γ near 1 it is hugely negative (the bound is vacuous); it is logged, not assumed.
    """
    if gamma >= 1:
        return {"bound/C": math.inf, "bound/surrogate_gain": math.nan, "bound/penalised_surrogate": math.nan}
    C = 4.0 * epsilon * gamma / (1.0 - gamma) ** 2
    gain = ratio_advantage_mean / (1.0 - gamma)
    return {"bound/C": C, "bound/surrogate_gain": gain, "bound/penalised_surrogate": gain - C * kl_max}


@dataclass(frozen=True)
class PairedDifference:
    r"""η(π_new) − η(π_old) from N paired episodes (common random numbers).

    With d_i = R_new,i − R_old,i: ``improvement`` = mean d, ``improvement_se`` = sd(d)/√N (ddof 1),
    ``independent_se`` = √((s²_new + s²_old)/N), the SE two independent evaluations of the same N
    would have; ``outcome`` is 1 (improved) if mean > 2·SE, −1 (worsened) if mean < −2·SE, else 0.
    """

    return_old: float
    return_new: float
    improvement: float
    improvement_se: float
    independent_se: float
    outcome: int

    @classmethod
    def of(cls, returns_old: Sequence[float], returns_new: Sequence[float]) -> PairedDifference:
        old, new = np.asarray(returns_old, np.float64), np.asarray(returns_new, np.float64)
        if old.shape != new.shape or old.size < 2:
            raise ValueError(f"paired evaluation needs ≥ 2 episodes per policy, equally many (got {old.size}, {new.size})")
        d = new - old
        n = d.size
        mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n))
        outcome = 1 if mean > 2 * se else -1 if mean < -2 * se else 0
        indep = math.sqrt((float(new.var(ddof=1)) + float(old.var(ddof=1))) / n)
        return cls(float(old.mean()), float(new.mean()), mean, se, indep, outcome)

    def to_dict(self) -> dict[str, float]:
        return {f"paired/{f.name}": float(getattr(self, f.name)) for f in fields(self)}

    @staticmethod
    def not_measured() -> dict[str, None]:
        """The same keys, null: the update was not measured."""
        return {f"paired/{f.name}": None for f in fields(PairedDifference)}


@dataclass
class MonotonicTracker:
    """Accounting across updates, each attributed to the update it measures.

    * From the paired evaluation (the honest measure): cumulative counts of improved, worsened and
      resolved updates; ``monotonic/improved_fraction`` = improved / resolved (null while none is resolved).
    * From the training-return proxy R̄_k (``return/mean``: the mean raw return of the last M finished
      episodes after batch k, :class:`~trpo_lab.return_window.ReturnWindow`) and ``return/delta`` =
      R̄_{k+1} − R̄_k for update k: collapses (a drop of more than ``collapse_share`` of the best R̄ so
      far), the worst drop, the best R̄. A delta is undefined (NaN) only before the first finished episode
      and on the last update; it is 0 when batch k+1 finished no episode (no new evidence).

    Args:
        collapse_share: a drop of more than this share of the best return so far (in absolute
            value) counts as a collapse (default 0.5).
    """

    collapse_share: float = 0.5
    best: float = -math.inf
    collapses: int = 0
    worst_drop: float = 0.0
    improved: int = 0
    worsened: int = 0
    resolved: int = 0

    def record_returns(self, before: float, after: float) -> dict[str, float]:
        """Update k moved the proxy from ``before`` (R̄_k, after batch k) to ``after`` (R̄_{k+1}); NaN: unknown."""
        self.best = max(self.best, before) if math.isfinite(before) else self.best
        delta = after - before
        if math.isfinite(delta):
            self.worst_drop = min(self.worst_drop, delta)
            if delta < 0 and self.best > -math.inf and -delta > self.collapse_share * abs(self.best):
                self.collapses += 1
        self.best = max(self.best, after) if math.isfinite(after) else self.best
        return {
            "return/delta": delta,
            "monotonic/collapses": float(self.collapses),
            "monotonic/worst_drop": self.worst_drop,
            "return/best": self.best if self.best > -math.inf else math.nan,
        }

    def record_outcome(self, outcome: int | None) -> dict[str, float | None]:
        """Count a paired outcome (1 improved, −1 worsened, 0 unresolved; None: not measured)."""
        if outcome is not None:
            self.improved += outcome == 1
            self.worsened += outcome == -1
            self.resolved += outcome != 0
        return {
            "monotonic/improved": float(self.improved),
            "monotonic/worsened": float(self.worsened),
            "monotonic/resolved": float(self.resolved),
            "monotonic/improved_fraction": self.improved_fraction,
        }

    @property
    def improved_fraction(self) -> float | None:
        return self.improved / self.resolved if self.resolved else None

    def state_dict(self) -> dict[str, Any]:
        return {k.name: getattr(self, k.name) for k in fields(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)


def normalizer_kl_shift(
    policy: Policy, raw_obs: np.ndarray, before: ObservationNormalizer, after: ObservationNormalizer
) -> tuple[float, float]:
    r"""What a change of the observation normaliser's statistics alone does to the policy.

    Mean and max over the raw states s of KL(π_θ(·|n_before(s)) ‖ π_θ(·|n_after(s))), θ fixed.
    """
    with torch.no_grad():
        p = policy.dist_params(torch.from_numpy(before.normalize(raw_obs)))
        q = policy.dist_params(torch.from_numpy(after.normalize(raw_obs)))
        kl = policy.kl(p, q)
    return float(kl.mean()), float(kl.max())
