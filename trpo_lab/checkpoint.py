"""Checkpoints: written atomically, read without unpickling code.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(weights_only=True)``: no pickled object can run code on load.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trpo_lab.files import write_atomic

CHECKPOINT = "checkpoint.pt"
REQUIRED_KEYS = ("policy", "critic", "critic_optimizer", "obs_normalizer", "reward_scaler", "env_steps", "updates")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt or not a trpo-lab checkpoint."""


def write_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`~trpo_lab.files.write_atomic`): a kill mid-write keeps the old file."""
    return write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and sanity-check a checkpoint; any problem becomes one :class:`CheckpointError` naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - truncated, corrupt or foreign files all end here
        raise CheckpointError(
            f"{path} is not a readable trpo-lab checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
        raise CheckpointError(f"{path} is not a trpo-lab checkpoint (missing {', '.join(missing)})")
    return state
