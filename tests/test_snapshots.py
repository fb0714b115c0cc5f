"""Env snapshots: restore then step is bitwise the steps that followed the snapshot, for every shipped task.

The reference is the env's own continuation from the moment of the snapshot (recorded before any
restore), never the snapshot code's output; every snapshot first goes through
``torch.save`` / ``torch.load(weights_only=True)``, as it would in a checkpoint.
"""
from __future__ import annotations

import enum
import io
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from helpers import CONF_DIR
from trpo_lab.envs import make_vec_env, restore_vector_env, snapshot_vector_env
from trpo_lab.snapshots import (
    SnapshotError, UnsupportedSnapshot, env_layers, random_actions, restore, snapshot, step_trace,
)

ENV_IDS = sorted(yaml.safe_load(p.read_text())["env"]["id"] for p in Path(CONF_DIR, "env").glob("*.yaml"))
TIME_LIMIT = 50  # short, so that the 200 recorded steps cross several episode ends
K = 35  # steps before the snapshot: 15 before the time limit at the latest


class Mode(enum.IntEnum):
    FAST = 1


def make(env_id: str, **kwargs) -> gym.Env:
    try:
        return gym.make(env_id, **kwargs)
    except gym.error.DependencyNotInstalled as e:
        pytest.skip(f"{env_id}: {e}")


def weights_only_round_trip(obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


def integration_state(env: gym.Env) -> np.ndarray | None:
    """MuJoCo's own ``mj_getState(mjSTATE_INTEGRATION)``: an independent read of the simulator state."""
    u = env.unwrapped
    if not hasattr(u, "data"):
        return None
    import mujoco

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(u.model, spec))
    mujoco.mj_getState(u.model, u.data, state, spec)
    return state


def test_every_shipped_task_is_covered():
    assert len(ENV_IDS) == 12 and {"Ant-v5", "Humanoid-v5", "CartPole-v1", "Pendulum-v1"} <= set(ENV_IDS)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_restore_then_200_steps_is_bitwise_the_original(env_id):
    env = make(env_id, max_episode_steps=TIME_LIMIT)
    env.reset(seed=3)
    for a in random_actions(env.action_space, K, seed=1):
        _, _, terminated, truncated, _ = env.step(a)
        if terminated or truncated:
            env.reset()
    rng_state = env.unwrapped.np_random.bit_generator.state
    sim_state = integration_state(env)
    snap = weights_only_round_trip(snapshot(env))

    acts = random_actions(env.action_space, 200, seed=2)
    original = step_trace(env, acts)
    assert sum(1 for step in original if step[0] == "reset") >= 1, "the 200 steps must cross an autoreset"

    restore(env, snap)  # the same env, 200 steps and several episodes later
    assert step_trace(env, acts) == original

    fresh = make(env_id, max_episode_steps=TIME_LIMIT)  # never reset: no np_random, no episode yet
    restore(fresh, snap)
    assert fresh.unwrapped.np_random.bit_generator.state == rng_state  # PCG64's 128-bit ints survive weights_only
    if sim_state is not None:
        np.testing.assert_array_equal(integration_state(fresh), sim_state)
    assert step_trace(fresh, acts) == original


def test_snapshot_holds_plain_data_only():
    env = make("Hopper-v5")
    env.reset(seed=0)

    def walk(x):
        if isinstance(x, dict):
            assert all(isinstance(k, str) for k in x)
            return all(walk(v) for v in x.values())
        if isinstance(x, (list, tuple)):
            return all(walk(v) for v in x)
        return x is None or isinstance(x, (bool, int, float, str, torch.Tensor))

    assert walk(snapshot(env))


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Hopper-v5"])
def test_vector_env_snapshot_resumes_mid_episode(env_id):
    """:func:`snapshot_vector_env` / :func:`restore_vector_env` (what a checkpoint holds of the envs) continue the
    same steps, autoresets included, in a new vector env and in the original one after it moved on."""
    make(env_id)  # skip when the dependency is missing
    kwargs = {"max_episode_steps": 30}
    vec = make_vec_env(env_id, 3, kwargs)
    vec.reset(seed=0)
    space = vec.single_action_space
    for row in zip(*(random_actions(space, 20, seed=10 + i) for i in range(3))):
        vec.step(np.array(row))
    state = weights_only_round_trip(snapshot_vector_env(vec))

    def record(v):
        out = []
        for row in zip(*(random_actions(space, 60, seed=20 + i) for i in range(3))):
            o, r, te, tr, info = v.step(np.array(row))
            finals = [np.asarray(x).tobytes() for x in info.get("final_obs", [])]
            out.append((o.tobytes(), r.tobytes(), te.tobytes(), tr.tobytes(), finals))
        return out

    original = record(vec)
    assert any(step[4] for step in original), "the 60 steps must cross an autoreset"
    resumed = make_vec_env(env_id, 3, kwargs)
    restore_vector_env(resumed, state)
    assert record(resumed) == original
    restore_vector_env(vec, state)
    assert record(vec) == original


def test_restore_env_copies_one_trunk_state_into_every_branch():
    """Vine: one state restored into K sub-envs and stepped with the same actions gives K copies of the trunk."""
    make("Hopper-v5")
    trunk = make_vec_env("Hopper-v5", 2, {"max_episode_steps": 40})
    trunk.reset(seed=5)
    space = trunk.single_action_space
    for a in random_actions(space, 25, seed=3):
        obs, *_ = trunk.step(np.stack([a, a]))
    snap = weights_only_round_trip(trunk.snapshot_env(1))
    acts = random_actions(space, 30, seed=4)
    reference = []
    for a in acts:
        o, r, te, tr, _ = trunk.step(np.stack([a, a]))
        reference.append((o[1].tobytes(), r[1], te[1], tr[1]))
    assert any(te or tr for _, _, te, tr in reference), "the branch must cross an autoreset"

    branches = make_vec_env("Hopper-v5", 3, {"max_episode_steps": 40})
    branches.reset(seed=99)
    for j in range(3):
        np.testing.assert_array_equal(branches.restore_env(j, snap), obs[1])
    other = random_actions(space, 30, seed=6)
    for a, b, ref in zip(acts, other, reference):
        o, r, te, tr, _ = branches.step(np.stack([a, a, b]))
        for j in (0, 1):
            assert (o[j].tobytes(), r[j], te[j], tr[j]) == ref
    assert o[2].tobytes() != reference[-1][0]  # another action sequence leads elsewhere


@pytest.mark.parametrize("bit_generator", ["PCG64", "MT19937", "Philox", "SFC64"])
def test_np_random_of_any_bit_generator_survives_weights_only(bit_generator):
    env = gym.make("CartPole-v1")
    env.reset(seed=0)
    env.unwrapped.np_random = np.random.Generator(getattr(np.random, bit_generator)(7))
    env.unwrapped.np_random.random(3)  # mid-stream (MT19937 and Philox keep a buffered position)
    snap = weights_only_round_trip(snapshot(env))
    expected = env.unwrapped.np_random.random(5)
    fresh = gym.make("CartPole-v1")
    restore(fresh, snap)
    assert type(fresh.unwrapped.np_random.bit_generator).__name__ == bit_generator
    np.testing.assert_array_equal(fresh.unwrapped.np_random.random(5), expected)


def test_an_env_with_unknown_state_is_refused_by_name():
    env = gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))  # its queues are deques
    env.reset(seed=0)
    with pytest.raises(UnsupportedSnapshot, match=r"CartPole-v1.*RecordEpisodeStatistics\.\w+_queue.*deque"):
        snapshot(env)


def test_an_int_subclass_is_refused_not_pickled():
    """An IntEnum is an int, but torch.save would pickle its class, which weights_only loading rejects."""
    env = gym.make("CartPole-v1")
    env.unwrapped.mode = Mode.FAST
    with pytest.raises(UnsupportedSnapshot, match=r"CartPoleEnv\.mode holds a .*Mode"):
        weights_only_round_trip(snapshot(env))


def test_restore_refuses_a_snapshot_of_another_env():
    cartpole, acrobot = gym.make("CartPole-v1"), gym.make("Acrobot-v1")
    cartpole.reset(seed=0)
    with pytest.raises(SnapshotError, match="CartPole-v1.*into Acrobot-v1"):
        restore(acrobot, snapshot(cartpole))
    with pytest.raises(SnapshotError, match="cannot restore a snapshot of CartPole-v1"):
        restore(gym.make("CartPole-v1", disable_env_checker=True), snapshot(cartpole))  # another wrapper chain


def test_a_snapshot_of_a_never_reset_env_restores_a_never_reset_env():
    snap = weights_only_round_trip(snapshot(gym.make("Pendulum-v1")))
    env = gym.make("Pendulum-v1")
    env.reset(seed=0)
    env.step(np.ones(1, np.float32))  # creates PendulumEnv.state, .last_u and the seeded np_random
    restore(env, snap)
    never_reset = gym.make("Pendulum-v1")
    assert [sorted(vars(layer)) for layer in env_layers(env)] == [sorted(vars(layer)) for layer in env_layers(never_reset)]
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.ones(1, np.float32))
