"""Markdown for the reports and the sweep summary: tables, values with CIs, skipped runs.

No matplotlib or scipy here: the sweep summary (imported by every training job) uses it.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from trpo_lab.runs import Run, display_path


def format_ci(value: float, lo: float, hi: float, digits: int = 1, signed: bool = False) -> str:
    """``"12.3 [10.1, 14.0]"`` (``signed``, for differences: ``"+12.3 [-1.0, +14.0]"``); ``"n/a"`` for NaN;
    ``"12.3 [no CI: 1 run]"`` when there is no interval."""
    if not math.isfinite(value):
        return "n/a"
    f = f"{'+' if signed else ''}.{digits}f"
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return f"{value:{f}} [no CI: 1 run]"
    return f"{value:{f}} [{lo:{f}}, {hi:{f}}]"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (``|`` inside cells escaped)."""
    esc = lambda c: str(c).replace("|", "\\|")
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def sources_and_skipped(sweep_dirs: Sequence[Any], skipped: Sequence[tuple[Run, str]]) -> str:
    """A report's footer: the sweep folders it read and, if any, the runs it skipped and why."""
    text = "\n\nSources: " + ", ".join(f"`{d}`" for d in sweep_dirs) + "\n"
    if skipped:
        text += f"\nSkipped {len(skipped)} run(s):\n\n" + skipped_report(skipped) + "\n"
    return text


def skipped_report(skipped: Sequence[tuple[Run, str]]) -> str:
    """One Markdown bullet per skipped run: its folder and why."""
    return "\n".join(f"- `{display_path(r.path)}`: {why}" for r, why in skipped)
