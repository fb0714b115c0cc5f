"""TRPO learns: deterministic evaluation after a CI-affordable budget (about 10 s each on 1 core)."""
import numpy as np
import pytest

from trpo_lab.envs import make_vec_env
from trpo_lab.evaluate import evaluate_policy
from trpo_lab.run_folder import build_from_folder
from trpo_lab.train import run

from helpers import QUIET

pytestmark = pytest.mark.learning


@pytest.mark.parametrize(
    "env, steps, target",
    [("cartpole", 81_920, 475.0), ("inverted_pendulum", 102_400, 950.0)],
)
def test_trpo_solves(compose, tmp_path, env, steps, target):
    cfg = compose([f"env={env}", f"total_env_steps={steps}", *QUIET])
    run(cfg, tmp_path)
    policy, norm, saved, _ = build_from_folder(tmp_path)
    envs = make_vec_env(saved["env"]["id"], 10)
    returns = evaluate_policy(policy, envs, seed=123, obs_normalizer=norm)
    envs.close()
    assert np.mean(returns) >= target, returns
