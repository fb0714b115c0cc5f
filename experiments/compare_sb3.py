"""This study's final scores beside the peer and the published figures, from runs.csv (trpo_lab.reports.final_scores).

    python experiments/compare_sb3.py experiments/mujoco_1m/runs.csv --reference "algo=trpo," > experiments/mujoco_1m/comparison.md
    python experiments/compare_sb3.py experiments/kl_units/runs.csv > experiments/kl_units/comparison.md

The peer numbers are read from experiments/REFERENCES.md (with their sources), not measured here:
- sb3-contrib 2.9.2 TRPO at RL-Zoo settings on the same v5 tasks and the same protocol, 1M env steps, seeds 0–2
  (`experiments/throughput/bench/sb3_trpo_return.py ENV SEED 1000000`): eval10 = deterministic return of the final policy over 10
  episodes, train10 = mean training return of the last 10 finished episodes (ours: of the last 10 updates).
- SB3-contrib's documented TRPO results on v3 (final eval return, 3 seeds): the "published v3 figures".
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import trim_mean

from trpo_lab.reports.markdown import format_ci
from trpo_lab.stats import bootstrap_ci, difference_ci, iqm

REFERENCES = Path(__file__).with_name("REFERENCES.md")
TASKS = ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5")


def read_references(path: Path = REFERENCES) -> tuple[dict[str, list[tuple[int, int]]], dict[str, int]]:
    """The peer and published numbers from experiments/REFERENCES.md, the one place they are written.

    Returns (sb3 v5: task -> [(eval10, train10) per seed], published v3: task -> SB3-contrib's documented
    final eval return). The v5 rows are ``| Hopper-v5 | 3492 / 2469 | 775 / 1208 | 1287 / 1176 | mean |``; the v3
    row is ``| SB3-contrib TRPO (docs) | v3 | ... | HalfCheetah | Hopper | Walker2d | ...`` (± parts dropped).
    """
    sb3_v5: dict[str, list[tuple[int, int]]] = {}
    published_v3: dict[str, int] = {}
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] in TASKS and len(cells) == 5:
            sb3_v5[cells[0]] = [tuple(int(v) for v in c.split("/")) for c in cells[1:4]]
        elif cells[0] == "SB3-contrib TRPO (docs)":
            cheetah, hopper, walker = (int(c.split("±")[0]) for c in cells[5:8])
            published_v3 = {"HalfCheetah-v5": cheetah, "Hopper-v5": hopper, "Walker2d-v5": walker}
    if set(sb3_v5) != set(TASKS) or set(published_v3) != set(TASKS):
        sys.exit(f"error: {path} lacks the sb3-contrib v5 table or the SB3-contrib (docs) v3 row")
    return sb3_v5, published_v3


def iqm_ci(x: np.ndarray) -> tuple[float, float, float]:
    """IQM with a 95 % percentile-bootstrap CI over seeds (trpo_lab.stats, 10 000 resamples, seed 0)."""
    return iqm(x), *bootstrap_ci([x], iqm)


def main(path: str, reference: str | None) -> None:
    runs: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            runs[r["task"]][r["variant"]].append(r)
    references: dict[str, list[dict]] = {}
    for task, variants in runs.items():  # checked before any output
        named = [rows for v, rows in variants.items() if reference is not None and reference in v]
        if reference is not None and len(named) != 1:
            sys.exit(f"error: {task}: {len(named)} variants contain {reference!r}; give a substring that names one")
        references[task] = named[0] if named else []
    sb3_v5, published_v3 = read_references()
    print("# Final scores beside sb3-contrib (v5, same protocol) and the published v3 figures\n")
    print("IQM over seeds with a 95 % percentile-bootstrap CI (`experiments/compare_sb3.py`). **eval**: deterministic evaluation of the "
          "final policy over 10 episodes; **train**: training return of the last 10 updates (sb3-contrib: of the last "
          "10 episodes). sb3-contrib v5: 3 seeds, from `experiments/REFERENCES.md`; its IQM of 3 runs is their mean. "
          "*beats* compares IQMs; *CI above* says whether our CI's lower end clears the reference. *Δ sb3 v5*: our mean eval "
          "minus sb3-contrib's mean eval, with a 95 % percentile-bootstrap CI (both groups' seeds resampled; "
          "`trpo_lab.stats.difference_ci`).\n")
    print("| task | variant | runs | eval IQM [95 % CI] | eval mean ± std | train IQM [95 % CI] | sb3-contrib v5 eval (train) | "
          "published v3 | beats sb3 v5 | Δ sb3 v5 [95 % CI] | beats v3 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for task in ("Hopper-v5", "Walker2d-v5", "HalfCheetah-v5"):
        if task not in runs:
            continue
        sb3_eval = np.array([e for e, _ in sb3_v5[task]], float)
        sb3_train = np.array([t for _, t in sb3_v5[task]], float)
        sb3 = float(trim_mean(sb3_eval, 0.25))
        for variant, rows in runs[task].items():
            ev = np.array([float(r["eval_final"]) for r in rows])
            tr = np.array([float(r["train_final"]) for r in rows])
            e, elo, ehi = iqm_ci(ev)
            t, tlo, thi = iqm_ci(tr)
            verdict = lambda ref: ("yes" if e > ref else "no") + (", CI above" if elo > ref else "")
            print(f"| {task} | {variant} | {len(rows)} | {e:.0f} [{elo:.0f}, {ehi:.0f}] | {ev.mean():.0f} ± {ev.std(ddof=1):.0f} "
                  f"| {t:.0f} [{tlo:.0f}, {thi:.0f}] | {sb3:.0f} ({sb3_train.mean():.0f}) | {published_v3[task]} "
                  f"| {verdict(sb3)} | {format_ci(*difference_ci(ev, sb3_eval), digits=0, signed=True)} | {verdict(published_v3[task])} |")
    if reference is None:
        return
    col = lambda rows, k: [float(r[k]) for r in rows]
    print(f"\n## Each variant against the reference `{reference}`\n")
    print("Difference of means over seeds (variant − reference) with a 95 % percentile-bootstrap CI, each group's seeds "
          "resampled on its own. Resolved where the CI excludes 0.\n")
    print("| task | variant | runs | eval: Δmean [95 % CI] | train: Δmean [95 % CI] |")
    print("|---|---|---|---|---|")
    for task, variants in runs.items():
        ref = references[task]
        diff = lambda rows, k: format_ci(*difference_ci(col(rows, k), col(ref, k)), digits=0, signed=True)
        for variant, rows in variants.items():
            if rows is not ref:
                print(f"| {task} | {variant} | {len(rows)} | {diff(rows, 'eval_final')} | {diff(rows, 'train_final')} |")

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs_csv", help="a study's runs.csv (scripts/final_scores.py)")
    parser.add_argument("--reference", help="a substring naming one variant per task; adds each variant's difference to it")
    args = parser.parse_args()
    main(args.runs_csv, args.reference)
