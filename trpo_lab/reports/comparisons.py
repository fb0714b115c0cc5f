"""Comparisons of two groups of runs on one task, and the report tables built from them.

A group is a list of ``runs.csv`` rows (:mod:`trpo_lab.reports.final_scores`): ``seed``, ``eval_final``,
``train_final`` and ``peer`` (empty for our runs, e.g. ``sb3_contrib`` for a peer's).

**Paired or unpaired.** Two of our groups on one task that ran the same seeds start from the same initial
conditions (network initialisation, env seeds), so they are compared **paired by seed**: the mean of the
per-seed differences a_s − b_s over the seeds both ran, its CI resampling those pairs
(:func:`trpo_lab.stats.paired_difference_ci`); a seed only one group ran is left out. Otherwise (fewer than two
shared seeds, or a peer's runs: other code, nothing shared) **unpaired**: mean(a) − mean(b), each group
resampled on its own (:func:`trpo_lab.stats.difference_ci`). The probability of improvement P(a > b)
(:func:`trpo_lab.stats.probability_of_improvement`) always compares all runs of a with all runs of b, as
rliable defines it. Every table's legend says which comparison each row uses.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trpo_lab.reports.markdown import format_ci, markdown_table
from trpo_lab.stats import bootstrap_ci, difference_ci, iqm, paired_difference_ci, probability_of_improvement

Rows = Sequence[Mapping[str, Any]]
#: ``{task: {variant label: rows}}``
Table = Mapping[str, Mapping[str, Rows]]


@dataclass(frozen=True)
class Bootstrap:
    """The bootstrap settings every CI of a report shares."""

    resamples: int = 10_000
    confidence: float = 0.95
    seed: int = 0

    @property
    def pct(self) -> str:
        return f"{self.confidence:.0%}"

    def kwargs(self) -> dict[str, Any]:
        return {"n_resamples": self.resamples, "confidence": self.confidence, "seed": self.seed}


@dataclass(frozen=True)
class Comparison:
    """``a`` against ``b`` on one score: ``kind`` is ``paired`` (on ``pairs`` shared seeds) or ``unpaired``;
    ``difference`` = (value, lower, upper) as the kind defines it; ``improvement`` = P(a > b) with its CI."""

    kind: str
    n_a: int
    n_b: int
    pairs: int
    difference: tuple[float, float, float]
    improvement: tuple[float, float, float]

    def kind_text(self) -> str:
        return f"paired ({self.pairs} seeds)" if self.kind == "paired" else "unpaired"


def is_peer(rows: Rows) -> bool:
    """Whether the group is a peer's runs (its ``peer`` column is set)."""
    return any(r.get("peer") for r in rows)


def _finite(rows: Rows, key: str) -> list[tuple[Any, float]]:
    return [(r.get("seed"), float(r[key])) for r in rows if r.get(key) is not None and math.isfinite(float(r[key]))]


def shared_seeds(a: Rows, b: Rows, key: str = "eval_final") -> list[int]:
    """The seeds both groups ran once each with a finite ``key``, in ``a``'s order; empty when either group is a
    peer's (no shared initial conditions across code bases)."""
    if is_peer(a) or is_peer(b):
        return []
    seeds_a, seeds_b = [s for s, _ in _finite(a, key)], [s for s, _ in _finite(b, key)]
    once = lambda seeds, s: s is not None and seeds.count(s) == 1
    return [s for s in seeds_a if once(seeds_a, s) and once(seeds_b, s)]


def compare(a: Rows, b: Rows, key: str, boot: Bootstrap = Bootstrap()) -> Comparison:
    """``a`` against ``b`` on the score ``key``: paired by seed when they share at least two seeds and neither is a
    peer's, else unpaired (module docstring)."""
    va, vb = _finite(a, key), _finite(b, key)
    x, y = np.array([v for _, v in va]), np.array([v for _, v in vb])
    poi = probability_of_improvement(x, y, **boot.kwargs())
    seeds = shared_seeds(a, b, key)
    if len(seeds) >= 2:
        by_a, by_b = dict(va), dict(vb)
        diff = paired_difference_ci([by_a[s] for s in seeds], [by_b[s] for s in seeds], **boot.kwargs())
        return Comparison("paired", x.size, y.size, len(seeds), diff, poi)
    diff = difference_ci(x, y, **boot.kwargs()) if x.size and y.size else (math.nan,) * 3
    return Comparison("unpaired", x.size, y.size, 0, diff, poi)


def iqm_ci(rows: Rows, key: str, boot: Bootstrap = Bootstrap()) -> tuple[float, float, float]:
    """IQM over the group's runs of ``key`` with its percentile-bootstrap CI (runs resampled)."""
    x = np.array([v for _, v in _finite(rows, key)])
    if x.size == 0:
        return math.nan, math.nan, math.nan
    return iqm(x), *bootstrap_ci([x], iqm, boot.resamples, boot.confidence, boot.seed)


def find_reference(variants: Sequence[str], spec: str) -> str:
    """The one label equal to ``spec``, else the one containing it; ValueError naming the candidates otherwise."""
    if spec in variants:
        return spec
    named = [v for v in variants if spec in v]
    if len(named) != 1:
        raise ValueError(f"{len(named)} variants contain {spec!r} ({'; '.join(named) or 'none'}); give one that names one")
    return named[0]


def _ci(t: tuple[float, float, float], digits: int = 0, signed: bool = True) -> str:
    return format_ci(*t, digits=digits, signed=signed)


KEYS = (("eval_final", "eval"), ("train_final", "train"))


def difference_records(table: Table, reference: str, boot: Bootstrap = Bootstrap(),
                       keys: Sequence[tuple[str, str]] = KEYS) -> list[dict[str, Any]]:
    """Per task, each of our variants against the variant ``reference`` names (:func:`find_reference`): one record
    with, per score, the comparison's kind, sizes, difference and P(variant > reference) (each a (value, lo, hi)).
    Raises ValueError when a task has no such variant, before any comparison is made."""
    refs = {task: find_reference(list(variants), reference) for task, variants in table.items()}
    records = []
    for task, variants in table.items():
        ref = variants[refs[task]]
        for label, runs in variants.items():
            if label == refs[task] or is_peer(runs):  # a peer: peer_records
                continue
            records.append({"task": task, "variant": label, "reference": refs[task],
                            **{k: asdict(compare(runs, ref, k, boot)) for k, _ in keys}})
    return records


def differences_table(records: Sequence[Mapping[str, Any]], reference: str, boot: Bootstrap = Bootstrap(),
                      keys: Sequence[tuple[str, str]] = KEYS) -> str:
    """:func:`difference_records` as Markdown, with a legend that says what paired and unpaired mean."""
    rows = []
    for r in records:
        first = Comparison(**r[keys[0][0]])
        rows.append([r["task"], r["variant"], f"{first.n_a} vs {first.n_b}", first.kind_text()]
                    + [_ci(r[k]["difference"]) for k, _ in keys] + [_ci(first.improvement, 2, signed=False)])
    header = (["task", "variant", "runs (variant vs reference)", "comparison"]
              + [f"{name}: Δ [{boot.pct} CI]" for _, name in keys] + [f"P({keys[0][1]}: variant > reference) [{boot.pct} CI]"])
    return (f"Each variant against the reference `{reference}` (variant − reference). **paired (n seeds)**: the two "
            "groups ran the same seeds, so Δ is the mean over the n shared seeds of the per-seed difference, its CI "
            "resampling the seed pairs (seeds only one group ran are left out; identical runs give +0 [+0, +0]). "
            "**unpaired**: Δ = difference of the groups' means, each group resampled on its own. "
            f"Percentile bootstrap, {boot.resamples} resamples, seed {boot.seed}. Resolved where the CI excludes 0. "
            "*P(variant > reference)*: probability that a run of the variant scores above a run of the reference "
            "(ties ½; Mann–Whitney U / (n·m), rliable), over all runs of both, each group resampled on its own.\n\n"
            + markdown_table(header, rows))


def peer_records(table: Table, boot: Bootstrap = Bootstrap(), key: str = "eval_final") -> list[dict[str, Any]]:
    """Per task with a peer's group, each of our variants beside each peer group: both IQMs with their CIs and the
    (unpaired) comparison of ours against the peer's on ``key``."""
    records = []
    for task, variants in table.items():
        peers = {label: runs for label, runs in variants.items() if is_peer(runs)}
        for peer_label, peer_runs in peers.items():
            p_iqm = iqm_ci(peer_runs, key, boot)
            for label, runs in variants.items():
                if label not in peers:
                    records.append({"task": task, "variant": label, "peer": peer_label, "key": key,
                                    "iqm": iqm_ci(runs, key, boot), "peer_iqm": p_iqm,
                                    **asdict(compare(runs, peer_runs, key, boot))})
    return records


def peer_table(records: Sequence[Mapping[str, Any]], boot: Bootstrap = Bootstrap()) -> str:
    """:func:`peer_records` as Markdown with its legend; '' when there are none."""
    if not records:
        return ""
    rows = [[r["task"], r["variant"], r["n_a"], _ci(r["iqm"], signed=False), r["peer"], r["n_b"],
             _ci(r["peer_iqm"], signed=False), _ci(r["difference"]), _ci(r["improvement"], 2, signed=False)]
            for r in records]
    pct = boot.pct
    return ("Our runs beside the peer's, each side with its own CI (the peer's runs are bootstrapped like ours, never "
            f"taken as exact). IQM over runs, {pct} percentile-bootstrap CI. *Δ mean*: mean(ours) − mean(peer), "
            "**unpaired** (other code: no shared initial conditions), each side resampled on its own. "
            "*P(ours > peer)*: probability that one of our runs scores above one of the peer's (ties ½; Mann–Whitney "
            f"U / (n·m), rliable), each side resampled on its own. {boot.resamples} resamples, seed {boot.seed}.\n\n"
            + markdown_table(["task", "ours", "runs", f"IQM [{pct} CI]", "peer", "runs", f"peer IQM [{pct} CI]",
                              f"Δ mean, unpaired [{pct} CI]", f"P(ours > peer) [{pct} CI]"], rows))
