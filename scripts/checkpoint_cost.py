#!/usr/bin/env python3
"""What a checkpoint costs: bytes on disk and milliseconds to write, with and without the env state, beside
the wall time of one update; a markdown table.

Usage:
    python scripts/checkpoint_cost.py [--updates 50] [--repeats 20] [overrides ...]   (default: Hopper-v5)

Trains ``--updates`` updates with the composed config (``checkpoint_every=0``, W&B off), then writes the
checkpoint ``--repeats`` times each way: ``with env state`` is what the trainer writes (every env's snapshot
and the episodes in progress: a resume continues bit-identically), ``without`` is the checkpoint as it was
before env snapshots (the same dict, ``collector`` None). Times are medians; a busy machine inflates them.
At ``checkpoint_every=50`` (the default) one checkpoint is written per 50 updates.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark import compose_config  # noqa: E402

from trpo_lab.run_folder import write_checkpoint  # noqa: E402
from trpo_lab.train import build_trainer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_config(["checkpoint_every=0", "eval.every=0", *args.overrides])
        cfg.total_env_steps = cfg.rollout.normalizer_warmup + args.updates * cfg.rollout.batch_size
        t0 = time.perf_counter()
        with build_trainer(cfg, Path(tmp) / "run") as trainer:
            trainer.run_updates()
            per_update_ms = 1000 * (time.perf_counter() - t0) / args.updates
            full = trainer.state_dict()
            rows = []
            for label, state in (("with env state", full), ("without (before snapshots)", {**full, "collector": None})):
                path, times = Path(tmp) / "ckpt.pt", []
                for _ in range(args.repeats):
                    t = time.perf_counter()
                    write_checkpoint(state, path)
                    times.append(1000 * (time.perf_counter() - t))
                rows.append((label, path.stat().st_size, statistics.median(times)))
            t = time.perf_counter()
            for _ in range(args.repeats):
                trainer.state_dict()
            state_ms = 1000 * (time.perf_counter() - t) / args.repeats
    print(f"{cfg.env.id}, {cfg.rollout.num_envs} envs, batch {cfg.rollout.batch_size}: one update takes "
          f"{per_update_ms:.0f} ms (wall, {args.updates} updates incl. start-up); state_dict() with snapshots "
          f"{state_ms:.2f} ms\n")
    print("| checkpoint | bytes | write ms (median) | per update at checkpoint_every=50 |")
    print("|---|---|---|---|")
    for label, size, ms in rows:
        print(f"| {label} | {size:,} | {ms:.2f} | {ms / 50 / per_update_ms:.4%} of an update |")


if __name__ == "__main__":
    main()
