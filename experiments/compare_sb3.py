"""This study's final scores beside the peer (sb3-contrib) and the published figures, from runs.csv
(trpo_lab.reports.final_scores).

    python experiments/compare_sb3.py experiments/mujoco_1m/runs.csv --reference "algo=trpo," \\
        --figure experiments/mujoco_1m/performance_profile_vs_sb3.png > experiments/mujoco_1m/comparison.md
    python experiments/compare_sb3.py experiments/kl_units/runs.csv > experiments/kl_units/comparison.md
    python experiments/compare_sb3.py experiments/mujoco_1m/runs.csv experiments/peer_v5/runs.csv --reference "algo=trpo,"
        (several runs.csv are read as one: ours from one study, the peer's from another)

The peer's runs: the runs.csv rows whose ``peer`` column is set (a sweep with ``peer=sb3_contrib`` beside ours,
read by ``trpo_lab.reports.final_scores``); for a task without such rows, the per-seed numbers of
experiments/REFERENCES.md (sb3-contrib 2.9.2 at RL-Zoo settings, same v5 tasks and protocol, 1M env steps,
seeds 0–2, `experiments/throughput/bench/sb3_trpo_return.py ENV SEED 1000000`): eval10 = deterministic return of the
final policy over 10 episodes, train10 = mean training return of the last 10 finished episodes (ours: of the last
10 updates). Either way the peer's runs are bootstrapped like ours, never taken as exact numbers.
The "published v3" figures (SB3-contrib's documented TRPO results, MuJoCo v3, 3 seeds) are a mean ± std only:
no CI can be formed from them, and they are shown for context, not compared.

Tables: every variant and the peer with IQM [95 % CI] per task; ours against the peer (both CIs, the unpaired
difference of means, P(ours > peer)); with ``--reference``, each of our variants against that one (paired by seed
where they share seeds; a task only the peer ran has no such table); across tasks, the aggregate IQM of normalised
scores and, with ``--figure``, the performance profile (trpo_lab.reports.comparisons, trpo_lab.reports.across_tasks).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from trpo_lab.reports import across_tasks
from trpo_lab.reports.comparisons import (
    Bootstrap, difference_records, differences_table, find_reference, iqm_ci, is_peer, peer_records, peer_table,
)
from trpo_lab.reports.final_scores import comparison_table, read_runs_csvs
from trpo_lab.reports.markdown import format_ci, markdown_table

REFERENCES = Path(__file__).with_name("REFERENCES.md")
TASKS = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5")
PEER_LABEL = "sb3-contrib 2.9.2 (REFERENCES.md)"


def read_references(path: Path = REFERENCES) -> tuple[dict[str, list[tuple[int, int]]], dict[str, str]]:
    """The peer and published numbers from experiments/REFERENCES.md, the one place they are written.

    Returns (sb3 v5: task -> [(eval10, train10) for seeds 0, 1, 2], published v3: task -> SB3-contrib's documented
    final eval return "mean ± std"). The v5 rows are ``| Hopper-v5 | 3492 / 2469 | 775 / 1208 | 1287 / 1176 | mean |``;
    the v3 row is ``| SB3-contrib TRPO (docs) | v3 | ... | HalfCheetah | Hopper | Walker2d | ...``.
    """
    sb3_v5: dict[str, list[tuple[int, int]]] = {}
    published_v3: dict[str, str] = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in TASKS and len(cells) == 5 and "/" in cells[1]:  # not the random-policy table
            sb3_v5[cells[0]] = [tuple(int(v) for v in c.split("/")) for c in cells[1:4]]
        elif cells[0] == "SB3-contrib TRPO (docs)":
            published_v3 = dict(zip(("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"), cells[5:8]))
    if set(sb3_v5) != set(TASKS) or set(published_v3) != set(TASKS):
        sys.exit(f"error: {path} lacks the sb3-contrib v5 table or the SB3-contrib (docs) v3 row")
    return sb3_v5, published_v3


def with_peer(table: dict[str, dict[str, list[dict[str, Any]]]], sb3_v5: dict[str, list[tuple[int, int]]]) -> list[str]:
    """Add the REFERENCES.md runs as the peer's group of every task that has no peer rows; return those tasks."""
    added = []
    for task, variants in table.items():
        if task in sb3_v5 and not any(is_peer(rows) for rows in variants.values()):
            variants[PEER_LABEL] = [{"seed": s, "eval_final": float(e), "train_final": float(t), "peer": "sb3_contrib"}
                                    for s, (e, t) in enumerate(sb3_v5[task])]
            added.append(task)
    return added


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_csv", type=Path, nargs="+",
                        help="a study's runs.csv (scripts/final_scores.py), or several read as one (e.g. ours and the peer's)")
    parser.add_argument("--reference", help="a variant label, or a substring naming one variant per task; adds each "
                        "variant's difference to it")
    parser.add_argument("--figure", type=Path, help="write the performance profile here (beside the Markdown)")
    args = parser.parse_args(argv)
    try:  # every input checked before any output
        table = comparison_table(read_runs_csvs(args.runs_csv))
        # our variants per task; a task only the peer ran has none, and no reference to compare against
        ours = {t: o for t, vs in table.items() if (o := {v: rows for v, rows in vs.items() if not is_peer(rows)})}
        if args.reference is not None:
            for variants in ours.values():
                find_reference(list(variants), args.reference)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sb3_v5, published_v3 = read_references()
    from_references = with_peer(table, sb3_v5)
    boot = Bootstrap()
    order = [t for t in TASKS if t in table] + [t for t in table if t not in TASKS]
    table = {t: table[t] for t in order}
    fmt = lambda t: format_ci(*t, digits=0)
    rows = []
    for task, variants in table.items():
        for label, runs in variants.items():
            ev = np.array([float(r["eval_final"]) for r in runs])
            rows.append((task, label + (" (peer)" if is_peer(runs) else ""), len(runs), fmt(iqm_ci(runs, "eval_final", boot)),
                         f"{ev.mean():.0f} ± {ev.std(ddof=1):.0f}" if ev.size > 1 else f"{ev.mean():.0f}",
                         fmt(iqm_ci(runs, "train_final", boot)), published_v3.get(task, "—")))
    print("# Final scores beside sb3-contrib (v5, same protocol) and the published v3 figures\n")
    print("IQM over runs with a 95 % percentile-bootstrap CI over runs (`experiments/compare_sb3.py`; 10000 resamples, "
          "seed 0), for our variants and the peer alike. **eval**: deterministic evaluation of the final policy over 10 "
          "episodes; **train**: training return of the last 10 updates (sb3-contrib: of the last 10 finished episodes). "
          + (f"The peer's runs on {', '.join(from_references)}: the 3 seeds of `experiments/REFERENCES.md` (a CI over 3 "
             "runs is coarse: a bootstrap of 3 values takes few distinct values). " if from_references else "")
          + "*published v3*: SB3-contrib's documented TRPO result on MuJoCo v3, mean ± std over 3 seeds; its per-seed "
          "values are not published, so **no CI can be formed** for it, and it is shown for context only (other env "
          "version), not compared.\n")
    print(markdown_table(["task", "variant", "runs", "eval IQM [95 % CI]", "eval mean ± std", "train IQM [95 % CI]",
                          "published v3 (mean ± std, 3 seeds, no CI)"], rows))
    print("\n## Ours against sb3-contrib\n")
    print(peer_table(peer_records(table, boot), boot))
    if args.reference is not None:
        print(f"\n## Each variant against the reference `{args.reference}`\n")
        print(differences_table(difference_records({t: ours[t] for t in table if t in ours}, args.reference, boot),
                                args.reference, boot))
    across = across_tasks.section(table, boot, args.figure)
    if across:
        print("\n" + across.rstrip("\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
