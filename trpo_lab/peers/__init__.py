"""Peers: other TRPO implementations run inside the lab, under its protocol, into lab run folders.

``peer=NAME`` (``conf/peer/``) replaces the lab's trainer by the implementation of :data:`PEERS` ``[NAME]``;
``peer=none`` (default) adds no config key and the lab's trainer runs. A peer's run folder holds what the
lab's reports read (``config.yaml``, ``metrics.jsonl``, ``summary.json``; :mod:`trpo_lab.run_folder`), is
bound to its config like the trainer's, and shows in reports under ``peer.name`` (:mod:`trpo_lab.runs`).

This module imports no peer library: the schema and the checks run in Hydra's preflight, before any folder
exists; a peer's own module (e.g. :mod:`trpo_lab.peers.sb3_contrib`) is imported only when that peer runs.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from omegaconf import DictConfig

from trpo_lab.config import POSITIVE, ConfigError, at_least, interval, key

class Peer(NamedTuple):
    """How a peer is chosen and run."""

    option: str  # its option of the ``peer`` config group
    module: str  # the module whose ``run(cfg, run_dir)`` runs it
    imports: tuple[str, ...]  # the top-level modules it needs
    extra: str  # the optional dependencies of pyproject.toml that install them


#: ``peer.name`` → its :class:`Peer`
PEERS: dict[str, Peer] = {
    "sb3_contrib_trpo": Peer("sb3_contrib", "trpo_lab.peers.sb3_contrib", ("sb3_contrib", "stable_baselines3"), "peers"),
}


@dataclass
class Sb3ContribConfig:
    """``conf/peer/sb3_contrib.yaml`` (each key documented there)."""

    name: Literal["sb3_contrib_trpo"] = key()
    n_envs: int = key(at_least(1))
    n_steps: int = key(at_least(2))
    batch_size: int = key(at_least(2))
    gamma: float = key(interval(0, 1))
    gae_lambda: float = key(interval(0, 1))
    sub_sampling_factor: int = key(at_least(1))
    cg_max_steps: int = key(at_least(1))
    cg_damping: float = key(at_least(0))
    n_critic_updates: int = key(at_least(1))
    learning_rate: float = key(POSITIVE)
    target_kl: float = key(POSITIVE)
    line_search_shrinking_factor: float = key(interval(0, 1, lo_open=True, hi_open=True))
    line_search_max_iter: int = key(at_least(1))
    normalize_advantage: bool = key()
    pi_hidden_sizes: list[int] = key(at_least(1))
    vf_hidden_sizes: list[int] = key(at_least(1))
    activation: Literal["tanh", "relu"] = key()
    log_std_init: float = key()
    ortho_init: bool = key()
    normalize_obs: bool = key()
    normalize_reward: bool = key()
    clip_obs: float = key(POSITIVE)
    clip_reward: float = key(POSITIVE)
    per_task: dict[str, Any] = key()


def check_peer_available(cfg: DictConfig) -> None:
    """:class:`~trpo_lab.config.ConfigError` in one line, naming the extra to install, if the peer's library is missing."""
    if "peer" not in cfg:
        return
    peer = PEERS[cfg.peer.name]
    missing = [m for m in peer.imports if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"peer={peer.option} needs {' and '.join(missing)}, not installed: pip install -e \".[{peer.extra}]\""
        )


def run_peer(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Run the peer of ``cfg.peer`` into ``run_dir``; returns (and writes) ``summary.json``."""
    check_peer_available(cfg)
    module = importlib.import_module(PEERS[cfg.peer.name].module)
    return module.run(cfg, Path(run_dir))
