from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


class CountingEnv(gym.Env):
    """obs = [steps taken in this episode]; reward = that count + 1; terminates after ``term_at`` steps."""

    def __init__(self, term_at: int | None = None):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.term_at = term_at
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        reward = float(self.t + 1)
        self.t += 1
        terminated = self.term_at is not None and self.t >= self.term_at
        return np.array([float(self.t)], np.float32), reward, terminated, False, {}


@pytest.fixture
def compose():
    """compose(overrides) -> DictConfig of conf/train.yaml, via Hydra's compose API."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    def _compose(overrides=(), config_name="train", return_hydra_config=False):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)

    return _compose
