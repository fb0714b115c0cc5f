"""trpo_lab.mujoco_warnings: HalfCheetah's known deprecation warning is dropped, any other MuJoCo warning is not."""
from __future__ import annotations

import pytest

from trpo_lab import mujoco_warnings
from trpo_lab.envs import check_env, make_vec_env

KNOWN = "compiler attribute 'settotalmass' is deprecated"


def test_halfcheetah_envs_print_no_settotalmass_warning_and_write_no_log(capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo's default hook would append MUJOCO_LOG.TXT here
    check_env("HalfCheetah-v5", {})
    envs = make_vec_env("HalfCheetah-v5", 3)
    envs.reset(seed=0)
    envs.close()
    out, err = capfd.readouterr()
    assert KNOWN not in out + err and "WARNING" not in out + err
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_the_filter_drops_only_the_known_message(capfd):
    pytest.importorskip("mujoco")
    make_vec_env("HalfCheetah-v5", 1).close()
    import mujoco

    hook = mujoco.get_mju_user_warning()
    hook(f"{KNOWN} and will be removed in a future release")
    assert capfd.readouterr().err == ""
    hook("Nan, Inf or huge value in QACC at DOF 0. The simulation is unstable. Time = 0.1000.")
    assert capfd.readouterr().err == "WARNING: Nan, Inf or huge value in QACC at DOF 0. The simulation is unstable. Time = 0.1000.\n"


def test_classic_control_envs_do_not_import_mujoco_for_the_filter(monkeypatch):
    monkeypatch.setattr(mujoco_warnings, "_installed", False)
    mujoco_warnings.filter_known_mujoco_warnings("CartPole-v1")
    assert mujoco_warnings._installed is False
