"""A resumed run is the run that was never interrupted (README, "Interruptions, resume and failures").

Each case stops a Hopper-v5 run at a different moment — kill -9 before the first checkpoint, right after one,
in the middle of writing one; SIGTERM; SIGUSR2 — resumes it from the command line, and compares it with the
same config run straight through: every ``metrics.jsonl`` value but ``time/*`` and ``perf/*``, row for row,
and the final evaluation. The checkpoints in between hold every env's snapshot mid-episode
(:mod:`trpo_lab.snapshots`), the episodes in progress and every RNG, so nothing is reseeded.

The kill -9 cases die at a chosen point inside the process (a patched ``Trainer.save_checkpoint``,
``torch.save`` or sink), so each hits its moment on any machine, however fast.
"""
from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import assert_same_run, metrics_rows, run_cli, start_cli, wait_for_rows

pytestmark = pytest.mark.slow  # every case starts, kills or signals training processes

#: Hopper with mid-episode checkpoints (512-step batches of 2 envs: episodes span checkpoints), the warm-up,
#: the periodic and the paired evaluation on, and a checkpoint every 3 updates, as the issue specifies; a return
#: window of 60 episodes spans several batches, so a resume that lost it would log another return/mean
HOPPER = ["env=hopper", "seed=5", "rollout.num_envs=2", "rollout.batch_size=512", "rollout.normalizer_warmup=512",
          "return_window=60",
          "critic.epochs=2", "eval.every=4", "eval.episodes=2", "eval.paired.every=5", "eval.paired.episodes=2",
          "checkpoint_every=3", "logger.wandb.mode=disabled", "logger.console=off"]
UPDATES = 16
TOTAL = [f"total_env_steps={512 * (UPDATES + 1)}"]  # the warm-up's 512 steps count toward the budget


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """The run that was never interrupted."""
    run_dir = tmp_path_factory.mktemp("straight")
    out = run_cli(*HOPPER, *TOTAL, f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(metrics_rows(run_dir)) == UPDATES
    return run_dir


def _die_inside(run_dir: Path, patch: str) -> subprocess.CompletedProcess:
    """Train in a process that SIGKILLs itself where ``patch`` (Python run before the trainer starts) says."""
    code = (f"import os, signal, sys\n{patch}\n"
            f"sys.argv = ['trpo_lab.train', *{[*HOPPER, *TOTAL, f'hydra.run.dir={run_dir}']!r}]\n"
            "from trpo_lab.train import main\nmain()\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def _resume(run_dir: Path) -> str:
    out = run_cli(*HOPPER, *TOTAL, f"hydra.run.dir={run_dir}")
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout + out.stderr


KILL_POINTS = {
    # after update 2's row is written, before the first checkpoint (update 3): resume starts from scratch
    "before_first_checkpoint": (
        "from trpo_lab.sinks import Sinks\nreal = Sinks.log\n"
        "def log(self, row, *a):\n    real(self, row, *a)\n"
        "    if row['update'] == 2: os.kill(os.getpid(), signal.SIGKILL)\nSinks.log = log\n", None),
    # right after the checkpoint of update 6 is on disk
    "right_after_a_checkpoint": (
        "from trpo_lab.trainer import Trainer\nreal = Trainer.save_checkpoint\n"
        "def save(self):\n    p = real(self)\n"
        "    if self.updates == 6: os.kill(os.getpid(), signal.SIGKILL)\n    return p\n"
        "Trainer.save_checkpoint = save\n", 6),
    # half-way through writing the checkpoint of update 6: the atomic write keeps update 3's
    "during_a_checkpoint_write": (
        "import torch\nreal = torch.save\n"
        "def save(obj, f, *a, **k):\n"
        "    if isinstance(obj, dict) and obj.get('updates') == 6:\n"
        "        f.write(b'partial'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return real(obj, f, *a, **k)\ntorch.save = save\n", 3),
}


@pytest.mark.parametrize("moment", list(KILL_POINTS))
def test_kill_9_then_resume_is_the_uninterrupted_run(straight, tmp_path, moment):
    patch, checkpoint_update = KILL_POINTS[moment]
    died = _die_inside(tmp_path, patch)
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    if checkpoint_update is None:
        assert not (tmp_path / "checkpoint.pt").exists()
    else:
        import torch

        assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["updates"] == checkpoint_update
    log = _resume(tmp_path)
    if checkpoint_update is not None:
        assert f"resuming at update {checkpoint_update}" in log
        assert "reseed" not in log  # the envs were restored, not reseeded
    assert_same_run(tmp_path, straight)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR2])
def test_stop_signal_then_resume_is_the_uninterrupted_run(straight, tmp_path, signum):
    proc = start_cli(*HOPPER, *TOTAL, f"hydra.run.dir={tmp_path}")
    wait_for_rows(proc, tmp_path, 7)  # some moment mid-run, whatever the machine's speed
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-2000:]
    assert "resuming at update" in _resume(tmp_path)
    assert_same_run(tmp_path, straight)
