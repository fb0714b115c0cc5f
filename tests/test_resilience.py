"""Faults and bad input: kills, signals, corrupt checkpoints, NaNs, unsupported spaces."""
import json
import signal

import gymnasium as gym
import numpy as np
import pytest
import torch

from trpo_lab.config import ConfigError
from trpo_lab.evaluate import main as evaluate_main
from trpo_lab.run_folder import CheckpointError, load_checkpoint
from trpo_lab.train import build_trainer, run
from trpo_lab.trainer import TrainingDiverged

from helpers import FAST, SMOKE, metrics_rows, run_cli, start_cli, wait_for_rows


@pytest.mark.slow
def test_kill_9_then_resume_completes_exactly(tmp_path):
    total = 512 * 150
    proc = start_cli(*FAST, f"hydra.run.dir={tmp_path}", f"total_env_steps={total}", "checkpoint_every=4")
    wait_for_rows(proc, tmp_path, 11)
    proc.kill()  # SIGKILL: no handler runs
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["updates"] % 4 == 0 and ckpt["updates"] >= 8
    # rows up to the checkpoint exist before resume (update k's row is written once batch k+1 is in;
    # the checkpoint holds the pending one)
    assert len(metrics_rows(tmp_path)) >= ckpt["updates"] - 1 and ckpt["pending_row"]["update"] == ckpt["updates"]

    out = run_cli(*FAST, f"hydra.run.dir={tmp_path}", f"total_env_steps={total}", "checkpoint_every=4")
    assert out.returncode == 0, out.stderr[-2000:]
    rows = metrics_rows(tmp_path)
    steps = [r["env_steps"] for r in rows]
    assert steps == list(range(512, total + 1, 512))  # strictly increasing, no duplicates, none missing
    assert [r["update"] for r in rows] == list(range(1, 151))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["env_steps"] == total


@pytest.mark.slow
def test_sigterm_writes_checkpoint_and_exits(tmp_path):
    proc = start_cli(*FAST, f"hydra.run.dir={tmp_path}", "total_env_steps=1000000", "checkpoint_every=0")
    wait_for_rows(proc, tmp_path, 3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM
    assert "SIGTERM" in err and "resume=" in err and "Traceback" not in err
    ckpt = load_checkpoint(tmp_path)
    # at a stop signal the last update's row is written provisionally, with return/delta null (no batch followed
    # it yet), and the checkpoint keeps it pending, so that a resumed run completes it
    assert ckpt["updates"] == len(metrics_rows(tmp_path)) and ckpt["env_steps"] == 512 * ckpt["updates"]
    assert ckpt["pending_row"]["update"] == ckpt["updates"] and metrics_rows(tmp_path)[-1]["return/delta"] is None


def test_corrupt_and_truncated_checkpoints_get_clear_errors(compose, tmp_path, capsys):
    cfg = compose(SMOKE)
    run(cfg, tmp_path)
    good = (tmp_path / "checkpoint.pt").read_bytes()

    (tmp_path / "checkpoint.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError, match="not a readable trpo-lab checkpoint"):
        load_checkpoint(tmp_path)
    assert evaluate_main([str(tmp_path)]) == 2
    assert "not a readable trpo-lab checkpoint" in capsys.readouterr().err

    (tmp_path / "checkpoint.pt").write_bytes(b"\x00garbage" * 100)
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path)

    torch.save({"weights": torch.zeros(3)}, tmp_path / "checkpoint.pt")  # a foreign but valid file
    with pytest.raises(CheckpointError, match="not a trpo-lab checkpoint"):
        load_checkpoint(tmp_path)

    # and resuming from it fails before anything is written
    n_rows = len(metrics_rows(tmp_path))
    with pytest.raises(CheckpointError):
        build_trainer(compose([*SMOKE, "resume=true"]), tmp_path)
    assert len(metrics_rows(tmp_path)) == n_rows


def test_checkpoint_holds_no_pickled_objects(compose, tmp_path):
    run(compose(SMOKE), tmp_path)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # raises if anything needs unpickling
    for key in ("policy", "critic", "critic_optimizer", "obs_normalizer", "reward_scaler", "monotonic", "torch_rng"):
        assert key in state


def test_resume_rules(compose, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        build_trainer(compose([*SMOKE, "resume=true"]), tmp_path / "empty")
    run(compose([*SMOKE, "resume=false"]), tmp_path / "r")
    with pytest.raises(ConfigError, match="already holds metrics.jsonl"):
        build_trainer(compose([*SMOKE, "resume=false"]), tmp_path / "r")
    # a finished run is not run again
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    summary = run(compose(SMOKE), tmp_path / "r")
    assert summary["env_steps"] == 2048 and (tmp_path / "r" / "metrics.jsonl").read_text() == before


def test_resume_extends_a_finished_run(compose, tmp_path):
    run(compose(SMOKE), tmp_path)
    run(compose([*SMOKE, "total_env_steps=4096"]), tmp_path)
    assert [r["env_steps"] for r in metrics_rows(tmp_path)] == list(range(512, 4097, 512))


def test_nan_advantages_are_skipped_and_repeated_ones_stop_the_run(compose, tmp_path, monkeypatch):
    from trpo_lab.rollout import RolloutCollector

    real = RolloutCollector.collect
    calls = {"n": 0}

    def poisoned(self):
        batch = real(self)
        calls["n"] += 1
        if calls["n"] >= 3:
            batch.advantages[0] = float("nan")
        return batch

    monkeypatch.setattr(RolloutCollector, "collect", poisoned)
    cfg = compose([*SMOKE, "total_env_steps=20480", "checkpoint_every=1",
                   "max_consecutive_skips=3"])
    with build_trainer(cfg, tmp_path) as trainer:
        with pytest.raises(TrainingDiverged, match="3 consecutive updates were skipped"):
            trainer.run_updates()
    rows = metrics_rows(tmp_path)
    assert [r["step/skipped"] for r in rows] == [0, 0, 1, 1, 1]
    assert all("non-finite advantages" in r["step/skipped_reason"] for r in rows[2:])
    ckpt = load_checkpoint(tmp_path)
    assert ckpt["updates"] == 4  # the last good checkpoint stays (the diverging update writes none)
    for k, v in ckpt["policy"].items():
        assert torch.isfinite(v).all(), k


class MultiDiscreteEnv(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, a):
        return np.zeros(2, np.float32), 0.0, True, False, {}


def test_unsupported_action_space_names_the_supported_ones(compose, tmp_path):
    gym.register("TrpoLabMultiDiscrete-v0", entry_point=MultiDiscreteEnv)
    with pytest.raises(ValueError, match="supported: gymnasium.spaces.Box"):
        build_trainer(compose(["env.id=TrpoLabMultiDiscrete-v0", "debug=smoke"]), tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.slow
@pytest.mark.parametrize("override, key", [("algo.line_search.backtrack_coef=0", "backtrack_coef"),
                                           ("env.id=Hopper-v9", "Hopper-v5"),
                                           ("algo.fisher.subsample=1.5", "algo.fisher.subsample")])
def test_cli_bad_input_exit_code_and_message(tmp_path, override, key):
    out = run_cli(override, f"hydra.run.dir={tmp_path}", timeout=120)
    assert out.returncode == 2 and key in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "wandb").exists() and not (tmp_path / "metrics.jsonl").exists()


@pytest.mark.slow
def test_rerunning_a_sweep_completes_only_unfinished_jobs(tmp_path):
    args = ["-m", "seed=0,1", *FAST, "total_env_steps=2048", "checkpoint_every=2", f"hydra.sweep.dir={tmp_path}"]
    assert run_cli(*args).returncode == 0
    finished = (tmp_path / "0" / "metrics.jsonl").read_text()
    # job 1 "died" after its checkpoint at update 2: drop its summary and the rows after the checkpoint
    (tmp_path / "1" / "summary.json").unlink()
    state = torch.load(tmp_path / "1" / "checkpoint.pt", weights_only=True)
    assert state["updates"] == 4
    rows = (tmp_path / "1" / "metrics.jsonl").read_text().splitlines()
    torch.save({**state, "updates": 2, "env_steps": 1024}, tmp_path / "1" / "checkpoint.pt")
    (tmp_path / "1" / "metrics.jsonl").write_text("\n".join(rows[:3]) + "\n")  # a row past the checkpoint too

    out = run_cli(*args)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "0" / "metrics.jsonl").read_text() == finished  # untouched
    assert [json.loads(r)["env_steps"] for r in (tmp_path / "1" / "metrics.jsonl").read_text().splitlines()] == [
        512, 1024, 1536, 2048]
    assert json.loads((tmp_path / "1" / "summary.json").read_text())["env_steps"] == 2048


@pytest.mark.slow
def test_unknown_algo_lists_the_presets(tmp_path):
    out = run_cli("algo=trpo2", f"hydra.run.dir={tmp_path}", timeout=120)
    assert out.returncode != 0
    assert "Could not find 'algo/trpo2'" in out.stderr and "trpo_no_ls" in out.stderr


def test_resume_restores_the_saved_state_values(compose, tmp_path):
    """Normaliser, reward scaler, critic optimiser, networks and torch RNG come back with the saved values."""
    run(compose(["env=pendulum", "debug=smoke"]), tmp_path)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert np.any(np.asarray(saved["obs_normalizer"]["mean"]) != 0)  # not the defaults: the comparison means something
    torch.manual_seed(12345)  # any RNG state other than the saved one
    with build_trainer(compose(["env=pendulum", "debug=smoke", "total_env_steps=4096"]), tmp_path) as trainer:
        rms = trainer.obs_normalizer.rms
        np.testing.assert_array_equal(rms.mean, saved["obs_normalizer"]["mean"])
        np.testing.assert_array_equal(rms.var, saved["obs_normalizer"]["var"])
        assert rms.count == saved["obs_normalizer"]["count"]
        x = np.asarray([[1.0, -2.0, 0.5]])
        expected = (x - np.asarray(saved["obs_normalizer"]["mean"])) / np.sqrt(np.asarray(saved["obs_normalizer"]["var"]) + 1e-8)
        np.testing.assert_allclose(trainer.obs_normalizer.normalize(x), expected, rtol=1e-5)
        scaler = trainer.reward_scaler
        np.testing.assert_array_equal(scaler.rms.mean, saved["reward_scaler"]["rms"]["mean"])
        np.testing.assert_array_equal(scaler.rms.var, saved["reward_scaler"]["rms"]["var"])
        np.testing.assert_array_equal(scaler.ret, saved["reward_scaler"]["ret"])
        assert np.any(scaler.ret != 0)
        opt = trainer.critic_fitter.optimizer.state_dict()["state"]
        assert opt.keys() == saved["critic_optimizer"]["state"].keys() and opt
        for k, s in saved["critic_optimizer"]["state"].items():
            for name, v in s.items():
                assert torch.equal(torch.as_tensor(opt[k][name]), torch.as_tensor(v)), (k, name)
        for net, key in ((trainer.policy, "policy"), (trainer.critic, "critic")):
            for name, v in net.state_dict().items():
                assert torch.equal(v, saved[key][name]), (key, name)
        assert torch.equal(torch.get_rng_state(), saved["torch_rng"])
        assert (trainer.updates, trainer.env_steps) == (saved["updates"], saved["env_steps"]) == (4, 2048)
