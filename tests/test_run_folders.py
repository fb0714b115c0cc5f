"""Run folders: bound to the config they were started with, never shared, overwritten only on request."""
import hashlib
import os
import re
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from trpo_lab.run_folder import RunFolderError, claim_folder, config_differences
from trpo_lab.train import run

from helpers import SMOKE, metrics_rows, run_cli


def _tree(root: Path) -> dict[str, str]:
    """Every file below ``root`` with the md5 of its content (folders as 'dir')."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        out.update({os.path.join(dirpath, d): "dir" for d in dirs})
        out.update({os.path.join(dirpath, f): hashlib.md5(Path(dirpath, f).read_bytes()).hexdigest() for f in files})
    return out


def test_config_differences_by_hand():
    saved = {"seed": 0, "total_env_steps": 10, "logger": {"console": "bar"},
             "algo": {"max_kl": 0.01, "step_rule": {"_target_": "a.KLScaledStep", "max_kl": 0.01}}}
    requested = {"seed": 2, "total_env_steps": 99, "logger": {"console": "off"},
                 "algo": {"max_kl": 0.01, "step_rule": {"_target_": "a.FixedStep", "step_size": 0.1}}}
    assert config_differences(saved, requested) == [
        "algo.step_rule (saved 'KLScaledStep', requested 'FixedStep')", "seed (saved 0, requested 2)"]
    assert config_differences(saved, {**saved, "total_env_steps": 5, "logger": {}}) == []


@pytest.mark.parametrize("override, named", [
    ("seed=1", "seed (saved 0, requested 1)"),
    ("algo=npg", "algo.step_rule (saved 'KLScaledStep', requested 'FixedStep')"),
    ("rollout.gamma=0.9", "rollout.gamma (saved 0.99, requested 0.9)"),
])
def test_a_finished_folder_with_another_config_is_refused(compose, tmp_path, override, named):
    run(compose(SMOKE), tmp_path)
    before = _tree(tmp_path)
    with pytest.raises(RunFolderError) as e:
        run(compose([*SMOKE, override]), tmp_path)
    assert named in str(e.value) and "resume=overwrite" in str(e.value) and "\n" not in str(e.value)
    assert _tree(tmp_path) == before


def test_an_unfinished_folder_with_another_config_is_refused(compose, tmp_path):
    run(compose([*SMOKE, "checkpoint_every=2"]), tmp_path)
    (tmp_path / "summary.json").unlink()  # as if killed: resume=auto would continue it
    before = _tree(tmp_path)
    with pytest.raises(RunFolderError, match=r"critic\.lr \(saved 0\.001, requested 0\.01\)"):
        run(compose([*SMOKE, "checkpoint_every=2", "critic.lr=0.01"]), tmp_path)
    assert _tree(tmp_path) == before


def test_keys_that_may_change_on_resume_are_allowed(compose, tmp_path):
    run(compose(SMOKE), tmp_path)
    summary = run(compose([*SMOKE, "total_env_steps=3072", "logger.console=off", "checkpoint_every=1"]), tmp_path)
    assert summary["env_steps"] == 3072 and len(metrics_rows(tmp_path, timing=False)) == 6


def test_a_folder_saved_before_the_sampling_group_continues_as_single_path(compose, tmp_path):
    run(compose(SMOKE), tmp_path)
    saved = OmegaConf.load(tmp_path / "config.yaml")
    del saved["sampling"]  # as written before conf/sampling/ existed: it ran single path
    OmegaConf.save(saved, tmp_path / "config.yaml")
    summary = run(compose([*SMOKE, "total_env_steps=3072"]), tmp_path)  # continued, not refused
    assert summary["env_steps"] == 3072
    with pytest.raises(RunFolderError, match=r"sampling \(saved 'RolloutCollector', requested 'VineCollector'\)"):
        run(compose([*SMOKE, "total_env_steps=4096", "sampling=vine"]), tmp_path)


def test_overwrite_discards_the_old_run(compose, tmp_path):
    run(compose(SMOKE), tmp_path / "a")
    (tmp_path / "a" / "error.txt").write_text("old failure")
    run(compose([*SMOKE, "seed=1", "resume=overwrite"]), tmp_path / "a")
    run(compose([*SMOKE, "seed=1"]), tmp_path / "b")  # the same run in a fresh folder
    assert metrics_rows(tmp_path / "a", timing=False) == metrics_rows(tmp_path / "b", timing=False)
    assert OmegaConf.load(tmp_path / "a" / "config.yaml").seed == 1
    assert not (tmp_path / "a" / "error.txt").exists()


def test_a_fresh_run_claims_its_folder_exclusively(compose, tmp_path):
    cfg = compose(SMOKE)
    claim_folder(cfg, tmp_path, fresh=True)
    with pytest.raises(RunFolderError, match="claimed by another run"):
        claim_folder(cfg, tmp_path, fresh=True)


def test_default_run_folders_differ_even_within_one_second(compose):
    dirs = []
    for _ in range(2):
        cfg = compose(SMOKE, return_hydra_config=True)
        dirs.append(OmegaConf.select(cfg, "hydra.run.dir"))
    for d in dirs:
        assert re.fullmatch(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-[0-9a-f]{6}", d), d
    assert dirs[0] != dirs[1]


def _train(*args, cwd):
    return run_cli(*args, cwd=cwd, timeout=600)


@pytest.mark.slow
def test_reusing_a_sweep_folder_with_other_jobs_is_refused(tmp_path):
    """Issue 10's repro: jobs 2 and 3 of the first sweep are jobs 3 and 4 of the second."""
    sweep = tmp_path / "sweep"
    first = _train("-m", "debug=smoke", "algo=npg,trpo", "seed=0,1", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    before = _tree(sweep)
    again = _train("-m", "debug=smoke", "algo=npg,trpo", "seed=0,1,2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert again.returncode == 2
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1, again.stderr
    assert lines[0].startswith("error: job 2 (debug=smoke algo=npg seed=2)")
    for named in ("algo.step_rule (saved 'KLScaledStep', requested 'FixedStep')",
                  "algo.line_search (saved 'BacktrackingLineSearch', requested 'NoLineSearch')",
                  "seed (saved 0, requested 2)", "also refused: job(s) 3"):
        assert named in lines[0], named
    assert _tree(sweep) == before  # nothing rewritten, .hydra/overrides.yaml included


@pytest.mark.slow
def test_a_sweep_shares_one_unique_folder(tmp_path):
    out = _train("-m", *SMOKE, "seed=0,1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    sweeps = list((tmp_path / "multirun").glob("*/*"))
    assert len(sweeps) == 1 and re.fullmatch(r"\d\d-\d\d-\d\d-[0-9a-f]{6}", sweeps[0].name)
    assert sorted(p.name for p in sweeps[0].iterdir() if p.is_dir()) == ["0", "1"]
    assert {OmegaConf.load(sweeps[0] / j / "config.yaml").seed for j in ("0", "1")} == {0, 1}
