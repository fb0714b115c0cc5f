#!/usr/bin/env python3
"""Exactness, size and time of env snapshots (trpo_lab.snapshots) for every task in conf/env/; a markdown table.

Usage:
    python scripts/snapshot_cost.py [--steps 300] [--time-limit 100] [--repeats 200]

Per task: from a seeded reset and ``--steps`` random actions, snapshot, record the next ``--steps``
steps (obs, reward, terminated, truncated; unseeded resets after an episode's end, several within
the time limit), then restore into the same env and into a fresh ``gym.make`` and replay:

- ``exact``: trpo_lab's snapshot (after a ``torch.load(weights_only=True)`` round trip), same env and fresh env;
- ``integration only``: MuJoCo's ``mj_getState(mjSTATE_INTEGRATION)`` + ``mj_setState`` + ``mj_forward``
  with the wrappers' state and ``np_random`` from trpo_lab's snapshot: the alternative the issue measured;
- ``bytes``: the snapshot as ``torch.save`` writes it, and the packed mjData buffer alone;
- ``µs``: median over ``--repeats`` calls of ``snapshot`` and ``restore`` (a busy machine inflates them).
"""
from __future__ import annotations

import argparse
import io
import statistics
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import yaml

from trpo_lab.snapshots import random_actions, restore, snapshot, step_trace

CONF_ENV = Path(__file__).resolve().parents[1] / "trpo_lab" / "conf" / "env"


def env_ids() -> list[str]:
    folder = CONF_ENV if CONF_ENV.exists() else Path(__file__).resolve().parents[1] / "conf" / "env"
    return sorted(yaml.safe_load(p.read_text())["env"]["id"] for p in folder.glob("*.yaml"))


def integration_only(env: gym.Env, snap: dict, state: np.ndarray | None) -> None:
    """The issue's alternative: trpo_lab's restore for the wrappers and RNG, then the integration state + mj_forward."""
    import mujoco

    restore(env, snap)
    u = env.unwrapped
    mujoco.mj_resetData(u.model, u.data)
    mujoco.mj_setState(u.model, u.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
    mujoco.mj_forward(u.model, u.data)


def median_us(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--time-limit", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    print("| task | exact: same env / fresh env | integration only + mj_forward | episode ends | bytes (torch.save) "
          "| mjData buffer bytes | snapshot µs | restore µs |")
    print("|---|---|---|---|---|---|---|---|")
    for env_id in env_ids():
        env = gym.make(env_id, max_episode_steps=args.time_limit)
        env.reset(seed=0)
        step_trace(env, random_actions(env.action_space, args.steps, seed=1))
        buf = io.BytesIO()
        torch.save(snapshot(env), buf)
        nbytes = buf.tell()
        buf.seek(0)
        snap = torch.load(buf, weights_only=True)
        mj = snap["layers"][-1]["attrs"].get("data", {}).get("__mjdata__")
        state = None
        if mj is not None:
            import mujoco

            u = env.unwrapped
            state = np.empty(mujoco.mj_stateSize(u.model, mujoco.mjtState.mjSTATE_INTEGRATION))
            mujoco.mj_getState(u.model, u.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        acts = random_actions(env.action_space, args.steps, seed=2)
        original = step_trace(env, acts)
        restore(env, snap)
        same = step_trace(env, acts) == original
        fresh = gym.make(env_id, max_episode_steps=args.time_limit)
        restore(fresh, snap)
        fresh_ok = step_trace(fresh, acts) == original
        alt = "n/a"
        if state is not None:
            integration_only(env, snap, state)
            alt = "exact" if step_trace(env, acts) == original else "DIVERGES"
        ends = sum(1 for x in original if isinstance(x, bytes))
        t_snap = median_us(lambda: snapshot(env), args.repeats)
        t_restore = median_us(lambda: restore(env, snap), args.repeats)
        mj_bytes = mj["buffer"].numel() if mj is not None else 0
        print(f"| {env_id} | {'exact' if same else 'DIVERGES'} / {'exact' if fresh_ok else 'DIVERGES'} | {alt} | {ends} "
              f"| {nbytes} | {mj_bytes} | {t_snap:.0f} | {t_restore:.0f} |")


if __name__ == "__main__":
    main()
