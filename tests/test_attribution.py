"""Every number on update k's row measures update k: a scripted env whose return is a known function of
the policy's parameters, a scripted update that moves them by a known amount, and the paired evaluation
on common random numbers."""
import copy
import dataclasses
import json

import gymnasium as gym
import numpy as np
import pytest
import torch

from trpo_lab.critic import CriticFitter
from trpo_lab.envs import InProcessVectorEnv, ObservationNormalizer, RewardScaler
from trpo_lab.evaluate import paired_evaluation
from trpo_lab.sinks import ConsoleProgress, JsonlSink
from trpo_lab.metrics import PolicyUpdateStats
from trpo_lab.policies import GaussianPolicy, ValueFunction
from trpo_lab.rollout import RolloutCollector
from trpo_lab.schedule import Checkpoints, PairedEvaluation
from trpo_lab.sinks import Sinks
from trpo_lab.trainer import Trainer

EPISODE = 5  # steps per episode of the scripted env


class ActionSumEnv(gym.Env):
    """obs = [0]; reward = the action; an episode is EPISODE steps. So a Gaussian policy whose mean at
    obs 0 is μ has expected return EPISODE·μ, and two policies run on the same action noise differ in
    return by exactly EPISODE·(μ_new − μ_old) in every episode."""

    def __init__(self):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1e3, 1e3, (1,), np.float32)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), float(action[0]), self.t >= EPISODE, False, {}


def _envs(n):
    return InProcessVectorEnv([ActionSumEnv for _ in range(n)])


def _policy(log_std):
    """μ(0) = the output bias (hidden biases are 0, tanh(0) = 0)."""
    torch.manual_seed(0)
    return GaussianPolicy(1, 1, hidden_sizes=(4,), log_std_init=log_std)


class ShiftMean:
    """A scripted policy update: update k adds shifts[k−1] to μ."""

    def __init__(self, shifts):
        self.shifts, self.k = list(shifts), 0

    def __call__(self, policy, obs, actions, log_prob_old, advantages):
        with torch.no_grad():
            policy.mean_net[-1].bias.add_(self.shifts[self.k])
        self.k += 1
        stats = PolicyUpdateStats.for_skipped("")
        return dataclasses.replace(stats, skipped=0.0, skipped_reason="", accepted=1.0, fraction=1.0)


def _train(tmp_path, shifts, log_std=-20.0, paired_every=1, warmup=0, normalize_obs=False):
    num_envs = 2
    envs = _envs(num_envs)
    policy = _policy(log_std)
    critic = ValueFunction(1, (4,))
    obs_norm = ObservationNormalizer((1,), enabled=normalize_obs)
    rew = RewardScaler(num_envs, 0.99, enabled=False)
    collector = RolloutCollector(envs, policy, critic, steps_per_env=EPISODE, gamma=0.99, gae_lambda=0.95,
                                 obs_normalizer=obs_norm, reward_scaler=rew, seed=0)
    batch = num_envs * EPISODE
    with Trainer(
        collector=collector, update=ShiftMean(shifts), critic_fitter=CriticFitter(critic, epochs=1),
        policy=policy, critic=critic, obs_normalizer=obs_norm, reward_scaler=rew, gamma=0.99,
        total_env_steps=warmup + batch * len(shifts), run_dir=tmp_path, checkpoints=Checkpoints(every=0),
        measurements=[PairedEvaluation(_envs(3), paired_every, seed=10_000)], normalizer_warmup=warmup,
    ) as trainer:
        trainer.sinks = Sinks(jsonl=JsonlSink(tmp_path / "metrics.jsonl"), console=ConsoleProgress(trainer.total_env_steps, "off"))
        trainer.run_updates()
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()], trainer


def test_row_k_measures_update_k(tmp_path):
    shifts = [1.0, -2.0, 3.0, 0.5]
    rows, _ = _train(tmp_path, shifts)  # σ = e⁻²⁰: each batch's return is EPISODE·μ up to 1e-8
    assert [r["update"] for r in rows] == [1, 2, 3, 4]
    mu = np.cumsum([0.0, *shifts])  # μ before update k is mu[k−1]
    for k, r in enumerate(rows, start=1):
        assert r["return/mean"] == pytest.approx(EPISODE * mu[k - 1], abs=1e-5)  # batch k, collected by π_k
        assert r["paired/improvement"] == pytest.approx(EPISODE * shifts[k - 1], abs=1e-5)
        assert r["paired/outcome"] == (1 if shifts[k - 1] > 0 else -1)
    for k, r in enumerate(rows[:-1], start=1):
        assert r["return/delta"] == pytest.approx(EPISODE * shifts[k - 1], abs=1e-5)
    assert rows[-1]["return/delta"] is None  # no batch follows the last update
    last = rows[-1]
    assert (last["monotonic/improved"], last["monotonic/worsened"], last["monotonic/resolved"]) == (3, 1, 4)
    assert last["monotonic/improved_fraction"] == pytest.approx(3 / 4)


def test_paired_evaluation_every_kth_update_and_null_otherwise(tmp_path):
    rows, _ = _train(tmp_path, [1.0, 1.0, 1.0, 1.0], paired_every=2)
    assert [r["paired/outcome"] is not None for r in rows] == [False, True, False, True]
    assert rows[0]["paired/improvement"] is None and rows[-1]["monotonic/resolved"] == 2


def test_common_random_numbers_give_the_known_shift_exactly():
    old = _policy(log_std=0.0)  # σ = 1: single episodes are noisy, their paired differences are not
    new = copy.deepcopy(old)
    with torch.no_grad():
        new.mean_net[-1].bias.add_(0.25)
    p = paired_evaluation((old, None), (new, None), _envs(8), seed=3, noise_seed=3)
    assert abs(p.return_new - p.return_old) < 2 * p.independent_se  # the noise is far larger than the shift …
    assert p.improvement == pytest.approx(EPISODE * 0.25, abs=1e-5)  # … and the pairing cancels it
    assert p.improvement_se < 1e-5 and p.outcome == 1


def test_identical_policies_differ_by_exactly_zero_on_hopper():
    from trpo_lab.envs import make_vec_env
    from trpo_lab.policies import make_policy

    envs = make_vec_env("Hopper-v5", 3)
    torch.manual_seed(1)
    pol = make_policy(envs.single_observation_space, envs.single_action_space)
    norm = ObservationNormalizer(envs.single_observation_space.shape)
    p = paired_evaluation((pol, norm), (copy.deepcopy(pol), norm), envs, seed=5, noise_seed=5)
    envs.close()
    assert p.improvement == 0.0 and p.improvement_se == 0.0 and p.outcome == 0
    assert p.independent_se > 0  # the returns themselves do vary


def test_normalizer_warmup_counts_toward_env_steps(tmp_path):
    rows, trainer = _train(tmp_path, [0.0, 0.0], warmup=7, normalize_obs=True)
    # 7 steps on 2 envs: ⌈7/2⌉ = 4 vector steps = 8 env steps, then batches of 10
    assert [r["env_steps"] for r in rows] == [18, 28]
    assert trainer.obs_normalizer.rms.count == pytest.approx(8 + 20 + 1e-4)
