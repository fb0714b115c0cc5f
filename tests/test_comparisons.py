"""Comparisons in the reports (trpo_lab.reports.comparisons via final_scores and experiments/compare_sb3.py):
paired by seed where runs share seeds, unpaired against a peer, both sides with a CI; checked by hand."""
from __future__ import annotations

import csv
import importlib.util
import json
import re
from pathlib import Path

from helpers import MUJOCO_1M_RUNS, config_for, return_rows, write_run

from trpo_lab.reports import final_scores

ROOT = Path(__file__).resolve().parents[1]
EVALS = {  # task → variant → eval_final of seeds 0, 1, 2
    "Hopper-v5": {"trpo": [100.0, 200.0, 300.0], "trpo_no_ls": [110.0, 210.0, 310.0], "peer": [150.0, 250.0, 350.0]},
    "Walker2d-v5": {"trpo": [400.0, 900.0, 650.0], "trpo_no_ls": [400.0, 900.0, 650.0], "peer": [500.0, 600.0, 700.0]},
}


def _sweep(root: Path, table: dict[str, dict[str, list[float]]] = EVALS) -> None:
    for task, variants in table.items():
        for variant, evals in variants.items():
            for seed, ev in enumerate(evals):
                overrides = ["peer=sb3_contrib"] if variant == "peer" else [f"algo={variant}"]
                config = config_for(overrides + [f"seed={seed}"], seed=seed, env_id=task, max_kl=0.01, total_env_steps=12000)
                if variant == "peer":
                    config["peer"] = {"name": "sb3_contrib_trpo", "n_envs": 2}  # as conf/peer/sb3_contrib.yaml composes
                summary = {"env_steps": 12000, "updates": 12, "final_eval": {"return_mean": ev, "return_std": 0.0, "episodes": 10}}
                if variant != "peer":  # the lab counts collapses; sb3-contrib does not measure them
                    summary["collapses"] = 1
                write_run(root / f"{task}-{variant}-{seed}", overrides + [f"seed={seed}"], return_rows([ev] * 12),
                          env_id=task, seed=seed, config=config, summary=summary)


def _load(path: Path):
    """A study script (experiments/…/NAME.py) as a module."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section(md: str, heading: str) -> str:
    """The text under ``## heading`` up to the next heading."""
    return md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def _row(table: str, *cells: str) -> str:
    """The one Markdown row that holds every cell."""
    rows = [ln for ln in table.splitlines() if all(f"| {c} |" in ln for c in cells)]
    assert len(rows) == 1, (cells, rows)
    return rows[0]


def test_final_scores_pairs_our_variants_by_seed_and_puts_the_peer_beside_them(tmp_path):
    _sweep(tmp_path / "sweep")
    assert final_scores.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out"), "--reference", "trpo-lab, algo=trpo"]) == 0
    md = (tmp_path / "out" / "final_scores.md").read_text()
    with open(tmp_path / "out" / "runs.csv", newline="") as f:
        peers = {(r["variant"], r["peer"]) for r in csv.DictReader(f)}
    assert {p for _, p in peers} == {"", "sb3_contrib_trpo"}
    ours = lambda variant, task: f"trpo-lab, algo={variant}"  # beside a peer, our labels say trpo-lab and what differs
    peer_label = next(v for v, p in peers if p)
    # Walker2d: bit-identical runs, paired on the 3 seeds: exactly 0; Hopper: trpo_no_ls = trpo + 10 on every seed
    diffs = _section(md, "Differences between variants")
    assert "| paired (3 seeds) | +0 [+0, +0] | +0 [+0, +0] |" in _row(diffs, "Walker2d-v5", ours("trpo_no_ls", "Walker2d-v5"))
    assert "| paired (3 seeds) | +10 [+10, +10] | +10 [+10, +10] |" in _row(diffs, "Hopper-v5", ours("trpo_no_ls", "Hopper-v5"))
    assert peer_label not in diffs  # the peer is never paired: it has its own table
    # the peer ran the same seed numbers but other code: unpaired, its IQM with its own CI, P(ours > peer) by hand:
    # Hopper trpo 100, 200, 300 vs peer 150, 250, 350: 0 + 1 + 2 wins of 9 pairs
    peer_part = _section(md, "Against the peer")
    row = _row(peer_part, "Hopper-v5", ours("trpo", "Hopper-v5"), peer_label)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "3" and cells[5] == "3" and re.fullmatch(r"250 \[\d+, \d+\]", cells[6])  # the peer's CI
    assert cells[7].startswith("-50 [") and cells[7] != "-50 [-50, -50]"  # unpaired; paired by seed it would be exact
    assert cells[8].startswith("0.33 [")
    assert "**unpaired** (other code" in peer_part
    assert f"{peer_label} (peer)" in md and "## Across tasks" in md and "| Hopper-v5 | 22.25 | 3372.00 |" in md
    assert (tmp_path / "out" / "performance_profile.png").stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "final_scores.json").read_text())
    (walker,) = [r for r in saved["differences"] if r["task"] == "Walker2d-v5"]
    assert walker["eval_final"]["kind"] == "paired" and walker["eval_final"]["difference"] == [0.0, 0.0, 0.0]
    assert {(r["task"], r["kind"]) for r in saved["against_peer"]} == {("Hopper-v5", "unpaired"), ("Walker2d-v5", "unpaired")}
    collapses = {(r["task"], r["variant"]): r["collapses"] for r in saved["records"] if r["task"] == "Hopper-v5"}
    assert collapses == {("Hopper-v5", peer_label): None, ("Hopper-v5", ours("trpo", "")): 3,
                         ("Hopper-v5", ours("trpo_no_ls", "")): 3}  # not measured is n/a, never 0
    assert re.search(rf"\| Hopper-v5 \| {re.escape(peer_label)} \| n/a \|", md)
    # rebuilt from runs.csv: the same tables
    assert final_scores.main([str(tmp_path / "out" / "runs.csv"), "--out", str(tmp_path / "again"), "--reference", "trpo-lab, algo=trpo"]) == 0
    strip = lambda text: text.split("\n\nSources: ")[0]
    assert strip((tmp_path / "again" / "final_scores.md").read_text()) == strip(md)


def test_a_committed_runs_csv_without_the_peer_column_gives_the_paired_zero(tmp_path):
    assert final_scores.main([str(MUJOCO_1M_RUNS), "--out", str(tmp_path), "--reference",
                              "algo=trpo,", "--resamples", "2000"]) == 0
    md = _section((tmp_path / "final_scores.md").read_text(), "Differences between variants")
    assert "| paired (5 seeds) | +0 [+0, +0] | +0 [+0, +0] |" in _row(md, "Walker2d-v5", "algo=trpo_no_ls, algo.step_rule.step_size=(default)")


def test_a_reference_naming_no_single_variant_is_a_one_line_error(tmp_path, capsys):
    runs_csv = str(MUJOCO_1M_RUNS)
    assert final_scores.main([runs_csv, "--out", str(tmp_path / "out"), "--reference", "algo=trpo"]) == 2  # 2 match
    err = capsys.readouterr().err
    assert err.startswith("error: --reference: ") and err.count("\n") == 1 and not (tmp_path / "out").exists()


def test_compare_sb3_bootstraps_the_peer_and_shows_no_ci_for_the_published_mean(tmp_path, capsys):
    module = _load(ROOT / "experiments" / "compare_sb3.py")
    figure = tmp_path / "profile.png"
    assert module.main([str(MUJOCO_1M_RUNS), "--reference", "algo=trpo,",
                        "--figure", str(figure)]) == 0
    md = capsys.readouterr().out
    # sb3-contrib's 3 Hopper seeds 3492, 775, 1287: their IQM (= mean of 3) with a CI spanning the runs
    assert re.search(r"\| Hopper-v5 \| sb3-contrib [^|]* \(peer\) \| 3 \| 1851 \[775, 3492\] \|", md)
    assert "**no CI can be formed**" in md and "| 3372 ± 215 |" in md
    diffs = _section(md, "Each variant against the reference `algo=trpo,`")
    assert "| paired (5 seeds) | +0 [+0, +0] | +0 [+0, +0] |" in _row(diffs, "Walker2d-v5", "algo=trpo_no_ls, algo.step_rule.step_size=(default)")
    assert figure.stat().st_size > 0 and f"]({figure.name})" in md
    assert module.main([str(MUJOCO_1M_RUNS), "--reference", "algo=trpo"]) == 2


def test_compare_sb3_with_a_reference_leaves_out_a_task_only_the_peer_ran(tmp_path, capsys):
    module = _load(ROOT / "experiments" / "compare_sb3.py")
    _sweep(tmp_path / "sweep", {"Hopper-v5": EVALS["Hopper-v5"], "Walker2d-v5": {"peer": EVALS["Walker2d-v5"]["peer"]}})
    assert final_scores.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    capsys.readouterr()
    assert module.main([str(tmp_path / "out" / "runs.csv"), "--reference", "trpo-lab, algo=trpo"]) == 0
    md = capsys.readouterr().out
    # Walker2d is in the score table (the peer's 3 runs) but has no variant of ours to difference
    assert re.search(r"\| Walker2d-v5 \| [^|]*\(peer\) \| 3 \|", md)
    diffs = _section(md, "Each variant against the reference `trpo-lab, algo=trpo`")
    assert "Walker2d-v5" not in diffs
    # trpo_no_ls − trpo on Hopper, paired by seed: every seed differs by +10
    assert "| paired (3 seeds) | +10 [+10, +10] |" in _row(diffs, "Hopper-v5", "trpo-lab, algo=trpo_no_ls")


def _fisher_two_sided(k1: int, n1: int, k2: int, n2: int) -> float:
    """Fisher's exact test by enumeration: the hypergeometric tables with the same margins that are at most as
    likely as the observed one."""
    from math import comb
    total, k = n1 + n2, k1 + k2
    prob = lambda a: comb(n1, a) * comb(n2, k - a) / comb(total, k)
    seen = prob(k1)
    return sum(prob(a) for a in range(max(0, k - n2), min(k, n1) + 1) if prob(a) <= seen * (1 + 1e-9))


def test_plateau_escape_pools_renamed_variants_and_matches_hand_counts(tmp_path, capsys):
    module = _load(ROOT / "experiments" / "peer_v5" / "plateau_escape.py")
    fields = ["task", "variant", "eval_final"]
    studies = {  # the same config under two studies' labels, a second config, and another task
        "a.csv": [("HalfCheetah-v5", "algo=trpo, x=(default)", e) for e in (1900, 4000, 1800, 1850)]
                 + [("Hopper-v5", "algo=trpo, x=(default)", 9000)],
        "b.csv": [("HalfCheetah-v5", "x=(default), y=1", e) for e in (3000, 1700, 1750, 1600, 1650, 1500)]
                 + [("HalfCheetah-v5", "x=2, y=1", e) for e in (4400, 3900, 5000, 1700, 4100)],
    }
    for name, rows in studies.items():
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(fields)
            w.writerows(rows)
    args = [str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--name", "x=(default)=default", "--name", "x=2=wide"]
    assert module.main(args) == 0
    md = capsys.readouterr().out
    # default: 1 + 1 of 4 + 6 above 2500; wide: 4 of 5; the Wilson interval by its closed form
    for name, k, n in (("default", 2, 10), ("wide", 4, 5)):
        z, p = 1.959963984540054, k / n
        centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
        assert f"| {name} | {n} | {k} | {p:.2f} [{centre - half:.2f}, {centre + half:.2f}] |" in md
    assert f"| default | wide | {2 / 10 - 4 / 5:+.2f} | {_fisher_two_sided(2, 10, 4, 5):.2f} |" in md
    assert "algo=trpo" not in md  # every label renamed, Hopper's run not counted
    # a label matching two names, or a malformed --name: a one-line error
    assert module.main([str(tmp_path / "a.csv"), "--name", "x=default", "--name", "trpo=t"]) == 2
    assert module.main([str(tmp_path / "a.csv"), "--name", "trpo"]) == 2
    err = capsys.readouterr().err
    assert err.count("error: ") == 2 and err.count("\n") == 2


def test_plateau_escape_name_equal_to_a_label_names_that_label_only(tmp_path, capsys):
    """``algo=trpo`` is a whole label and a substring of ``algo=trpo_no_ls``: ``--name algo=trpo=default`` renames
    the first only (mujoco_1m's labels since the label of a key a config lacks was dropped)."""
    module = _load(ROOT / "experiments" / "peer_v5" / "plateau_escape.py")
    with open(tmp_path / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["task", "variant", "eval_final"])
        w.writerows([("HalfCheetah-v5", "algo=trpo", e) for e in (4000, 1800)]
                    + [("HalfCheetah-v5", "algo=trpo_no_ls", e) for e in (1900, 1800, 1700)])
    assert module.main([str(tmp_path / "runs.csv"), "--name", "algo=trpo=default"]) == 0
    md = capsys.readouterr().out
    assert "| default | 2 | 1 |" in md and "| algo=trpo_no_ls | 3 | 0 |" in md


def test_trpo_paper_verdicts_judge_claim_1_for_every_vine_sampler_paired_by_seed(tmp_path, capsys):
    """A curve_stats.csv with single path and three vine samplers, TRPO (3 seeds each): claim 1 is judged for
    every vine sampler against single path, and 1b each against the vine sampler it extends, paired by seed;
    differences constant over seeds give a zero-width CI."""
    module = _load(ROOT / "experiments" / "trpo_paper" / "verdicts.py")
    assert [module.sampler_of(t) for t in ("hopper_scaled_single_path", "hopper_scaled_vine",
                                           "walker2d_scaled_vine_small_trunk", "cartpole_vine")] == [
        "single_path", "vine", "vine_small_trunk", "vine"]
    base = {"single_path": 1000.0, "vine": 700.0, "vine_small_trunk": 1100.0, "vine_small_trunk_bootstrap": 1150.0}
    with open(tmp_path / "curve_stats.csv", "w", newline="") as f:
        w = csv.DictWriter(f, module.COLUMNS)
        w.writeheader()
        for sampler, value in base.items():
            for seed, spread in enumerate((0.0, 500.0, -300.0)):  # seeds differ widely; samplers by a constant
                w.writerow({"task": "Hopper-v5", "sampler": sampler, "variant": "trpo", "seed": seed,
                            "run": f"{sampler}/{seed}", "git_commit": "0" * 40, "env_steps": 2_000_000, "updates": 40,
                            "eval_final": value + spread, "train_auc": value / 2 + spread, "steps_to_threshold": "",
                            "paired_measured": 10, "paired_resolved": 4, "paired_improved": 2})
    assert module.main([str(tmp_path / "curve_stats.csv"), "--out", str(tmp_path)]) == 0
    md = (tmp_path / "verdicts.md").read_text()
    claim_1 = [ln for ln in md.splitlines() if ln.startswith("| 1 vine vs single path") and "final deterministic" in ln]
    assert claim_1 == [
        "| 1 vine vs single path | vine/trpo | single_path/trpo | final deterministic return | 3 | 766.7 | 1,066.7 "
        "| -300.0 [-300.0, -300.0] | B better |",
        "| 1 vine vs single path | vine_small_trunk/trpo | single_path/trpo | final deterministic return | 3 | 1,166.7 "
        "| 1,066.7 | 100.0 [100.0, 100.0] | A better |",
        "| 1 vine vs single path | vine_small_trunk_bootstrap/trpo | single_path/trpo | final deterministic return | 3 "
        "| 1,216.7 | 1,066.7 | 150.0 [150.0, 150.0] | A better |"]
    # 1b: each vine sampler against the one it extends (the longest vine name it begins with), never single path
    assert [module.base_sampler(s, list(base)) for s in base] == [None, None, "vine", "vine_small_trunk"]
    ablation = [ln.split(" | ")[1:3] + ln.split(" | ")[7:8] for ln in md.splitlines()
                if ln.startswith("| 1b vine sampler vs its base") and "final deterministic" in ln]
    assert ablation == [["vine_small_trunk/trpo", "vine/trpo", "400.0 [400.0, 400.0]"],
                        ["vine_small_trunk_bootstrap/trpo", "vine_small_trunk/trpo", "50.0 [50.0, 50.0]"]]


def test_trpo_paper_claim_2_takes_the_best_npg_among_the_alphas_run_on_all_of_trpos_seeds():
    """TRPO and NPG α = 1 on seeds 0-2, α = 3 on seed 0 only (a grid still running) with the best score: claim 2
    compares TRPO with α = 1 on 3 pairs (by hand: 500 − 300 = 200 on every seed), not with α = 3 on 1 pair, and
    picks α = 3 once it has every seed."""
    module = _load(ROOT / "experiments" / "trpo_paper" / "verdicts.py")

    def rec(variant: str, seed: int, score: float) -> dict:
        return {"task": "Hopper-v5", "sampler": "single_path", "variant": variant, "seed": seed, "run": f"{variant}/{seed}",
                "eval_final": score + 10 * seed, "train_auc": score + 10 * seed, "paired_measured": 0}
    records = ([rec("trpo", s, 500.0) for s in range(3)] + [rec("npg_a1", s, 300.0) for s in range(3)]
               + [rec("npg_a3", 0, 3000.0)])
    by = module.cells(records)
    assert module.best_npg(by, "single_path", "eval_final") == "npg_a1"
    rows = [c for claim, c in module.claims(by, seed=0) if claim.startswith("2 ")]
    assert [(c["B"], c["seeds"], c["diff"], c["ci"]) for c in rows] == [("single_path/npg_a1", 3, 200.0, (200.0, 200.0))] * 2
    by = module.cells(records + [rec("npg_a3", s, 3000.0) for s in (1, 2)])
    assert module.best_npg(by, "single_path", "eval_final") == "npg_a3"


def test_trpo_paper_claim_1_panel_shows_a_variant_only_where_more_than_one_sampler_ran_it():
    """Swimmer's record: TRPO under single path and vine, NPG α = 1 under single path only: the claim-1 panel draws
    TRPO under both samplers and leaves α = 1 out; with no variant under two samplers there is no claim-1 panel."""
    module = _load(ROOT / "experiments" / "trpo_paper" / "verdicts.py")
    groups = {"single_path": {"trpo": ["c"], "npg_a1": ["c"]}, "vine": {"trpo": ["c"]}}
    panels = module.panels_of(groups)
    assert [title.split(":")[0] for title, _ in panels] == ["single path", "vine", "claim 1"]
    assert [(label, style) for label, _, style in panels[-1][1]] == [("trpo, single path", "-"), ("trpo, vine", "--")]
    assert [title for title, _ in module.panels_of({"single_path": {"trpo": ["c"]}, "vine": {"npg_a1": ["c"]}})] == [
        "single path: every variant", "vine: every variant"]


def test_trpo_paper_record_merges_with_new_runs_and_redraws_its_curves_from_csv(tmp_path, capsys):
    """A record is its two CSVs: merging two records writes their union, every curve point unchanged (a NaN before
    the first finished episode included), and draws curves.png from curves.csv alone; a record without curves.csv
    still merges, but then no figure is drawn; a run named in two sources is a one-line error."""
    module = _load(ROOT / "experiments" / "trpo_paper" / "verdicts.py")
    curves = {"a/0": [(1000, ""), (2000, "10.5"), (3000, "20.25")], "a/1": [(1000, "1.0"), (2000, "2.0"), (3000, "4.0")],
              "b/0": [(1500, ""), (3000, "30.0")]}

    def record(folder: str, runs: list[tuple[str, str, int]], with_curves: bool = True) -> Path:
        (tmp_path / folder).mkdir()
        with open(tmp_path / folder / "curve_stats.csv", "w", newline="") as f:
            w = csv.DictWriter(f, module.COLUMNS)
            w.writeheader()
            for run, sampler, seed in runs:
                w.writerow({"task": "Hopper-v5", "sampler": sampler, "variant": "trpo", "seed": seed, "run": run,
                            "git_commit": "0" * 40, "env_steps": 3000, "updates": 3, "eval_final": 100.0 + seed,
                            "train_auc": 50.0, "steps_to_threshold": "", "paired_measured": 2, "paired_resolved": 1,
                            "paired_improved": 1})
        if with_curves:
            with open(tmp_path / folder / "curves.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(module.CURVE_COLUMNS)
                w.writerows([run, x, y] for run, _, _ in runs for x, y in curves[run])
        return tmp_path / folder / "curve_stats.csv"

    a = record("a", [("a/0", "single_path", 0), ("a/1", "single_path", 1)])
    b = record("b", [("b/0", "vine", 0)])
    assert module.main([str(a), str(b), "--out", str(tmp_path / "merged")]) == 0
    merged = tmp_path / "merged"
    with open(merged / "curves.csv", newline="") as f:
        assert list(csv.reader(f)) == [module.CURVE_COLUMNS] + [[run, str(x), y] for run in ("a/0", "a/1", "b/0")
                                                                for x, y in curves[run]]
    with open(merged / "curve_stats.csv", newline="") as f:
        assert [(r["run"], r["seed"], r["env_steps"]) for r in csv.DictReader(f)] == [
            ("a/0", "0", "3000"), ("a/1", "1", "3000"), ("b/0", "0", "3000")]
    assert (merged / "curves.png").stat().st_size > 10_000
    assert "nan" not in (merged / "verdicts.md").read_text()  # b's one vine run has no CI: "–", not "nan"
    (merged / "curves.png").unlink()
    assert module.main([str(merged / "curve_stats.csv"), "--out", str(merged)]) == 0  # the record alone redraws it
    assert (merged / "curves.png").exists()
    old = record("old", [("c/0", "single_path", 2)], with_curves=False)
    assert module.main([str(a), str(old), "--out", str(tmp_path / "partial")]) == 0
    assert not (tmp_path / "partial" / "curves.png").exists()
    assert "curves.png not drawn: 1 of 3 runs" in capsys.readouterr().err
    assert module.main([str(a), str(merged / "curve_stats.csv"), "--out", str(tmp_path / "twice")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: 2 runs named twice") and err.count("\n") == 1
