r"""Fitting the value function V_φ to the batch's GAE value targets.

Each update runs ``epochs`` passes of shuffled minibatches of Adam on the squared error

    L(φ) = mean_{i ∈ minibatch} (V_φ(s_i) − R̂_i)².

Two implementations of the same steps (``CriticFitter(implementation=...)``):

* ``fused`` (default, for a :class:`~trpo_lab.policies.FastPathCritic` such as the
  :class:`~trpo_lab.policies.ValueFunction` MLPs): the parameters, their
  gradient and Adam's moments live in flat buffers for the duration of ``fit``; each step is one
  forward pass, a hand-written backward pass (∂L/∂V = 2(V − R̂)/B, then the MLP's Jᵀ·u from
  :class:`~trpo_lab.nn.MLPLinearization`) and Adam's update as five in-place ops on
  the flat buffers. No autograd graph, no per-parameter optimizer loop (its cost against ``autograd``:
  experiments/throughput/README.md, measured with ``scripts/benchmark.py --update-only --critic-impl``).
* ``autograd``: ``loss.backward()`` and ``torch.optim.Adam.step()``.

Both draw the same ``torch.randperm`` per epoch, apply PyTorch's Adam formula (single-tensor
version, no weight decay, no AMSGrad) and leave the same state in ``self.optimizer`` (a real
``torch.optim.Adam``, which checkpoints save and load); they agree to float rounding
(tests/test_fast_paths.py).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from trpo_lab.metrics import CriticStats
from trpo_lab.nn import MLPLinearization
from trpo_lab.policies import critic_mlp


def explained_variance(pred: torch.Tensor, target: torch.Tensor) -> float:
    """1 − Var[target − pred] / Var[target] (1 is perfect, 0 is no better than a constant)."""
    var = float(target.var())
    return 0.0 if var == 0 else 1.0 - float((target - pred).var()) / var


class CriticFitter:
    """Adam regression of V_φ(s) onto the value targets, ``epochs`` passes of shuffled minibatches.

    Args:
        critic: the value function.
        lr: Adam learning rate (default 1e-3).
        epochs: passes over the batch per update (default 10).
        minibatch_size: samples per Adam step (default 256; the batch size for full-batch steps).
        implementation: ``fused`` (default; falls back to ``autograd`` for a critic without an MLP
            fast path, :func:`~trpo_lab.policies.critic_mlp`) or ``autograd``. Same numbers either
            way, see the module docstring.
    """

    def __init__(
        self,
        critic: nn.Module,
        lr: float = 1e-3,
        epochs: int = 10,
        minibatch_size: int = 256,
        implementation: Literal["fused", "autograd"] = "fused",
    ) -> None:
        if not lr > 0:
            raise ValueError(f"lr={lr!r} is invalid: must be > 0")
        for name, value in (("epochs", epochs), ("minibatch_size", minibatch_size)):
            if not (value >= 1 and value == int(value)):
                raise ValueError(f"{name}={value!r} is invalid: must be an integer ≥ 1")
        if implementation not in ("fused", "autograd"):
            raise ValueError(f"implementation={implementation!r} is invalid: must be fused or autograd")
        self.critic = critic
        self.optimizer = torch.optim.Adam(critic.parameters(), lr=lr)
        self.epochs = int(epochs)
        self.minibatch_size = int(minibatch_size)
        self._layers = critic_mlp(critic)
        self.implementation = implementation if self._layers is not None else "autograd"

    def fit(self, obs: torch.Tensor, targets: torch.Tensor, values_before: torch.Tensor) -> CriticStats:
        ev = explained_variance(values_before, targets)
        if self.implementation == "fused" and self._layers is not None:
            self._fit_fused(obs, targets)
        else:
            self._fit_autograd(obs, targets)
        with torch.no_grad():
            final = float(((self.critic(obs) - targets) ** 2).mean())
        return CriticStats(loss=final, explained_variance=ev)

    def _fit_autograd(self, obs: torch.Tensor, targets: torch.Tensor) -> None:
        n = obs.shape[0]
        for _ in range(self.epochs):
            perm = torch.randperm(n)
            for start in range(0, n, self.minibatch_size):
                idx = perm[start : start + self.minibatch_size]
                loss = ((self.critic(obs[idx]) - targets[idx]) ** 2).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()

    def _fit_fused(self, obs: torch.Tensor, targets: torch.Tensor) -> None:
        r"""The same minibatch Adam steps on flat buffers.

        Adam (PyTorch's single-tensor form), at step t with gradient g:
            m ← m + (1 − β₁)(g − m),   v ← β₂ v + (1 − β₂) g²,
            φ ← φ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε).
        """
        params = list(self.critic.parameters())
        group = self.optimizer.param_groups[0]
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        if group["weight_decay"] or group["amsgrad"] or group["maximize"]:
            return self._fit_autograd(obs, targets)  # options the flat update does not implement
        flat, grad, m, v, step = self._gather(params)
        pv, gv = _views(flat, params), _views(grad, params)
        weights, biases = pv[0::2], pv[1::2]
        grad_w, grad_b = gv[0::2], gv[1::2]
        layers = [(_FlatLinear(w, b), act) for w, b, (_, act) in zip(weights, biases, self._layers)]

        n, mb = obs.shape[0], self.minibatch_size
        targets = targets.reshape(-1)
        for _ in range(self.epochs):
            perm = torch.randperm(n)
            obs_perm, targets_perm = obs[perm], targets[perm]  # one gather per epoch; minibatches are slices
            for start in range(0, n, mb):
                x, y = obs_perm[start : start + mb], targets_perm[start : start + mb]
                net = MLPLinearization(layers, x, snapshot=False)
                dloss_dv = (net.output.squeeze(-1) - y).mul_(2.0 / x.shape[0])  # ∂/∂V of mean (V − R̂)²
                net.vjp(dloss_dv.unsqueeze(-1), grad_w, grad_b)
                step += 1
                m.lerp_(grad, 1.0 - beta1)
                v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                denom = (v.sqrt() / ((1.0 - beta2**step) ** 0.5)).add_(eps)
                flat.addcdiv_(m, denom, value=-lr / (1.0 - beta1**step))
        self._scatter(params, flat, m, v, step)

    def _gather(self, params: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """φ, a gradient buffer and Adam's (m, v, t) as flat tensors, from the module and ``self.optimizer``."""
        flat = torch.cat([p.detach().reshape(-1) for p in params])
        state = [self.optimizer.state.get(p, {}) for p in params]
        if all("exp_avg" in s for s in state):
            m = torch.cat([s["exp_avg"].reshape(-1) for s in state])
            v = torch.cat([s["exp_avg_sq"].reshape(-1) for s in state])
            step = int(float(state[0]["step"]))
        else:
            m, v, step = torch.zeros_like(flat), torch.zeros_like(flat), 0
        return flat, torch.zeros_like(flat), m, v, step

    def _scatter(self, params: list[torch.Tensor], flat: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: int) -> None:
        """Write φ back into the module and (m, v, t) into ``self.optimizer.state`` as ``Adam.step`` leaves them."""
        with torch.no_grad():
            for p, p_new, m_p, v_p in zip(params, _views(flat, params), _views(m, params), _views(v, params)):
                p.copy_(p_new)
                p.grad = None
                self.optimizer.state[p] = {
                    "step": torch.tensor(float(step), dtype=torch.float32),
                    "exp_avg": m_p.clone(),
                    "exp_avg_sq": v_p.clone(),
                }


class _FlatLinear:
    """A ``Linear``'s (weight, bias) as views into the flat parameter buffer, for :class:`MLPLinearization`."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        self.weight, self.bias = weight, bias


def _views(flat: torch.Tensor, params: list[torch.Tensor]) -> list[torch.Tensor]:
    out, start = [], 0
    for p in params:
        out.append(flat[start : start + p.numel()].view(p.shape))
        start += p.numel()
    return out
