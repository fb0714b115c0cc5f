"""Each side's plateau-escape rate on a task, with its CI, from a study's runs.csv.

    python experiments/peer_v5/plateau_escape.py experiments/mujoco_1m/runs.csv experiments/peer_v5/runs.csv \
        --task HalfCheetah-v5 --above 2500

A run *escapes* when its final deterministic evaluation (``eval_final``) is above ``--above``. HalfCheetah-v5's
outcomes at 1M steps are bimodal: plateau runs end at 1,560–1,930 and escaped runs at 2,950–4,770
(experiments/mujoco_1m, experiments/halfcheetah_plateau), so any threshold in the gap gives the same counts.

Per variant (the ``variant`` column; the peer's rows carry its name): k of n runs escaped, the rate k/n with its
95 % Wilson score interval (``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``), and, for each pair
of variants, the two-sided Fisher exact test of equal rates (``scipy.stats.fisher_exact``): few runs and rates
near 0 or 1 are where a normal approximation fails.

``--name SUBSTRING=NAME`` (repeatable) shows every variant whose label contains SUBSTRING as NAME, and pools the
runs of variants given the same NAME: e.g. one config's runs from two studies, whose labels differ only because
each study names its variants by what differs within it. A SUBSTRING that is a whole label of the data names that
variant only (``algo=trpo`` is not ``algo=trpo_no_ls``).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import sys
from pathlib import Path

from scipy import stats


def escapes(runs_csvs: list[Path], task: str, above: float, names: dict[str, str] | None = None) -> dict[str, list[bool]]:
    """variant → one bool per run of ``task`` in any of ``runs_csvs``: whether its ``eval_final`` is above ``above``.
    ``names`` maps a substring of a variant label to the name it is shown (and pooled) under."""
    rows = []
    for runs_csv in runs_csvs:
        with runs_csv.open() as f:
            rows += [row for row in csv.DictReader(f) if row["task"] == task]
    labels = {row["variant"] for row in rows}
    out: dict[str, list[bool]] = {}
    for row in rows:
        out.setdefault(display_name(row["variant"], names or {}, labels), []).append(float(row["eval_final"]) > above)
    return out


def display_name(variant: str, names: dict[str, str], labels: set[str] = frozenset()) -> str:
    """The name ``variant`` is shown under: the NAME of the one ``--name`` SUBSTRING it contains, else its label.
    A SUBSTRING in ``labels`` (a whole label) matches that label only."""
    hits = [name for sub, name in names.items() if sub == variant or (sub not in labels and sub in variant)]
    if len(hits) > 1:
        raise ValueError(f"--name: {variant!r} contains more than one SUBSTRING")
    return hits[0] if hits else variant


def table(by_variant: dict[str, list[bool]]) -> str:
    lines = ["| variant | runs | escaped | rate [95 % Wilson CI] |", "|---|---|---|---|"]
    for variant, runs in by_variant.items():
        k, n = sum(runs), len(runs)
        ci = stats.binomtest(k, n).proportion_ci(method="wilson")
        lines.append(f"| {variant} | {n} | {k} | {k / n:.2f} [{ci.low:.2f}, {ci.high:.2f}] |")
    lines += ["", "| A | B | rate A − rate B | Fisher exact p (two-sided) |", "|---|---|---|---|"]
    for (a, ra), (b, rb) in itertools.combinations(by_variant.items(), 2):
        counts = [[sum(ra), len(ra) - sum(ra)], [sum(rb), len(rb) - sum(rb)]]
        p = stats.fisher_exact(counts).pvalue
        p_text = f"{p:.2f}" if p >= 0.01 else f"{p:.1e}"  # never a p of "0.00"
        lines.append(f"| {a} | {b} | {sum(ra) / len(ra) - sum(rb) / len(rb):+.2f} | {p_text} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs_csv", type=Path, nargs="+", help="one or more runs.csv (scripts/final_scores.py)")
    p.add_argument("--task", default="HalfCheetah-v5")
    p.add_argument("--above", type=float, default=2500.0, help="an escaped run's eval_final is above this (default 2500)")
    p.add_argument("--name", action="append", default=[], metavar="SUBSTRING=NAME",
                   help="show variants whose label contains SUBSTRING as NAME; variants of one NAME pool (repeatable)")
    a = p.parse_args(argv)
    if bad := [n for n in a.name if "=" not in n]:
        print(f"error: --name {bad[0]!r}: expected SUBSTRING=NAME", file=sys.stderr)
        return 2
    names = dict(n.rsplit("=", 1) for n in a.name)
    try:
        by_variant = escapes(a.runs_csv, a.task, a.above, names)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not by_variant:
        print(f"error: no runs of {a.task} in {', '.join(map(str, a.runs_csv))}", file=sys.stderr)
        return 2
    print(f"{a.task}: a run escapes when eval_final > {a.above:g}\n")
    print(table(by_variant))
    return 0


if __name__ == "__main__":
    sys.exit(main())
