"""The trpo_paper study's verdicts: one per claim of the TRPO paper, with paired-by-seed CIs.

    python experiments/trpo_paper/verdicts.py SWEEP_DIR [SWEEP_DIR ...] --out experiments/trpo_paper/TASK
    python experiments/trpo_paper/verdicts.py experiments/trpo_paper/TASK/curve_stats.csv --out experiments/trpo_paper/TASK
    python experiments/trpo_paper/verdicts.py experiments/trpo_paper/TASK/curve_stats.csv NEW_SWEEP_DIR --out ...

From run folders it writes ``curve_stats.csv`` (one row per run) and ``curves.csv`` (each run's training curve:
``run``, ``env_steps``, ``return_mean`` per logged update), and from those CSVs alone everything else, so a
committed record recomputes, figure included, without the run folders; a record's CSV and new sweep folders
together give the record with the new runs added. ``curves.png`` is drawn only when every run has its curve (a
record older than ``curves.csv`` keeps its figure). Per run (the runs of ``experiment=trpo_paper``; its two
groups name the sampler, ``experiment/paper_task`` = TASK_SAMPLER (:func:`sampler_of`), and the variant,
``experiment/paper_variant``):

- ``eval_final``: the deterministic evaluation of the final policy (``summary.json``'s ``final_eval``, 10 episodes).
- ``train_auc``: the area under the training-return curve per env step, (1/(S_end − S_0))·∫ return d(env steps),
  by the trapezoid rule over the logged updates: the whole run's learning speed at equal simulator steps
  (the paper's Figure 4 compares curves, not only end points).
- ``steps_to_threshold``: the first ``env_steps`` at which the training return reached ``--threshold``
  (nan when it never did).
- ``paired_measured`` / ``paired_resolved`` / ``paired_improved``: updates the paired old-vs-new evaluation
  measured, resolved (|mean| > 2 SE) and found improving.

The claims, each a difference A − B over seeds, paired by seed (runs of one seed share the initial policy and the
first env seeds; :func:`trpo_lab.stats.paired_difference_ci`), 95 % percentile bootstrap:

1. vine − single path, per variant present with both samplers (and so for each other vine sampler, e.g.
   ``vine_small_trunk``); also in ``improved_share`` = paired_improved / paired_measured, the share of the measured
   updates the paired evaluation resolved as improvements;
2. TRPO − the best fixed-step NPG, per sampler and score (the best α by that score's mean over seeds, as the paper
   kept the best final result, among the α run on all of TRPO's seeds; ties by ``train_auc``: choosing on the same
   runs favours NPG);
3. empirical − analytic Fisher (``trpo_empirical_fisher`` − ``trpo``), per sampler;
4. max − mean KL (``trpo_max_kl`` − ``trpo``), per sampler.

Not a claim of the paper, but the question behind a vine sampler that changes another (1b): each vine sampler
against the one it extends (:func:`base_sampler`: ``vine_small_trunk_bootstrap`` − ``vine_small_trunk``,
``vine_small_trunk`` − ``vine``), per variant both ran, in the same scores as claim 1.

A claim's difference is "resolved" when its CI excludes 0.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without `pip install -e .`

from trpo_lab.reports.curves import align  # noqa: E402
from trpo_lab.reports.markdown import markdown_table  # noqa: E402
from trpo_lab.runs import Run, display_path, load_complete_runs  # noqa: E402
from trpo_lab.stats import bootstrap_band, bootstrap_ci, paired_difference_ci  # noqa: E402

COLUMNS = ["task", "sampler", "variant", "seed", "run", "git_commit", "env_steps", "updates", "eval_final", "train_auc",
           "steps_to_threshold", "paired_measured", "paired_resolved", "paired_improved"]
CURVE_COLUMNS = ["run", "env_steps", "return_mean"]
#: run → (env_steps, return/mean) per logged update
Curves = dict[str, tuple[np.ndarray, np.ndarray]]
SCORES = {"eval_final": "final deterministic return", "train_auc": "training return, area per env step"}
#: claim 1 only: the share of the measured updates that the paired evaluation resolved as improvements
IMPROVED_SHARE = "improved_share"
LABELS = {**SCORES, IMPROVED_SHARE: "paired: resolved improvements / measured updates"}


def score_of(record: dict[str, Any], score: str) -> float:
    """A run's ``score``: a ``curve_stats.csv`` column, or ``improved_share`` = paired_improved / paired_measured."""
    if score == IMPROVED_SHARE:
        m = float(record["paired_measured"])
        return float(record["paired_improved"]) / m if m else math.nan
    return float(record[score])


def sampler_of(paper_task: str) -> str:
    """The sampler in an ``experiment/paper_task`` name: ``single_path``, or ``vine`` and what follows it
    (``hopper_scaled_vine_small_trunk`` → ``vine_small_trunk``)."""
    if "_vine" in paper_task:
        return "vine" + paper_task.split("_vine", 1)[1]
    return "single_path"


def base_sampler(sampler: str, samplers: Sequence[str]) -> str | None:
    """The vine sampler of ``samplers`` that ``sampler`` extends: the longest one whose name, with ``_``, begins
    ``sampler``'s (``vine_small_trunk_bootstrap`` → ``vine_small_trunk``, else ``vine``); None for the others."""
    bases = [b for b in samplers if b.startswith("vine") and sampler.startswith(b + "_")]
    return max(bases, key=len) if bases else None  # a base is a vine sampler, so only a vine sampler has one


def run_record(run: Run, threshold: float) -> dict[str, Any]:
    """One ``curve_stats.csv`` row for a finished run of ``experiment=trpo_paper``."""
    task_sampler = run.overrides.get("experiment/paper_task", "")
    x, y = run.column("env_steps"), run.column("return/mean")
    ok = np.isfinite(x) & np.isfinite(y)
    auc = float(np.trapezoid(y[ok], x[ok]) / (x[ok][-1] - x[ok][0])) if ok.sum() >= 2 else math.nan
    reached = x[ok][y[ok] >= threshold]
    outcome = run.column("paired/outcome")
    return {
        "task": run.task,
        "sampler": sampler_of(task_sampler),
        "variant": run.overrides.get("experiment/paper_variant", "trpo"),
        "seed": run.seed,
        "run": display_path(run.path),
        "git_commit": (run.summary or {}).get("meta", {}).get("git_commit", ""),
        "env_steps": int(x[np.isfinite(x)][-1]),
        "updates": len(run.rows),
        "eval_final": float(((run.summary or {}).get("final_eval") or {}).get("return_mean", math.nan)),
        "train_auc": auc,
        "steps_to_threshold": float(reached[0]) if reached.size else math.nan,
        "paired_measured": int(np.isfinite(outcome).sum()),
        "paired_resolved": int((np.abs(outcome) == 1).sum()),
        "paired_improved": int((outcome == 1).sum()),
    }


def read_csv(path: Path) -> list[dict[str, Any]]:
    def value(k: str, v: str) -> Any:
        if k in ("task", "sampler", "variant", "run", "git_commit"):
            return v
        if k in ("seed", "env_steps", "updates", "paired_measured", "paired_resolved", "paired_improved"):
            return int(v)  # written back unchanged when a record is merged with new runs
        return math.nan if v == "" else float(v)
    with path.open() as f:
        return [{k: value(k, v) for k, v in row.items()} for row in csv.DictReader(f)]


def read_curves(path: Path) -> Curves:
    """``curves.csv`` back into run → (env_steps, return_mean) arrays, in the file's order."""
    points: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with path.open() as f:
        for row in csv.DictReader(f):
            points[row["run"]].append((float(row["env_steps"]), math.nan if row["return_mean"] == "" else float(row["return_mean"])))
    return {run: (np.array([x for x, _ in xy]), np.array([y for _, y in xy])) for run, xy in points.items()}


def load(sources: Sequence[Path], threshold: float) -> tuple[list[dict[str, Any]], Curves]:
    """The records and curves of ``sources``: ``curve_stats.csv`` files (with the ``curves.csv`` beside each,
    where there is one) and sweep folders, in that order; a run named twice is an error."""
    records: list[dict[str, Any]] = []
    curves: Curves = {}
    for path in (s for s in sources if s.suffix == ".csv"):
        records += read_csv(path)
        if (path.parent / "curves.csv").exists():
            curves.update(read_curves(path.parent / "curves.csv"))
    folders = [s for s in sources if s.suffix != ".csv"]
    if folders:
        runs, _ = load_complete_runs(folders)  # reports the skipped runs on stderr
        for r in runs:
            records.append(run_record(r, threshold))
            curves[records[-1]["run"]] = (r.column("env_steps"), r.column("return/mean"))
    twice = sorted(n for n, k in Counter(r["run"] for r in records).items() if k > 1)
    if twice:
        raise ValueError(f"{len(twice)} runs named twice in the sources (e.g. {', '.join(twice[:3])})")
    return records, curves


def write_csvs(records: Sequence[dict[str, Any]], curves: Curves, out: Path) -> None:
    with (out / "curve_stats.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerows(records)
    with (out / "curves.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(CURVE_COLUMNS)
        for r in records:
            if r["run"] in curves:
                for x, y in zip(*curves[r["run"]]):
                    w.writerow([r["run"], int(x), "" if not math.isfinite(y) else repr(float(y))])


Cells = dict[tuple[str, str], dict[int, dict[str, Any]]]


def cells(records: Sequence[dict[str, Any]]) -> Cells:
    """(sampler, variant) → seed → record."""
    out: Cells = defaultdict(dict)
    for r in records:
        out[(r["sampler"], r["variant"])][int(r["seed"])] = r
    return out


def compare(by: Cells, a: tuple[str, str], b: tuple[str, str], score: str, seed: int) -> dict[str, Any] | None:
    """A − B over the seeds both have, paired by seed; None when fewer than 2 seeds pair."""
    seeds = sorted(set(by.get(a, {})) & set(by.get(b, {})))
    if len(seeds) < 2:
        return None
    xa = np.array([score_of(by[a][s], score) for s in seeds], dtype=float)
    xb = np.array([score_of(by[b][s], score) for s in seeds], dtype=float)
    d, lo, hi = paired_difference_ci(xa, xb, seed=seed)
    verdict = "A better" if lo > 0 else "B better" if hi < 0 else "not resolved"
    return {"A": "/".join(a), "B": "/".join(b), "score": score, "seeds": len(seeds), "mean_A": float(xa.mean()),
            "mean_B": float(xb.mean()), "diff": d, "ci": (lo, hi), "verdict": verdict}


def best_npg(by: Cells, sampler: str, score: str) -> str | None:
    """The NPG α variant with the best mean ``score`` for ``sampler``, among those run on every seed TRPO ran (an
    α with fewer seeds, e.g. a grid still running, is not a candidate: its mean is over other seeds, and the
    comparison would pair too few); ties (e.g. every α at cart-pole's maximum 1000) broken by the mean
    ``train_auc``, the faster learner."""
    trpo_seeds = set(by.get((sampler, "trpo"), {}))
    npg = {v: (np.mean([r[score] for r in seeds.values()]), np.mean([r["train_auc"] for r in seeds.values()]))
           for (s, v), seeds in by.items() if s == sampler and v.startswith("npg") and set(seeds) >= trpo_seeds}
    return max(npg, key=npg.__getitem__) if npg else None


def claims(by: Cells, seed: int) -> list[tuple[str, dict[str, Any]]]:
    samplers = sorted({s for s, _ in by})
    variants = sorted({v for _, v in by})
    out = []
    for score in (*SCORES, IMPROVED_SHARE):
        pairs: list[tuple[str, tuple[str, str], tuple[str, str]]] = []
        for s in samplers:
            if s.startswith("vine"):
                pairs += [("1 vine vs single path", (s, v), ("single_path", v)) for v in variants]
            if base := base_sampler(s, samplers):
                pairs += [("1b vine sampler vs its base", (s, v), (base, v)) for v in variants]
        for s in samplers if score in SCORES else ():
            npg = best_npg(by, s, score)
            if npg:
                pairs.append(("2 TRPO vs best NPG", (s, "trpo"), (s, npg)))
            pairs.append(("3 empirical vs analytic FIM", (s, "trpo_empirical_fisher"), (s, "trpo")))
            pairs.append(("4 max vs mean KL", (s, "trpo_max_kl"), (s, "trpo")))
        for claim, a, b in pairs:
            c = compare(by, a, b, score, seed)
            if c is not None:
                out.append((claim, c))
    return sorted(out, key=lambda x: x[0])  # stable: each claim's rows keep the score order


def resolved_fractions(by: Cells, seed: int) -> list[dict[str, Any]]:
    """Per cell: the share of measured updates the paired evaluation resolved, and of those the share improving,
    pooled over runs, with a bootstrap CI over runs (runs resampled, ratio of sums)."""
    out = []
    for (s, v), seeds in sorted(by.items()):
        m = np.array([r["paired_measured"] for r in seeds.values()], dtype=float)
        res = np.array([r["paired_resolved"] for r in seeds.values()], dtype=float)
        imp = np.array([r["paired_improved"] for r in seeds.values()], dtype=float)
        if m.sum() == 0:
            continue
        idx = np.arange(m.size)

        def ratio(num: np.ndarray, den: np.ndarray):
            return lambda i, axis=-1: num[i.astype(int)].sum(axis=axis) / np.maximum(den[i.astype(int)].sum(axis=axis), 1)
        out.append({"sampler": s, "variant": v, "runs": int(m.size), "measured": int(m.sum()),
                    "resolved": int(res.sum()), "resolved_share": res.sum() / m.sum(),
                    "resolved_ci": bootstrap_ci([idx], ratio(res, m), seed=seed),
                    "improved_of_resolved": imp.sum() / res.sum() if res.sum() else math.nan,
                    "improved_ci": bootstrap_ci([idx], ratio(imp, res), seed=seed) if res.sum() else (math.nan,) * 2})
    return out


def fmt(x: float, digits: int = 0) -> str:
    return "–" if not math.isfinite(x) else f"{x:,.{digits}f}"


def report(records: list[dict[str, Any]], seed: int) -> str:
    by = cells(records)
    task = records[0]["task"]
    lines = [f"# trpo_paper verdicts: {task}\n",
             f"{len(records)} runs from {sorted({r['git_commit'][:7] for r in records})}. Written by "
             "`experiments/trpo_paper/verdicts.py` (its docstring defines every column); differences are A − B, "
             "**paired by seed**, 95 % percentile bootstrap CI over seeds.\n",
             "## Claims\n"]
    d = lambda c: 3 if c["score"] == IMPROVED_SHARE else 1
    rows = [[claim, c["A"], c["B"], LABELS[c["score"]], c["seeds"], fmt(c["mean_A"], d(c)), fmt(c["mean_B"], d(c)),
             f"{fmt(c['diff'], d(c))} [{fmt(c['ci'][0], d(c))}, {fmt(c['ci'][1], d(c))}]", c["verdict"]]
            for claim, c in claims(by, seed)]
    lines.append(markdown_table(["claim", "A", "B", "score", "seeds", "mean A", "mean B", "A − B [95 % CI]", "verdict"], rows))
    lines.append("\n## Paired evaluation: how many updates it resolved (pooled over runs, CI over runs)\n")
    rf = resolved_fractions(by, seed)
    lines.append(markdown_table(
        ["sampler", "variant", "runs", "measured", "resolved", "resolved share [CI]", "improved / resolved [CI]"],
        [[r["sampler"], r["variant"], r["runs"], r["measured"], r["resolved"],
          f"{fmt(r['resolved_share'], 2)} [{fmt(r['resolved_ci'][0], 2)}, {fmt(r['resolved_ci'][1], 2)}]",
          f"{fmt(r['improved_of_resolved'], 2)} [{fmt(r['improved_ci'][0], 2)}, {fmt(r['improved_ci'][1], 2)}]"]
         for r in rf]))
    lines.append("\n## Per cell (mean over seeds)\n")
    lines.append(markdown_table(
        ["sampler", "variant", "seeds", "eval_final", "train_auc", "reached threshold", "env steps", "updates"],
        [[s, v, len(sd), fmt(np.mean([r["eval_final"] for r in sd.values()]), 1),
          fmt(np.mean([r["train_auc"] for r in sd.values()]), 1),
          f"{sum(math.isfinite(r['steps_to_threshold']) for r in sd.values())}/{len(sd)}",
          fmt(np.mean([r["env_steps"] for r in sd.values()])), fmt(np.mean([r["updates"] for r in sd.values()]))]
         for (s, v), sd in sorted(by.items())]))
    return "\n".join(lines) + "\n"


Panel = tuple[str, list[tuple[str, list, str]]]  # title, then (label, curves, line style) per line


def panels_of(groups: dict[str, dict[str, list]]) -> list[Panel]:
    """One panel per sampler with every variant, and a last (claim 1) with TRPO and NPG α = 1, each under every
    sampler that ran it, when more than one did (a variant one sampler ran alone has nothing to compare)."""
    panels = [(f"{s.replace('_', ' ')}: every variant", [(v, cs, "-") for v, cs in sorted(vs.items())])
              for s, vs in sorted(groups.items())]
    styles = {"single_path": "-", "vine": "--"}  # any other vine sampler: dotted
    both = [(f"{v}, {s.replace('_', ' ')}", groups[s][v], styles.get(s, ":"))
            for v in ("trpo", "npg_a1") if sum(v in vs for vs in groups.values()) > 1
            for s in sorted(groups) if v in groups[s]]
    if both:
        others = " or dotted" if set(groups) - set(styles) else ""
        panels.append((f"claim 1: single path (solid) vs vine (dashed{others})", both))
    return panels


def plot(records: Sequence[dict[str, Any]], curves: Curves, out: Path, xmax: float | None = None) -> None:
    """curves.png: training return against env steps, mean over seeds with a 95 % bootstrap band (whole curves
    resampled), in the panels of :func:`panels_of`. ``xmax``: the x range shown (the runs go on; a flat tail hides
    the differences)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    groups: dict[str, dict[str, list[tuple[np.ndarray, np.ndarray]]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        groups[r["sampler"]][r["variant"]].append(curves[r["run"]])
    panels = panels_of(groups)
    variants = sorted({v for vs in groups.values() for v in vs})
    color_of = {v: f"C{i % 10}" for i, v in enumerate(variants)}  # one colour per variant in every panel
    fig, axes = plt.subplots(1, len(panels), figsize=(5.4 * len(panels), 4.2), sharey=True, squeeze=False)
    for ax, (title, panel) in zip(axes[0], panels):
        for label, cs, style in panel:
            x, ys = align(cs)
            mean, lo, hi = bootstrap_band(ys)
            color = color_of[label.split(",")[0]]
            ax.plot(x, mean, style, color=color, label=f"{label} (n={len(cs)})", lw=1.4)
            ax.fill_between(x, lo, hi, color=color, alpha=0.12, lw=0)
        ax.set_title(f"{records[0]['task']}: {title}", fontsize=10)
        ax.set_xlabel("env steps (vine: trunk and branches)")
        ax.xaxis.set_major_formatter(lambda v, _: f"{v / 1e3:.0f}k")
        if xmax:
            ax.set_xlim(0, xmax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7.5, loc="best")  # lower right hid Swimmer's low-α curves
    axes[0][0].set_ylabel("training return (return/mean)")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("sources", nargs="+", type=Path, help="sweep folders and/or curve_stats.csv files")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--threshold", type=float, default=950.0, help="training return for steps_to_threshold (default 950)")
    p.add_argument("--seed", type=int, default=0, help="seeds the bootstrap")
    p.add_argument("--xmax", type=float, help="the env-step range of curves.png (default: the whole run)")
    a = p.parse_args(argv)
    try:
        records, curves = load(a.sources, a.threshold)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not records:
        print(f"error: no finished runs in {[str(s) for s in a.sources]}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    rebuild = len(a.sources) == 1 and a.sources[0].suffix == ".csv"  # the record's own CSV: left as it is
    if not rebuild:
        write_csvs(records, curves, a.out)
    if all(r["run"] in curves for r in records):
        plot(records, curves, a.out, a.xmax)
    else:
        print(f"note: curves.png not drawn: {sum(r['run'] not in curves for r in records)} of {len(records)} runs "
              "have no curve (a record older than curves.csv)", file=sys.stderr)
    (a.out / "verdicts.md").write_text(report(records, a.seed))
    print((a.out / "verdicts.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
