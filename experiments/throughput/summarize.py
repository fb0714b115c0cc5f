#!/usr/bin/env python3
"""Medians and ratios from the JSON lines that side_by_side.sh / levers.sh append.

Usage: python experiments/throughput/summarize.py results/side_by_side.jsonl [more.jsonl ...]

Prints a Markdown table per file: for every tag, the median env-steps/s over rounds (with min–max),
the number of runs, and the median update cost where the line has one; then the ratios of each
trpo-lab configuration to the peer it is matched with (medians of per-round ratios, so that a
noisy round moves both sides of its ratio).
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

PAIRS = {  # ours tag prefix -> (the peer it is compared with, whether batch/network/update settings match)
    "ours-sb3zoo": ("sb3-contrib", True),
    "ours-tianshou": ("tianshou", True),
    "ours-default": ("tianshou", False),  # the fastest peer, with each side's own defaults
}


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def update_cost_s(d: dict) -> float | None:
    """Median seconds of one update (policy + critic), excluding the rollout."""
    if d.get("bench") == "trpo_lab" and "per_update_median_s" in d:
        p = d["per_update_median_s"]
        return p["update"] + p["critic"]
    if d.get("bench") == "sb3_trpo" and d.get("update"):
        return d["update"]["median_s"]
    if d.get("bench") == "tianshou_trpo" and d.get("update"):
        return d["update"]["median_s"]
    return None


def main() -> None:
    for arg in sys.argv[1:]:
        rows = load(Path(arg))
        by_tag: dict[str, list[dict]] = defaultdict(list)
        for d in rows:
            by_tag[d["tag"]].append(d)
        print(f"\n### {arg}\n")
        print("| tag | runs | env-steps/s median (min–max) | update+critic per update, median s | load (1-min) range |")
        print("|---|---|---|---|---|")
        for tag, ds in by_tag.items():
            sps = [d["env_steps_per_s"] for d in ds]
            upd = [u for u in (update_cost_s(d) for d in ds) if u is not None]
            loads = [d.get("loadavg_before", [None])[0] for d in ds] + [d.get("loadavg_after", [None])[0] for d in ds]
            loads = [x for x in loads if x is not None]
            print(f"| {tag} | {len(ds)} | {statistics.median(sps):,.0f} ({min(sps):,.0f}–{max(sps):,.0f}) | "
                  f"{statistics.median(upd):.4f} |" if upd else f"| {tag} | {len(ds)} | {statistics.median(sps):,.0f} "
                  f"({min(sps):,.0f}–{max(sps):,.0f}) | – |", end="")
            print(f" {min(loads):.2f}–{max(loads):.2f} |" if loads else " – |")
        print("\n| ours | peer | env | ratio of env-steps/s (median of per-round ratios) | ratio of update cost (ours/peer) |")
        print("|---|---|---|---|---|")
        for tag, ds in by_tag.items():
            prefix, _, env = tag.partition("/")
            peer, matched = PAIRS.get(prefix, (None, False))
            if peer is None or f"{peer}/{env}" not in by_tag:
                continue
            peer_by_round = {d["round"]: d for d in by_tag[f"{peer}/{env}"]}
            ratios = [d["env_steps_per_s"] / peer_by_round[d["round"]]["env_steps_per_s"]
                      for d in ds if d["round"] in peer_by_round]
            cost = [update_cost_s(d) / update_cost_s(peer_by_round[d["round"]])
                    for d in ds if d["round"] in peer_by_round and update_cost_s(d) and update_cost_s(peer_by_round[d["round"]])]
            cost_s = f"{statistics.median(cost):.3f}" if cost and matched else "– (settings differ)"
            print(f"| {prefix} | {peer} | {env} | {statistics.median(ratios):.2f}× | {cost_s} |")


if __name__ == "__main__":
    main()
