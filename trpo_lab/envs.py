"""Gymnasium environments: id validation, seeded vector envs, running normalisers."""
from __future__ import annotations

import difflib
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv


class UnknownEnvError(ValueError):
    pass


def check_env_id(env_id: str) -> str:
    """Return ``env_id`` if gymnasium knows it; otherwise raise with the closest registered ids."""
    if env_id in gym.registry:
        return env_id
    close = difflib.get_close_matches(env_id, list(gym.registry.keys()), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownEnvError(f"env.id={env_id!r} is not a registered gymnasium environment.{hint}")


def make_vec_env(env_id: str, num_envs: int, kwargs: dict[str, Any] | None = None) -> SyncVectorEnv:
    """``num_envs`` copies of ``env_id`` stepped in-process, with SAME_STEP autoreset.

    With SAME_STEP, a step that ends an episode returns the *first observation of the next
    episode* and puts the true last observation in ``info["final_obs"]``: there is no dummy
    transition to filter out (gymnasium 1.x's default NEXT_STEP mode inserts one), and the
    final observation is there to bootstrap a time-limit truncation from.
    """
    check_env_id(env_id)
    kwargs = dict(kwargs or {})
    return SyncVectorEnv(
        [lambda: gym.make(env_id, **kwargs) for _ in range(num_envs)],
        autoreset_mode=AutoresetMode.SAME_STEP,
    )


class RunningMeanStd:
    """Running mean and variance over a stream of batches (parallel-merge formula, Chan et al.)."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64).reshape(-1, *self.mean.shape)
        b_mean, b_var, b_count = x.mean(0), x.var(0), x.shape[0]
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean = self.mean + delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var = m2 / total
        self.count = total

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean.tolist(), "var": self.var.tolist(), "count": float(self.count)}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.mean = np.asarray(s["mean"], np.float64)
        self.var = np.asarray(s["var"], np.float64)
        self.count = float(s["count"])


class ObservationNormalizer:
    """o ↦ clip((o − μ) / √(σ² + ε), ±clip) with running statistics.

    The statistics are frozen during a rollout and updated once per batch, so that the policy is
    updated on exactly the inputs it acted on.

    Args:
        shape: observation shape.
        enabled: when False, ``normalize`` is the identity (float32 cast).
        clip: clip range after standardisation (default 10).
    """

    def __init__(self, shape: tuple[int, ...], enabled: bool = True, clip: float = 10.0, eps: float = 1e-8) -> None:
        self.enabled = enabled
        self.rms = RunningMeanStd(shape)
        self.clip = clip
        self.eps = eps
        self._refresh()

    def _refresh(self) -> None:
        self._mean = self.rms.mean.astype(np.float32)
        self._inv_std = (1.0 / np.sqrt(self.rms.var + self.eps)).astype(np.float32)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, np.float32)
        if not self.enabled:
            return obs
        return np.clip((obs - self._mean) * self._inv_std, -self.clip, self.clip)

    def update(self, raw_obs: np.ndarray) -> None:
        if self.enabled:
            self.rms.update(raw_obs)
            self._refresh()

    def state_dict(self) -> dict[str, Any]:
        return self.rms.state_dict()

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.rms.load_state_dict(s)
        self._refresh()


class RewardScaler:
    r"""Divide rewards by the running std of the discounted return R_t = γR_{t−1}(1 − done) + r_t.

    The scale is updated once per batch (over all of its returns), then applied to the whole
    batch. As in gymnasium's ``NormalizeReward``, rewards are scaled but not shifted.

    Args:
        num_envs: number of parallel envs (one running return each).
        gamma: the discount of the running return.
        enabled: when False, rewards pass through unchanged.
    """

    def __init__(self, num_envs: int, gamma: float, enabled: bool = True, eps: float = 1e-8) -> None:
        self.enabled = enabled
        self.gamma = gamma
        self.eps = eps
        self.rms = RunningMeanStd(())
        self.ret = np.zeros(num_envs, np.float64)

    def scale(self, rewards: np.ndarray, dones: np.ndarray) -> np.ndarray:
        """Scale a ``(T, num_envs)`` block of rewards; ``dones[t]`` ends the return after step t."""
        if not self.enabled:
            return rewards.astype(np.float32)
        returns = np.empty_like(rewards, dtype=np.float64)
        ret = self.ret
        for t in range(rewards.shape[0]):
            ret = self.gamma * ret + rewards[t]
            returns[t] = ret
            ret = ret * (1.0 - dones[t])
        self.ret = ret
        self.rms.update(returns.reshape(-1))
        return (rewards / np.sqrt(self.rms.var + self.eps)).astype(np.float32)

    def state_dict(self) -> dict[str, Any]:
        return {"rms": self.rms.state_dict(), "ret": self.ret.tolist()}

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.rms.load_state_dict(s["rms"])
        self.ret = np.asarray(s["ret"], np.float64)
