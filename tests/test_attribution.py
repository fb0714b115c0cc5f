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
from trpo_lab.return_window import ReturnWindow
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


def _train(tmp_path, shifts, log_std=-20.0, paired_every=1, warmup=0, normalize_obs=False, steps_per_env=EPISODE,
           window=2):
    num_envs = 2
    envs = _envs(num_envs)
    policy = _policy(log_std)
    critic = ValueFunction(1, (4,))
    obs_norm = ObservationNormalizer((1,), enabled=normalize_obs)
    rew = RewardScaler(num_envs, 0.99, enabled=False)
    collector = RolloutCollector(envs, policy, critic, steps_per_env=steps_per_env, gamma=0.99, gae_lambda=0.95,
                                 obs_normalizer=obs_norm, reward_scaler=rew, seed=0)
    batch = num_envs * steps_per_env
    with Trainer(
        collector=collector, update=ShiftMean(shifts), critic_fitter=CriticFitter(critic, epochs=1),
        policy=policy, critic=critic, obs_normalizer=obs_norm, reward_scaler=rew, gamma=0.99,
        total_env_steps=warmup + batch * len(shifts), run_dir=tmp_path, checkpoints=Checkpoints(every=0),
        measurements=[PairedEvaluation(_envs(3), paired_every, seed=10_000)], normalizer_warmup=warmup,
        return_window=ReturnWindow(window),  # default: one episode per env per batch, so the window is batch k's
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


def test_the_proxy_is_the_window_of_the_last_episodes_across_batches(tmp_path):
    """Batches of 3 steps per env, 5-step episodes: episodes end in batches 2, 4 and 5 (two each, one per env),
    and each mixes the policies of the batches it spans. The window holds the last 3."""
    shifts = [1.0, -2.0, 3.0, 0.5, 4.0, -1.0]
    rows, trainer = _train(tmp_path, shifts, steps_per_env=3, window=3)
    mu = np.cumsum([0.0, *shifts])  # μ during batch j is mu[j − 1]
    finished = {j: [] for j in range(1, len(shifts) + 1)}  # batch → the returns of the episodes it finished
    for e in range(1, 4):
        steps = range(EPISODE * (e - 1) + 1, EPISODE * e + 1)  # per env, 1-based; step t is in batch ⌈t/3⌉
        finished[(EPISODE * e - 1) // 3 + 1] += [sum(mu[(t - 1) // 3] for t in steps)] * 2
    seen, proxy = [], []
    for j in range(1, len(shifts) + 1):
        seen += finished[j]
        proxy.append(np.mean(seen[-3:]) if seen else None)
    assert [r["return/episodes"] for r in rows] == [len(finished[j]) for j in finished] == [0, 2, 0, 2, 2, 0]
    assert [r["return/window_fresh"] for r in rows] == [0, 2, 0, 2, 2, 0]
    assert rows[0]["return/mean"] is None and rows[0]["return/batch_mean"] is None  # before the first episode
    for j, r in enumerate(rows, start=1):
        if finished[j]:
            assert r["return/batch_mean"] == pytest.approx(np.mean(finished[j]), abs=1e-5)
        else:
            assert r["return/batch_mean"] is None
        if proxy[j - 1] is not None:
            assert r["return/mean"] == pytest.approx(proxy[j - 1], abs=1e-5)
    assert rows[0]["return/delta"] is None  # nothing before batch 2's episodes
    for k in range(2, len(shifts)):  # update k: proxy after batch k+1 − proxy after batch k; 0 when k+1 finished none
        assert rows[k - 1]["return/delta"] == pytest.approx(proxy[k] - proxy[k - 1], abs=1e-5)
    assert rows[1]["return/delta"] == 0.0 and rows[-1]["return/delta"] is None
    assert rows[-1]["return/best"] == pytest.approx(max(p for p in proxy if p is not None), abs=1e-5)
    assert trainer.summary(1.0)["final_return"] == pytest.approx(proxy[-1], abs=1e-5)  # the last return/mean


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
