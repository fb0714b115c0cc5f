"""The random-policy score of each MuJoCo v5 task under the lab's evaluation protocol (the 0 of normalised scores).

    python scripts/random_scores.py                       # all v5 tasks of conf/env, 10 episodes each
    python scripts/random_scores.py --episodes 10 --seed 0 Hopper-v5 Walker2d-v5

Protocol (as the lab's final evaluation, :func:`trpo_lab.evaluate.evaluate_policy`): ``--episodes`` envs of the
task side by side, reset once with ``seed + 100000`` (the run seed plus ``eval.seed_offset``), one episode each,
raw rewards summed until termination or the time limit. The policy: actions drawn uniformly from the action box,
from ``numpy.random.default_rng(seed)``, independently per env and step. Prints one Markdown row per task (mean,
std over episodes with ddof = 1, episodes, mean episode length); :mod:`trpo_lab.normalization` holds the means.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without `pip install -e .`

from trpo_lab.envs import make_vec_env  # noqa: E402

TASKS = ("Ant-v5", "HalfCheetah-v5", "Hopper-v5", "Humanoid-v5", "InvertedDoublePendulum-v5", "InvertedPendulum-v5",
         "Reacher-v5", "Swimmer-v5", "Walker2d-v5")
SEED_OFFSET = 100_000  # conf/train.yaml: eval.seed_offset


def random_returns(task: str, episodes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of ``episodes`` uniform-random episodes of ``task``, one per env from ``reset(seed + offset)``."""
    envs = make_vec_env(task, episodes)
    try:
        space, rng = envs.single_action_space, np.random.default_rng(seed)
        envs.reset(seed=seed + SEED_OFFSET)
        returns, lengths = np.zeros(episodes), np.zeros(episodes, int)
        active = np.ones(episodes, bool)
        while active.any():
            a = rng.uniform(space.low, space.high, size=(episodes, *space.shape))
            _, r, term, trunc, _ = envs.step(a)
            returns += r * active
            lengths += active
            active &= ~(term | trunc)
        return returns, lengths
    finally:
        envs.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tasks", nargs="*", default=list(TASKS), help="env ids (default: every MuJoCo v5 task of conf/env)")
    p.add_argument("--episodes", type=int, default=10, help="episodes per task, ≥ 2 (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="run seed, ≥ 0 (default: 0; envs reset with seed + 100000)")
    args = p.parse_args(argv)
    if args.episodes < 2 or args.seed < 0:
        print("error: --episodes must be ≥ 2 and --seed ≥ 0", file=sys.stderr)
        return 2
    print(f"| task | random-policy return: mean | std over episodes | episodes | mean length |\n|---|---|---|---|---|")
    for task in args.tasks:
        returns, lengths = random_returns(task, args.episodes, args.seed)
        print(f"| {task} | {returns.mean():.2f} | {returns.std(ddof=1):.2f} | {args.episodes} | {lengths.mean():.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
