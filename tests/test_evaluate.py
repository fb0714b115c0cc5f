"""``python -m trpo_lab.evaluate``: deterministic returns, video or a clear reason for none."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from trpo_lab.envs import make_vec_env
from trpo_lab.evaluate import evaluate_policy
from trpo_lab.run_folder import build_from_folder

from helpers import run_cli

# pendulum_run (an InvertedPendulum-v5 smoke run) and finished_run (CartPole) are fixtures of tests/conftest.py


def _evaluate(run_dir, *args, env=None):
    # cwd: MuJoCo writes MUJOCO_LOG.TXT into the working directory when a renderer fails
    return run_cli(str(run_dir), *args, module="trpo_lab.evaluate", cwd=run_dir.parent, env=env)


@pytest.mark.slow
def test_cli_reports_deterministic_returns(pendulum_run):
    out = _evaluate(pendulum_run, "--episodes", "3", "--seed", "5")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout.splitlines()[0])
    assert report["episodes"] == 3 and report["env_steps"] == 2048
    # the same numbers from an independent loop: one env, one episode at a time, policy mean as action
    policy, norm, cfg, _ = build_from_folder(pendulum_run)
    import gymnasium as gym
    import torch

    expected = []
    for i in range(3):
        env = gym.make(cfg["env"]["id"])
        obs, _ = env.reset(seed=5 + i)
        total, done = 0.0, False
        while not done:
            with torch.no_grad():
                mean = policy.mean_net(torch.as_tensor(norm.normalize(obs[None])))[0].numpy()
            obs, r, term, trunc, _ = env.step(np.clip(mean, -3, 3))
            total += r
            done = term or trunc
        expected.append(total)
    np.testing.assert_allclose(report["returns"], expected)


@pytest.mark.slow
def test_video_without_renderer_says_why(pendulum_run):
    out = _evaluate(pendulum_run, "--episodes", "1", "--video", env={"MUJOCO_GL": "glfw", "DISPLAY": ""})
    assert out.returncode == 0
    assert "no video:" in out.stderr and "MUJOCO_GL=egl" in out.stderr
    assert not (pendulum_run / "video.gif").exists()


def _egl_available() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import mujoco.egl; mujoco.egl.GLContext(8, 8).make_current()"],
                           capture_output=True, env={**os.environ, "MUJOCO_GL": "egl"}, timeout=60)
    return probe.returncode == 0


@pytest.mark.slow
def test_video_with_egl_writes_a_gif(pendulum_run):
    if not _egl_available():
        pytest.skip("no EGL renderer on this machine")
    out = _evaluate(pendulum_run, "--episodes", "1", "--video", env={"MUJOCO_GL": "egl"})
    assert out.returncode == 0, out.stderr
    gif = pendulum_run / "video.gif"
    from PIL import Image

    with Image.open(gif) as im:
        assert im.n_frames >= 2 and im.size[0] > 0


@pytest.mark.slow
def test_missing_run_folder_is_a_clear_error(tmp_path):
    out = _evaluate(tmp_path / "nope")
    assert out.returncode == 2 and "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_evaluate_policy_on_vector_env_matches_single_env(pendulum_run):
    policy, norm, cfg, _ = build_from_folder(pendulum_run)
    envs = make_vec_env(cfg["env"]["id"], 2)
    a = evaluate_policy(policy, envs, seed=11, obs_normalizer=norm)
    b = evaluate_policy(policy, envs, seed=11, obs_normalizer=norm)
    envs.close()
    assert a == b and len(a) == 2


def _pygame_installed() -> bool:
    try:
        import pygame  # noqa: F401
    except ImportError:
        return False
    return True


def test_video_of_a_classic_control_env_without_pygame_says_why(finished_run, capsys):
    if _pygame_installed():
        pytest.skip("pygame is installed here")
    from trpo_lab.evaluate import main

    assert main([str(finished_run), "--episodes", "1", "--video", "--no-wandb"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if "no video" in ln]
    assert len(err) == 1 and err[0].endswith(
        'no video: CartPole-v1 cannot render: pygame is not installed, run `pip install "gymnasium[classic-control]"`')
    assert not (finished_run / "video.gif").exists()


@pytest.mark.slow
def test_video_into_a_read_only_folder_says_why(pendulum_run, tmp_path):
    if not _egl_available():
        pytest.skip("no EGL renderer on this machine")
    run_dir = tmp_path / "run"
    import shutil

    shutil.copytree(pendulum_run, run_dir)
    (run_dir / "video.gif").unlink(missing_ok=True)  # another test may have made one
    if os.geteuid() != 0:
        run_dir.chmod(0o555)
        cmd = [sys.executable, "-m", "trpo_lab.evaluate", str(run_dir), "--episodes", "1", "--video", "--no-wandb"]
    else:  # root writes through permission bits: make the folder's writes fail as a read-only one does
        cmd = [sys.executable, "-c",
               "import errno, sys, tempfile; from trpo_lab import evaluate\n"
               "def refuse(*a, **k): raise PermissionError(errno.EACCES, 'Permission denied')\n"
               "tempfile.mkdtemp = tempfile.mkstemp = refuse\n"
               f"sys.exit(evaluate.main([{str(run_dir)!r}, '--episodes', '1', '--video', '--no-wandb']))"]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "MUJOCO_GL": "egl"})
    run_dir.chmod(0o755)
    assert out.returncode == 0, out.stderr
    assert out.stderr.strip().splitlines()[-1] == (
        f"no video: video folder='{run_dir}' is invalid: {run_dir} is not writable (Permission denied)")
    assert not (run_dir / "video.gif").exists()


@pytest.mark.slow
def test_evaluate_with_a_broken_mujoco_renderer_says_why(pendulum_run):
    probe = subprocess.run([sys.executable, "-c", "import mujoco"], capture_output=True,
                           env={**os.environ, "MUJOCO_GL": "osmesa"})
    if probe.returncode == 0:
        pytest.skip("OSMesa is installed here")
    out = _evaluate(pendulum_run, "--episodes", "1", "--video", env={"MUJOCO_GL": "osmesa"})
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: MUJOCO_GL=osmesa is invalid here: mujoco cannot load that renderer")
    assert "install OSMesa" in lines[0]
