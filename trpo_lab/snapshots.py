r"""Env snapshots: the complete state of one gymnasium env as plain data, and its exact restore.

Definition. For an env ``e`` at any moment t and any actions a_1 … a_n,

    restore(e', snapshot(e_t));  e'.step(a_1) … e'.step(a_n)

returns, bit for bit, the (obs, reward, terminated, truncated) that ``e_t.step(a_1) … e_t.step(a_n)``
returned, where ``e'`` is ``e`` itself later on or a fresh ``gymnasium.make`` of the same id and
kwargs, and across resets: a reset draws its noise from the env's restored ``np_random``.

What a snapshot holds. The env as ``gymnasium.make`` builds it is a chain of layers (``TimeLimit`` →
``OrderEnforcing`` → ``PassiveEnvChecker`` → the env). For every layer, every attribute in
``vars(layer)`` is classified once:

- constant, skipped: the next layer (``env``), spaces (their own RNG serves only ``space.sample()``),
  the spec, ``metadata``, constructor arguments, render handles, the MuJoCo model (the env as made;
  an env that edits its model during an episode is out of scope);
- plain (``None``, bool, int, float, str, numpy arrays and scalars, and lists, tuples and str-keyed
  dicts of those), copied: ``TimeLimit._elapsed_steps``, ``OrderEnforcing._has_reset``, the
  passive checker's flags, CartPole's ``state`` and ``steps_beyond_terminated``, Pendulum's
  ``last_u``, … (constants that happen to be plain are copied too, and restore to equal values);
- a ``numpy.random.Generator`` (the env's ``np_random``): its bit generator's state, a dict of
  Python ints (PCG64's are 128-bit; ``torch.load(weights_only=True)`` keeps them exact) and, for
  MT19937 or Philox, arrays;
- a ``mujoco.MjData``: see below;
- anything else raises :class:`UnsupportedSnapshot`, naming the env id, the layer and the attribute:
  an env holding state of an unknown form is refused, never half-saved.

MuJoCo. ``mj_getState(mjSTATE_INTEGRATION)`` is the state the *integrator* needs, but a step can
read quantities that the previous ``mj_step`` left behind from its forward pass, computed at the
state *before* that step's integration: Ant-v5 reads the torso's ``xpos`` and Humanoid-v5 the
bodies' ``xipos`` (``mass_center``) before simulating, for the x-velocity in the reward. A forward
pass after restoring the integration state recomputes them at the state *after* it, so these two
tasks diverge (measured: leaving out ``xpos`` breaks Ant-v5 alone, ``xipos`` Humanoid-v5 alone;
``cfrc_ext`` is recomputed by the step before it is read). A snapshot therefore holds every array
of ``mjData``'s fixed buffer (``MJDATA_POINTERS`` in MuJoCo's ``mjxmacro.h``: the integration state
and every model-sized derived array; ``plugin_data``, addresses of plugin instances, excluded),
packed as raw bytes in one uint8 tensor, with ``time`` and the scalar flags and awake counts. Not
held: the arena (contacts, constraint rows, islands) and the solver, timer and warning statistics,
outputs of the last step's collision and constraint stages that the next ``mj_step`` rebuilds
before reading them (no gymnasium task reads them between steps). So after a restore,
``data.contact`` and ``data.efc_*`` still describe the state before it.

Format (``FORMAT``): ``{"format", "env_id", "layers": [{"class", "attrs"}, …]}``; numpy values are
tagged dicts ``{"__ndarray__": tensor}``, ``{"__npscalar__": tensor}``, ``{"__generator__": name,
"state": dict}``, ``{"__mjdata__": {...}}``. Only tensors, numbers, strings, lists, tuples and dicts:
it loads with ``torch.load(weights_only=True)``, no pickle.
"""
from __future__ import annotations

import os
import re
import weakref
import zlib
from functools import lru_cache
from typing import Any

import gymnasium as gym
import numpy as np
import torch

FORMAT = 1

#: attributes fixed when the env is built (or used only for rendering): not state
CONSTANT_ATTRS = frozenset({
    "env", "spec", "_cached_spec", "metadata", "_metadata", "_saved_kwargs", "_ezpickle_args",
    "_ezpickle_kwargs", "render_mode", "screen", "clock", "mujoco_renderer",
})
#: mjData buffer arrays left out: ``plugin_data`` holds addresses of plugin instances in this process
MJDATA_EXCLUDED = frozenset({"plugin_data"})
#: mjData scalars that change during a step and are not arena sizes
MJDATA_SCALARS = ("flg_energypos", "flg_energyvel", "flg_subtreevel", "flg_rnepost",
                  "ntree_awake", "nbody_awake", "nparent_awake", "nv_awake")


class SnapshotError(RuntimeError):
    """A snapshot cannot be taken or restored (the message names the env id and why)."""


class UnsupportedSnapshot(SnapshotError):
    """The env holds state this module cannot save; resume falls back to reseeding, with a warning."""


def env_layers(env: gym.Env) -> list[Any]:
    """The wrapper chain from the outermost wrapper to ``env.unwrapped``."""
    layers = [env]
    while isinstance(layers[-1], gym.Wrapper):
        layers.append(layers[-1].env)
    return layers


def _env_id(env: gym.Env) -> str:
    spec = getattr(env, "spec", None)
    return spec.id if spec is not None else type(env.unwrapped).__name__


@lru_cache(maxsize=1)
def _constant_types() -> tuple[type, ...]:
    types: list[type] = [gym.Space, gym.envs.registration.EnvSpec]
    try:
        import mujoco
        types.append(mujoco.MjModel)
    except ImportError:
        pass
    return tuple(types)


def _is_plain(value: Any) -> bool:
    # exact types: a subclass (an IntEnum, a defaultdict, np.matrix) would pickle as its class and
    # fail to load under weights_only
    t = type(value)
    if value is None or t in (bool, int, float, str):
        return True
    if t is np.ndarray or isinstance(value, np.generic):
        return value.dtype.kind in "biufc" and value.dtype.isnative
    if t in (list, tuple):
        return all(_is_plain(v) for v in value)
    if t is dict:
        return all(type(k) is str and _is_plain(v) for k, v in value.items())
    return False


def _encode_plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__ndarray__": torch.from_numpy(np.array(value, copy=True, order="C"))}
    if isinstance(value, np.generic):
        return {"__npscalar__": torch.from_numpy(np.array(value))}
    if isinstance(value, (list, tuple)):
        return type(value)(_encode_plain(v) for v in value)
    if isinstance(value, dict):
        return {k: _encode_plain(v) for k, v in value.items()}
    return value


def _decode(value: Any, current: Any) -> Any:
    """Decode an encoded attribute; ``current`` is the target's value (reused for in-place restores)."""
    if isinstance(value, dict):
        if "__ndarray__" in value:
            return value["__ndarray__"].numpy().copy()
        if "__npscalar__" in value:
            return value["__npscalar__"].numpy()[()]
        if "__generator__" in value:
            return _decode_generator(value, current)
        return {k: _decode(v, None) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_decode(v, None) for v in value)
    return value


def _decode_generator(value: dict[str, Any], current: Any) -> np.random.Generator:
    name = value["__generator__"]
    if isinstance(current, np.random.Generator) and type(current.bit_generator).__name__ == name:
        gen = current  # in place: no OS-entropy seeding of a throwaway bit generator
    else:
        gen = np.random.Generator(getattr(np.random, name)())
    gen.bit_generator.state = _decode(value["state"], None)
    return gen


@lru_cache(maxsize=1)
def mjdata_buffer_fields() -> tuple[str, ...]:
    """Names of mjData's fixed-buffer arrays, read from MuJoCo's own ``mjxmacro.h`` (``MJDATA_POINTERS``)."""
    import mujoco

    path = os.path.join(mujoco.HEADERS_DIR, "mjxmacro.h")
    try:
        text = open(path).read()
    except OSError as e:
        raise UnsupportedSnapshot(f"cannot snapshot MuJoCo data: {path} is unreadable ({e})") from None
    block = re.search(r"#define MJDATA_POINTERS\b(.*?)\n\s*\n", text, re.S)
    if block is None:
        raise UnsupportedSnapshot(f"cannot snapshot MuJoCo data: no MJDATA_POINTERS in {path}")
    names = re.findall(r"X(?:NV)?\s*\(\s*\w+\s*,\s*(\w+)\s*,", block.group(1))
    return tuple(n for n in names if n not in MJDATA_EXCLUDED)


#: per MjData: its buffer arrays as flat uint8 views, and their layout checksum (dropped with the MjData)
_VIEWS: weakref.WeakKeyDictionary[Any, tuple[list[np.ndarray], int]] = weakref.WeakKeyDictionary()


def _mjdata_views(data: Any) -> tuple[list[np.ndarray], int]:
    """Flat uint8 views of the buffer arrays (:func:`mjdata_buffer_fields` order) and a checksum of their sizes.

    The buffer is allocated once per MjData, so the views are made once (they are most of a snapshot's cost).
    """
    cached = _VIEWS.get(data)
    if cached is None:
        views = [getattr(data, n).reshape(-1).view(np.uint8) for n in mjdata_buffer_fields()]
        cached = _VIEWS[data] = (views, zlib.crc32(np.array([v.size for v in views], np.int64).tobytes()))
    return cached


def _snapshot_mjdata(data: Any) -> dict[str, Any]:
    views, layout = _mjdata_views(data)
    return {"__mjdata__": {
        "time": float(data.time),
        "buffer": torch.from_numpy(np.concatenate(views)),
        "layout": layout,
        "scalars": {n: int(getattr(data, n)) for n in MJDATA_SCALARS},
    }}


def _restore_mjdata(snap: dict[str, Any], data: Any, where: str) -> None:
    views, layout = _mjdata_views(data)
    if snap["layout"] != layout:
        raise SnapshotError(f"{where}: the snapshot's MuJoCo data is of another model (array sizes differ)")
    buf = snap["buffer"].numpy()
    start = 0
    for v in views:
        v[...] = buf[start:start + v.size]
        start += v.size
    data.time = snap["time"]
    for n, x in snap["scalars"].items():
        setattr(data, n, x)


def _kind(layer: Any, name: str, value: Any, env_id: str) -> str | None:
    """How an attribute is saved: None (constant), "plain", "generator" or "mjdata"; else raise."""
    if name in CONSTANT_ATTRS or isinstance(value, _constant_types()):
        return None
    if _is_plain(value):
        return "plain"
    if isinstance(value, np.random.Generator):
        return "generator"
    if type(value).__name__ == "MjData" and type(value).__module__.startswith("mujoco"):
        return "mjdata"
    raise UnsupportedSnapshot(
        f"cannot snapshot {env_id}: {type(layer).__name__}.{name} holds a "
        f"{type(value).__module__}.{type(value).__name__}, whose state is not known to be saveable"
    )


def _state_attrs(layer: Any, env_id: str) -> dict[str, Any]:
    """The layer's state attributes, encoded."""
    out: dict[str, Any] = {}
    for name, value in vars(layer).items():
        kind = _kind(layer, name, value, env_id)
        if kind == "plain":
            out[name] = _encode_plain(value)
        elif kind == "generator":
            bg = value.bit_generator
            out[name] = {"__generator__": type(bg).__name__, "state": _encode_plain(bg.state)}
        elif kind == "mjdata":
            out[name] = _snapshot_mjdata(value)
    return out


def snapshot(env: gym.Env) -> dict[str, Any]:
    """The complete state of ``env`` (every wrapper and the env itself) as plain data; see the module docstring."""
    env_id = _env_id(env)
    return {
        "format": FORMAT,
        "env_id": env_id,
        "layers": [{"class": type(layer).__name__, "attrs": _state_attrs(layer, env_id)} for layer in env_layers(env)],
    }


def restore(env: gym.Env, snap: dict[str, Any]) -> None:
    """Put ``env`` into the state ``snap`` was taken in; ``env`` must be the same id with the same wrappers.

    Attributes of ``env`` that the snapshotted env did not have yet (e.g. ``state`` of an env that was
    never reset) are deleted, so that the restored env is the snapshotted one, not a blend.
    """
    env_id = _env_id(env)
    if not isinstance(snap, dict) or snap.get("format") != FORMAT:
        raise SnapshotError(f"cannot restore {env_id}: not an env snapshot of format {FORMAT}")
    layers = env_layers(env)
    want, have = [s["class"] for s in snap["layers"]], [type(layer).__name__ for layer in layers]
    if snap["env_id"] != env_id or want != have:
        raise SnapshotError(
            f"cannot restore a snapshot of {snap['env_id']} ({' > '.join(want)}) into {env_id} ({' > '.join(have)})"
        )
    for layer, saved in zip(layers, snap["layers"]):
        attrs = saved["attrs"]
        current = vars(layer)
        stale = [n for n, v in current.items() if n not in attrs and _kind(layer, n, v, env_id) is not None]
        for name in stale:
            delattr(layer, name)
        for name, value in attrs.items():
            if isinstance(value, dict) and "__mjdata__" in value:
                _restore_mjdata(value["__mjdata__"], current[name], f"cannot restore {env_id}")
            else:
                setattr(layer, name, _decode(value, current.get(name)))


# -- judging exactness: the same actions from a snapshot and from the original ---------------------------------------
def random_actions(space: gym.Space, n: int, seed: int) -> list[Any]:
    """``n`` actions drawn uniformly from ``space`` (Discrete or Box) by a generator seeded with ``seed``."""
    rng = np.random.default_rng(seed)
    if isinstance(space, gym.spaces.Discrete):
        return [int(a) for a in rng.integers(space.n, size=n)]
    return [rng.uniform(space.low, space.high).astype(space.dtype) for _ in range(n)]


def step_trace(env: gym.Env, actions: list[Any]) -> list[tuple[Any, ...]]:
    """What exactness is judged on: (obs bytes, reward bytes, terminated, truncated) per step of ``actions``,
    and after an episode's end the (unseeded) reset's observation: two traces are equal iff bitwise equal."""
    out: list[tuple[Any, ...]] = []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        out.append((np.asarray(obs).tobytes(), np.float64(reward).tobytes(), bool(terminated), bool(truncated)))
        if terminated or truncated:
            obs, _ = env.reset()
            out.append(("reset", np.asarray(obs).tobytes()))
    return out
