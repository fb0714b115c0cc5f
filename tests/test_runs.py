"""Reading run folders, checking them against their config, and grouping them (trpo_lab.runs), on
hand-written run folders whose every number and label is known."""
from __future__ import annotations

import os

import yaml
from helpers import config_for, return_rows, write_run

from trpo_lab.runs import group_runs, labels_by_path, load_complete_runs, load_runs, pooling_warnings, read_run


def _labels(groups):
    return {task: sorted(variants) for task, variants in groups.items()}


def test_runs_pool_across_seeds_and_output_settings_only(tmp_path):
    for i, (seed, mode, threads) in enumerate([(0, "offline", 1), (1, "disabled", 4), (2, "offline", 1)]):
        config = config_for(["algo=trpo"], seed=seed, env_id="Hopper-v5", max_kl=0.01, total_env_steps=10_000)
        config["logger"]["wandb"]["mode"], config["torch_threads"] = mode, threads
        write_run(tmp_path / str(i), ["algo=trpo", f"seed={seed}", f"logger.wandb.mode={mode}"], return_rows([1.0]),
                  config=config)
    groups = group_runs(load_runs([tmp_path])[0])
    assert _labels(groups) == {"Hopper-v5": ["all runs"]}
    assert [r.seed for r in groups["Hopper-v5"]["all runs"]] == [0, 1, 2]
    assert pooling_warnings(groups) == []


def test_labels_name_only_the_overrides_that_differ_and_tasks_are_panels(tmp_path):
    for i, (algo, seed, env) in enumerate([("npg", 0, "Hopper-v5"), ("npg", 1, "Hopper-v5"), ("trpo", 0, "Hopper-v5"),
                                           ("npg", 0, "Walker2d-v5")]):
        write_run(tmp_path / str(i), ["experiment=variants", f"algo={algo}", f"seed={seed}", f"env.id={env}"],
                  return_rows([1.0]), seed=seed, env_id=env)
    groups = group_runs(load_runs([tmp_path])[0])
    assert _labels(groups) == {"Hopper-v5": ["algo=npg", "algo=trpo"], "Walker2d-v5": ["algo=npg"]}
    assert [r.seed for r in groups["Hopper-v5"]["algo=npg"]] == [0, 1]


def test_a_smoke_run_and_a_full_run_are_separate_groups_with_a_warning(tmp_path):
    # the case: a 2,048-step debug=smoke run beside a 1M-step run, with the same overrides otherwise
    write_run(tmp_path / "smoke", ["debug=smoke", "seed=0"], return_rows([5.0]), total_env_steps=2048)
    write_run(tmp_path / "full", ["seed=0"], return_rows([2500.0]), total_env_steps=1_000_000)
    groups = group_runs(load_runs([tmp_path])[0])
    assert _labels(groups) == {"Hopper-v5": ["debug=(default)", "debug=smoke"]}
    (warning,) = pooling_warnings(groups)
    assert "Hopper-v5" in warning and "total_env_steps" in warning and "2048" in warning and "1000000" in warning
    assert "debug" in warning and "not pooled" in warning


def test_keys_a_resume_may_change_do_not_separate_variants_but_the_budget_does(tmp_path):
    def config(seed, total_env_steps, **top):
        c = config_for(["algo=trpo"], seed=seed, env_id="Hopper-v5", max_kl=0.01, total_env_steps=total_env_steps)
        return {**c, **top}

    write_run(tmp_path / "a", ["algo=trpo", "seed=0"], return_rows([1.0]),
              config=config(0, 1000, max_consecutive_skips=5, checkpoint_every=0, torch_threads=1))
    write_run(tmp_path / "b", ["algo=trpo", "seed=1"], return_rows([1.0]), seed=1,
              config=config(1, 1000, max_consecutive_skips=9, checkpoint_every=10, torch_threads=4))
    write_run(tmp_path / "c", ["algo=trpo", "seed=2"], return_rows([1.0]), seed=2,
              config=config(2, 2000, max_consecutive_skips=5, checkpoint_every=0, torch_threads=1))
    groups = group_runs(load_runs([tmp_path])[0])["Hopper-v5"]
    assert sorted([r.path.name for r in rs] for rs in groups.values()) == [["a", "b"], ["c"]]
    assert sorted(groups) == ["total_env_steps=1000", "total_env_steps=2000"]


def test_runs_whose_configs_differ_beyond_their_overrides_are_labelled_by_the_differing_config_keys(tmp_path):
    # identical overrides (e.g. the conf's default budget changed between two launches): the configs decide
    write_run(tmp_path / "a", ["seed=0"], return_rows([1.0]), total_env_steps=300_000)
    write_run(tmp_path / "b", ["seed=1"], return_rows([1.0]), seed=1, total_env_steps=300_000)
    write_run(tmp_path / "c", ["seed=0"], return_rows([1.0]), total_env_steps=1_000_000)
    groups = group_runs(load_runs([tmp_path])[0])
    assert _labels(groups) == {"Hopper-v5": ["total_env_steps=1000000", "total_env_steps=300000"]}
    assert [r.path.name for r in groups["Hopper-v5"]["total_env_steps=300000"]] == ["a", "b"]
    labels = labels_by_path(groups)
    assert labels[(tmp_path / "c").resolve()] == "total_env_steps=1000000"
    assert len(pooling_warnings(groups)) == 1


def test_a_run_repeating_another_runs_config_and_seed_is_counted_once(tmp_path, capsys):
    for name in ("0", "1"):
        write_run(tmp_path / name, ["algo=trpo", "seed=1"], return_rows([1.0]), seed=1)
    runs, skipped = load_complete_runs([tmp_path])
    assert [r.path.name for r in runs] == ["0"]
    ((run, why),) = skipped
    assert run.path.name == "1" and "same config and seed" in why
    assert "skipped 1" in capsys.readouterr().err.replace(str(tmp_path) + os.sep, "")


def test_a_folder_whose_overrides_do_not_match_its_data_is_flagged_and_skipped(tmp_path):
    # the reused folder: Hydra relabelled it `algo=npg seed=2`, but it holds trpo seed 0
    asked = config_for(["algo=npg"], seed=2, env_id="Hopper-v5", max_kl=0.01, total_env_steps=1_000_000)
    held = config_for(["algo=trpo"], seed=0, env_id="Hopper-v5", max_kl=0.01, total_env_steps=1_000_000)
    held["logger"]["wandb"]["mode"] = "disabled"  # an output setting: never a mismatch
    write_run(tmp_path / "2", ["algo=npg", "seed=2"], return_rows([1.0]), config=held, requested=asked)
    run = read_run(tmp_path / "2")
    assert run.mismatches == ["algo.preset (saved 'trpo', requested 'npg')", "seed (saved 0, requested 2)"]
    assert run.status == "mismatch" and "seed (saved 0, requested 2)" in run.problem
    assert load_runs([tmp_path])[0] == []


def test_interpolations_in_the_launch_config_are_resolved_before_comparing(tmp_path):
    config = config_for(["algo=trpo"], seed=0, env_id="Hopper-v5", max_kl=0.03, total_env_steps=1000)
    config["algo"]["step_rule"] = {"max_kl": 0.03}
    write_run(tmp_path / "r", ["algo=trpo"], return_rows([1.0]), config=config)
    raw = yaml.safe_load((tmp_path / "r" / ".hydra" / "config.yaml").read_text())
    raw["algo"]["step_rule"]["max_kl"] = "${algo.max_kl}"  # as Hydra saves it
    (tmp_path / "r" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(raw))
    assert read_run(tmp_path / "r").mismatches == []
    raw["algo"]["max_kl"] = 0.01
    (tmp_path / "r" / ".hydra" / "config.yaml").write_text(yaml.safe_dump(raw))
    assert read_run(tmp_path / "r").mismatches == [
        "algo.max_kl (saved 0.03, requested 0.01)", "algo.step_rule.max_kl (saved 0.03, requested 0.01)"]


def test_a_killed_writers_torn_last_line_is_dropped(tmp_path):
    p = write_run(tmp_path / "r", ["seed=0"], return_rows([1.0, 2.0]), finished=False)
    with open(p / "metrics.jsonl", "a") as f:
        f.write('{"env_steps": 3000, "return/me')
    run = read_run(p)
    assert [r["env_steps"] for r in run.rows] == [1000, 2000] and run.status == "incomplete"


def test_load_runs_sorts_jobs_naturally_and_separates_incomplete_ones(tmp_path):
    for job in (0, 2, 10):
        write_run(tmp_path / str(job), [f"seed={job}"], return_rows([1.0]), seed=job)
    write_run(tmp_path / "3", ["seed=3"], [], finished=False)
    ok, skipped = load_runs([tmp_path])
    assert [r.path.name for r in ok] == ["0", "2", "10"] and [r.path.name for r, _ in skipped] == ["3"]


def test_an_error_from_an_earlier_attempt_does_not_mark_a_finished_rerun_failed(tmp_path):
    p = write_run(tmp_path / "0", ["seed=0"], return_rows([1.0]), error="ValueError: first attempt\n")
    os.utime(p / "error.txt", (1_000_000, 1_000_000))  # the failed attempt, long before the re-run finished
    assert read_run(p).status == "ok"
    os.utime(p / "summary.json", (500_000, 500_000))  # a later attempt failed after an earlier one finished
    assert read_run(p).status == "failed" and read_run(p).error == "ValueError: first attempt"


def test_labels_leave_out_a_key_the_variant_does_not_use(tmp_path):
    # npg α = 0.3 beside trpo: the step size is npg's key; trpo's config has no algo.step_rule.step_size
    write_run(tmp_path / "npg", ["algo=npg", "algo.step_rule.step_size=0.3"], return_rows([1.0, 2.0]))
    write_run(tmp_path / "trpo", ["algo=trpo"], return_rows([1.0, 2.0]))
    write_run(tmp_path / "npg_default", ["algo=npg"], return_rows([1.0, 2.0]),
              config={**config_for(["algo=npg"], seed=0, env_id="Hopper-v5", max_kl=0.01, total_env_steps=1_000_000),
                      "algo": {"max_kl": 0.01, "preset": "npg", "step_rule": {"step_size": 0.1}}})
    labels = _labels(group_runs(load_runs([tmp_path])[0]))["Hopper-v5"]
    assert sorted(labels) == ["algo=npg, algo.step_rule.step_size=(default)", "algo=npg, algo.step_rule.step_size=0.3",
                              "algo=trpo"]
