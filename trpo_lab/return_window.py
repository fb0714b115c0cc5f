"""The training-return proxy: the mean raw return of the last M finished episodes.

A batch's own episode mean is undefined whenever the batch finishes no episode (HalfCheetah: 1000-step
episodes, 512 steps per env per batch, so every other batch). The window keeps the last ``size`` finished
episodes across batches, as SB3's episode buffer does, so the proxy is defined on every update after the
first finished episode.

What it mixes in: after batch k the window holds the ``fresh`` episodes finished in batch k (collected by
π_k, but begun up to one episode earlier, possibly under earlier policies) and, when batch k finished fewer
than ``size``, the newest episodes of earlier batches (earlier policies). ``fresh`` = 0 means the proxy did
not move: a zero ``return/delta`` then says "no new evidence", not "no change".
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any


class ReturnWindow:
    """The last ``size`` finished episodes' raw returns.

    Args:
        size: M, the number of most recent finished episodes averaged (≥ 1).
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"the return window needs size ≥ 1 (got {size})")
        self.size = size
        self._returns: deque[float] = deque(maxlen=size)
        self.fresh = 0  # episodes added by the last call of add(), at most size

    def add(self, episode_returns: Iterable[float]) -> None:
        """Append one batch's finished episodes, oldest first."""
        new = [float(r) for r in episode_returns]
        self._returns.extend(new)
        self.fresh = min(len(new), self.size)

    def __len__(self) -> int:
        """Episodes in the window (at most ``size``)."""
        return len(self._returns)

    @property
    def mean(self) -> float:
        """The mean of the window; NaN before the first finished episode."""
        return math.fsum(self._returns) / len(self._returns) if self._returns else math.nan

    def state_dict(self) -> dict[str, Any]:
        return {"size": self.size, "returns": list(self._returns), "fresh": self.fresh}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.size = int(state["size"])
        self._returns = deque((float(r) for r in state["returns"]), maxlen=self.size)
        self.fresh = int(state["fresh"])
