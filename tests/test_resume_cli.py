"""Every documented ``resume`` mode, typed on the command line as a user would (README, "Interruptions,
resume and failures"): auto, true, false, overwrite, a run folder, a checkpoint path. Each test plants
files of its own in the run folder; no mode may delete them."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow

SMOKE = ["env=cartpole", "debug=smoke", "logger.wandb.mode=disabled"]  # 4 updates of 512 env steps
USER_FILES = {"notes.txt": "my notes\n", "analysis/plot.csv": "x,y\n1,2\n", "wandb_export.md": "by hand\n"}


def _train(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "trpo_lab.train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "WANDB_MODE": "disabled"})


def _updates(run_dir: Path) -> list[int]:
    return [json.loads(line)["update"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _plant_user_files(run_dir: Path) -> None:
    for name, text in USER_FILES.items():
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text(text)


def _assert_user_files_kept(run_dir: Path) -> None:
    assert {n: (run_dir / n).read_text() for n in USER_FILES if (run_dir / n).exists()} == USER_FILES


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2048-step run (checkpoint at its last update, 4), made by the command line."""
    root = tmp_path_factory.mktemp("finished")
    out = _train(*SMOKE, f"hydra.run.dir={root / 'run'}", cwd=root)
    assert out.returncode == 0, out.stderr[-2000:]
    return root / "run"


@pytest.fixture
def run_dir(finished, tmp_path) -> Path:
    """A copy of the finished run with the user's own files in it; the working directory is ``tmp_path/cwd``."""
    d = tmp_path / "run"
    shutil.copytree(finished, d)
    _plant_user_files(d)
    (tmp_path / "cwd").mkdir()
    return d


def test_auto_continues_from_the_checkpoint_and_cuts_metrics_back_to_it(run_dir, tmp_path):
    # as if killed after update 5 was logged but before it was checkpointed (the checkpoint holds update 4)
    (run_dir / "summary.json").unlink()
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"update": 5, "env_steps": 2560, "marker": "lost"}) + '\n{"update": 6, "env_st')
    out = _train(*SMOKE, "total_env_steps=3072", f"hydra.run.dir={run_dir}", cwd=tmp_path / "cwd")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming at update 4, env step 2048 of 3072" in out.stdout + out.stderr
    assert _updates(run_dir) == [1, 2, 3, 4, 5, 6] and "lost" not in (run_dir / "metrics.jsonl").read_text()
    assert json.loads((run_dir / "summary.json").read_text())["env_steps"] == 3072
    _assert_user_files_kept(run_dir)
    # a finished run is not run again
    before = _md5(run_dir / "metrics.jsonl")
    again = _train(*SMOKE, "total_env_steps=3072", f"hydra.run.dir={run_dir}", cwd=tmp_path / "cwd")
    assert again.returncode == 0 and "already complete (3072 env steps)" in again.stdout + again.stderr
    assert _md5(run_dir / "metrics.jsonl") == before


def test_true_continues_a_checkpoint_and_refuses_a_folder_without_one(run_dir, tmp_path):
    cwd = tmp_path / "cwd"
    fresh = _train(*SMOKE, "resume=true", cwd=cwd)  # a new user's first try: the default folder is a new one
    lines = fresh.stderr.strip().splitlines()
    assert fresh.returncode == 2 and len(lines) == 1, fresh.stderr
    assert lines[0].startswith("error: resume=true, but there is no checkpoint at outputs/") and "resume=RUN_FOLDER" in lines[0]
    assert list(cwd.iterdir()) == []
    out = _train(*SMOKE, "resume=true", "total_env_steps=3072", f"hydra.run.dir={run_dir}", cwd=cwd)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming at update 4, env step 2048 of 3072" in out.stdout + out.stderr
    assert _updates(run_dir) == [1, 2, 3, 4, 5, 6]
    _assert_user_files_kept(run_dir)


def test_false_refuses_a_folder_with_metrics_and_changes_nothing(run_dir, tmp_path):
    before = {p: _md5(p) for p in run_dir.rglob("*") if p.is_file()}
    out = _train(*SMOKE, "resume=false", f"hydra.run.dir={run_dir}", cwd=tmp_path / "cwd")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "already holds metrics.jsonl" in lines[0] and "resume=overwrite" in lines[0]
    assert {p: _md5(p) for p in run_dir.rglob("*") if p.is_file()} == before
    # and a fresh folder trains
    new = tmp_path / "new"
    assert _train(*SMOKE, "resume=false", f"hydra.run.dir={new}", cwd=tmp_path / "cwd").returncode == 0
    assert _updates(new) == [1, 2, 3, 4]


def test_overwrite_discards_only_what_the_lab_wrote(run_dir, tmp_path):
    (run_dir / "error.txt").write_text("an old failure\n")
    (run_dir / "video.gif").write_bytes(b"GIF89a")
    out = _train(*SMOKE, "seed=1", "resume=overwrite", f"hydra.run.dir={run_dir}", cwd=tmp_path / "cwd")
    assert out.returncode == 0, out.stderr[-2000:]
    assert OmegaConf.load(run_dir / "config.yaml").seed == 1  # another config: overwrite is not bound to the old one
    assert _updates(run_dir) == [1, 2, 3, 4] and "resuming" not in out.stdout + out.stderr
    assert not (run_dir / "error.txt").exists() and not (run_dir / "video.gif").exists()
    _assert_user_files_kept(run_dir)


@pytest.mark.parametrize("target", ["folder", "folder/", "checkpoint"])
def test_a_path_continues_that_run_with_its_saved_config_plus_the_overrides_typed_now(run_dir, tmp_path, target):
    cwd = tmp_path / "cwd"
    path = {"folder": str(run_dir), "folder/": f"{run_dir}/", "checkpoint": str(run_dir / "checkpoint.pt")}[target]
    hydra_record = _md5(run_dir / ".hydra" / "overrides.yaml")
    out = _train(f"resume={path}", "total_env_steps=3072", cwd=cwd)  # no env=, no debug=: the saved config
    assert out.returncode == 0, out.stderr[-2000:]
    assert "resuming at update 4, env step 2048 of 3072" in out.stdout + out.stderr
    assert _updates(run_dir) == [1, 2, 3, 4, 5, 6]
    saved = OmegaConf.load(run_dir / "config.yaml")
    assert saved.env.id == "CartPole-v1" and saved.total_env_steps == 3072 and saved.rollout.batch_size == 512
    assert _md5(run_dir / ".hydra" / "overrides.yaml") == hydra_record  # PATH's launch record is kept
    assert list(cwd.iterdir()) == []  # no new run folder
    _assert_user_files_kept(run_dir)


def test_a_path_without_a_run_is_refused_in_one_line(run_dir, tmp_path):
    cwd = tmp_path / "cwd"
    (run_dir / "checkpoint.pt").unlink()
    (run_dir / "summary.json").unlink()
    for path, says in [(run_dir, "holds no checkpoint.pt to continue from"),
                       (tmp_path / "nowhere", "does not exist (expected a trpo-lab run folder)")]:
        out = _train(f"resume={path}", cwd=cwd)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 2 and len(lines) == 1 and says in lines[0], out.stderr
    assert list(cwd.iterdir()) == []
    _assert_user_files_kept(run_dir)
