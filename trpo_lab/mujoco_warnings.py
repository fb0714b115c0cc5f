"""MuJoCo's own warnings that are known and harmless, dropped; every other one still printed.

MuJoCo reports compiler and runtime warnings through its C warning hook (``mju_user_warning``), not
Python's ``warnings``: by default each is printed to stderr as ``WARNING: …`` and appended to
``MUJOCO_LOG.TXT`` in the working directory. gymnasium's HalfCheetah-v5 model sets the compiler attribute
``settotalmass``, which recent MuJoCo (4.0 here) deprecates but still applies, so every HalfCheetah env made (each
vector sub-env, each evaluation env) printed one identical warning. The hook installed here drops exactly
the messages in :data:`HARMLESS` (matched by their start) and prints any other one as MuJoCo would.
"""
from __future__ import annotations

import sys

import gymnasium as gym

#: (start of the message, why it is harmless); nothing else is dropped
HARMLESS: tuple[tuple[str, str], ...] = (
    ("compiler attribute 'settotalmass' is deprecated",
     "HalfCheetah-v5's XML: the total mass is still applied; only its future removal is announced"),
)

_installed = False


def _hook(message: str) -> None:
    if any(message.startswith(start) for start, _ in HARMLESS):
        return
    print(f"WARNING: {message}", file=sys.stderr, flush=True)


def filter_known_mujoco_warnings(env_id: str) -> None:
    """Before making a MuJoCo env: install the hook (once per process). Other envs never import mujoco
    (importing it loads the ``MUJOCO_GL`` renderer); a mujoco that cannot be imported is left to the env
    checks to report."""
    global _installed
    if _installed:
        return
    try:
        entry_point = str(gym.spec(env_id).entry_point)
    except gym.error.Error:
        return
    if "mujoco" not in entry_point:
        return
    try:
        import mujoco
    except Exception:  # noqa: BLE001 - e.g. a MUJOCO_GL whose library is missing: check_env says so
        return
    mujoco.set_mju_user_warning(_hook)
    _installed = True
