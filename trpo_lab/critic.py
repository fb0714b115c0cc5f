"""Fitting the value function V_φ to the batch's GAE value targets."""
from __future__ import annotations

import torch

from trpo_lab.metrics import CriticStats
from trpo_lab.policies import ValueFunction


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
    """

    def __init__(self, critic: ValueFunction, lr: float = 1e-3, epochs: int = 10, minibatch_size: int = 256) -> None:
        if not lr > 0:
            raise ValueError(f"critic.lr={lr} must be > 0")
        if int(epochs) < 1:
            raise ValueError(f"critic.epochs={epochs} must be ≥ 1")
        if int(minibatch_size) < 1:
            raise ValueError(f"critic.minibatch_size={minibatch_size} must be ≥ 1")
        self.critic = critic
        self.optimizer = torch.optim.Adam(critic.parameters(), lr=lr)
        self.epochs = int(epochs)
        self.minibatch_size = int(minibatch_size)

    def fit(self, obs: torch.Tensor, targets: torch.Tensor, values_before: torch.Tensor) -> CriticStats:
        ev = explained_variance(values_before, targets)
        n = obs.shape[0]
        for _ in range(self.epochs):
            perm = torch.randperm(n)
            for start in range(0, n, self.minibatch_size):
                idx = perm[start : start + self.minibatch_size]
                loss = ((self.critic(obs[idx]) - targets[idx]) ** 2).mean()
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        with torch.no_grad():
            final = float(((self.critic(obs) - targets) ** 2).mean())
        return CriticStats(loss=final, explained_variance=ev)
