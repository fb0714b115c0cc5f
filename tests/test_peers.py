"""The peer inside the lab (``peer=sb3_contrib``, trpo_lab/peers/): its run folder, its evaluation, its binding to
its config, its name in the reports, and the one-line error without the ``peers`` extra. Smoke scale: Hopper-v5,
2 envs × 512 steps per update, 2 updates, 3 evaluation episodes."""
from __future__ import annotations

import csv
import json
import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml

from conftest import compose_config
from helpers import WANDB
from trpo_lab.config import ConfigError, validate
from trpo_lab.run_folder import PEER_NORMALIZER, PEER_POLICY, RunFolderError, read_metrics, read_summary
from trpo_lab.runs import Run, group_runs, load_runs

if importlib.util.find_spec("sb3_contrib") is None:
    if os.environ.get("CI"):
        raise RuntimeError('CI must test the peer: install it with pip install -e ".[test,peers]"')
    pytest.skip('sb3-contrib is not installed (pip install -e ".[peers]")', allow_module_level=True)

SEED, N_ENVS, N_STEPS, EPISODES = 3, 2, 512, 3
PEER = ["peer=sb3_contrib", "env=hopper", f"seed={SEED}", "total_env_steps=2048", f"peer.n_steps={N_STEPS}",
        f"eval.episodes={EPISODES}", "logger.wandb.mode=disabled", "logger.console=off"]


@pytest.fixture(scope="module")
def peer_run(tmp_path_factory):
    """One finished peer run: (its folder, the sb3 model object it trained, in memory)."""
    import trpo_lab.peers.sb3_contrib as peer
    from trpo_lab.train import run

    made = []
    build = peer.build
    peer.build = lambda cfg: made.append(build(cfg)) or made[-1]
    try:
        run_dir = tmp_path_factory.mktemp("peer")
        run(compose_config(PEER), run_dir)
    finally:
        peer.build = build
    return run_dir, made[0]


def saved_policy(run_dir: Path, env: gym.Env):
    """sb3-contrib's TRPO ``MlpPolicy`` built afresh from the run's config.yaml, holding ``peer_policy.pt``'s
    weights (loaded with ``weights_only=True``: no sb3 loader, no pickle)."""
    from sb3_contrib.trpo.policies import MlpPolicy

    p = yaml.safe_load((run_dir / "config.yaml").read_text())["peer"]
    policy = MlpPolicy(env.observation_space, env.action_space, lambda _: 0.0,
                       net_arch={"pi": p["pi_hidden_sizes"], "vf": p["vf_hidden_sizes"]},
                       activation_fn={"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[p["activation"]],
                       log_std_init=p["log_std_init"], ortho_init=p["ortho_init"])
    policy.load_state_dict(torch.load(run_dir / PEER_POLICY, weights_only=True))  # strict: every key, every shape
    return policy.eval()


def independent_evaluation(run_dir: Path, env_id: str, seed: int, episodes: int) -> list[float]:
    """The deterministic evaluation recomputed from the saved files alone: one gymnasium env per episode, reset
    with ``seed + i``; observations normalised by hand with the saved statistics, x ↦ clip((x − μ)/√(σ² + ε), ±c);
    the action the Gaussian's mean (actor MLP, then ``action_net``), clipped to the box; raw rewards summed."""
    norm = torch.load(run_dir / PEER_NORMALIZER, weights_only=True)
    mean, var = norm["obs_rms"]["mean"].numpy(), norm["obs_rms"]["var"].numpy()
    returns = []
    for i in range(episodes):
        env = gym.make(env_id)
        policy = saved_policy(run_dir, env)
        low, high = env.action_space.low, env.action_space.high
        obs, _ = env.reset(seed=seed + i)
        total, done = 0.0, False
        while not done:
            x = np.clip((obs - mean) / np.sqrt(var + norm["epsilon"]), -norm["clip_obs"], norm["clip_obs"])
            with torch.no_grad():
                latent = policy.mlp_extractor.forward_actor(torch.as_tensor(x[None], dtype=torch.float32))
                action = np.clip(policy.action_net(latent)[0].numpy(), low, high)
            obs, r, term, trunc, _ = env.step(action)
            total += float(r)
            done = term or trunc
        env.close()
        returns.append(total)
    return returns


def test_the_run_folder_is_complete_and_its_rows_are_the_updates(peer_run):
    run_dir, model = peer_run
    rows = read_metrics(run_dir / "metrics.jsonl")
    summary = read_summary(run_dir)
    per_update = N_ENVS * N_STEPS
    assert [r["update"] for r in rows] == [1, 2]
    assert [r["env_steps"] for r in rows] == [per_update, 2 * per_update]
    assert summary["env_steps"] == 2 * per_update and summary["updates"] == 2
    # return/mean: the last 10 finished episodes' raw returns, by sb3's own episode buffer (Monitor's returns)
    last10 = [e["r"] for e in list(model.ep_info_buffer)[-10:]]
    assert rows[-1]["return/mean"] == pytest.approx(np.mean(last10), rel=1e-12)
    assert summary["final_return"] == pytest.approx(np.mean(last10), rel=1e-12)
    assert all(r["line_search/accepted"] in (0, 1) for r in rows)
    assert summary["meta"]["peer"]["name"] == "sb3_contrib_trpo"
    assert not any(k.startswith(("step/", "paired/", "monotonic/")) for r in rows for k in r)  # not measured by sb3


def test_progress_lines_are_the_labs_and_say_the_rows(tmp_path, capsys):
    """The peer's progress goes through the lab's sinks: one line per update (console_every=1) in the lab's format,
    with metrics.jsonl's env steps, update and return, and no KL (sb3 does not measure the lab's)."""
    from trpo_lab.train import run

    run(compose_config([*PEER, "logger.console=lines", "logger.console_every=1"]), tmp_path)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[")]
    said = [re.fullmatch(r"\[\s*(\d+) steps \| update\s+(\d+)\] return\s+(\S+) \| accepted ([01]) \| \d+ steps/s",
                         ln) for ln in lines]
    assert all(said), lines
    ret = ["n/a" if r["return/mean"] is None else f"{r['return/mean']:.1f}" for r in rows]
    assert [m.groups() for m in said] == [
        (str(r["env_steps"]), str(r["update"]), x, str(r["line_search/accepted"])) for r, x in zip(rows, ret)]


@pytest.mark.slow
def test_an_offline_wandb_run_holds_the_peers_rows_and_summary(tmp_path, monkeypatch):
    """With W&B on (offline), the peer's run folder holds one finished W&B run whose history is metrics.jsonl's
    rows (the same env steps and returns) and whose summary and config are the run's."""
    from trpo_lab.train import run

    monkeypatch.setenv("WANDB_MODE", "offline")
    run(compose_config([*PEER, "logger.wandb.mode=offline"]), tmp_path)
    (wandb_run,) = (tmp_path / "wandb").glob("offline-run-*")
    out = subprocess.run([WANDB, "leet", "inspect", "--summary", "--json", str(wandb_run)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    rows = read_metrics(tmp_path / "metrics.jsonl")
    assert info["state"] == "finished" and info["config"]["peer"]["name"] == "sb3_contrib_trpo"
    assert info["summary"]["env_steps"] == rows[-1]["env_steps"] == 2048
    assert info["summary"]["return/mean"] == pytest.approx(rows[-1]["return/mean"])
    assert info["summary"]["final_eval"]["return_mean"] == pytest.approx(read_summary(tmp_path)["final_eval"]["return_mean"])


def test_final_eval_is_the_labs_protocol_recomputed_from_the_saved_model(peer_run):
    run_dir, _ = peer_run
    cfg = compose_config(PEER)
    expected = independent_evaluation(run_dir, "Hopper-v5", SEED + cfg.eval.seed_offset, EPISODES)
    final = read_summary(run_dir)["final_eval"]
    assert final["episodes"] == EPISODES
    # equal up to float32 rounding (the lab's vector env keeps rewards in float32)
    assert final["return_mean"] == pytest.approx(np.mean(expected), rel=1e-6)
    assert final["return_std"] == pytest.approx(np.std(expected), abs=1e-4)
    assert read_metrics(run_dir / "metrics.jsonl")[-1]["eval/return_mean"] == final["return_mean"]


def test_the_saved_files_are_tensors_only_and_hold_the_trained_state(peer_run):
    run_dir, model = peer_run
    files = [f for f in run_dir.rglob("*") if f.is_file()]
    assert {PEER_POLICY, PEER_NORMALIZER} <= {f.name for f in files}
    assert not [f.name for f in files if f.suffix in (".pkl", ".zip", ".pickle")]
    for f in files:
        head = f.read_bytes()[:4]
        assert head[:1] != b"\x80", f"{f.name} is a raw pickle"  # the PROTO opcode that opens protocol ≥ 2
        if zipfile.is_zipfile(f) or f.suffix in (".pt", ".pth"):  # torch.save writes a zip archive
            torch.load(f, weights_only=True)  # raises UnpicklingError on anything but tensors and plain data
    state = torch.load(run_dir / PEER_POLICY, weights_only=True)
    trained = model.policy.state_dict()
    assert state.keys() == trained.keys() and all(torch.equal(state[k], trained[k]) for k in trained)
    norm, vec = torch.load(run_dir / PEER_NORMALIZER, weights_only=True), model.get_vec_normalize_env()
    for name in ("obs_rms", "ret_rms"):
        rms = getattr(vec, name)
        np.testing.assert_array_equal(norm[name]["mean"].numpy(), rms.mean)
        np.testing.assert_array_equal(norm[name]["var"].numpy(), rms.var)
        assert norm[name]["count"] == rms.count
    cfg = compose_config(PEER).peer
    assert (norm["clip_obs"], norm["clip_reward"], norm["gamma"]) == (cfg.clip_obs, cfg.clip_reward, cfg.gamma)
    assert norm["epsilon"] == vec.epsilon and (norm["norm_obs"], norm["norm_reward"]) == (vec.norm_obs, vec.norm_reward)


def test_reports_read_the_run_under_the_peers_name(peer_run, tmp_path):
    from trpo_lab.reports import final_scores

    run_dir, _ = peer_run
    usable, skipped = load_runs([run_dir])
    assert [r.path for r in usable] == [run_dir.resolve()] and not skipped
    assert final_scores.main([str(run_dir), "--out", str(tmp_path)]) == 0
    with open(tmp_path / "runs.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["variant"] == "sb3_contrib_trpo" and row["task"] == "Hopper-v5" and int(row["seed"]) == SEED
    assert float(row["eval_final"]) == pytest.approx(read_summary(run_dir)["final_eval"]["return_mean"])


def test_trpo_evaluate_refuses_a_peers_folder_in_one_line(peer_run, capsys):
    from trpo_lab.evaluate import main

    assert main([str(peer_run[0])]) == 2
    assert capsys.readouterr().err.strip().endswith("holds a peer's run (sb3_contrib_trpo), not a trpo-lab checkpoint; "
                                                    "its final deterministic evaluation is summary.json's final_eval")


def test_a_peer_and_the_lab_are_labelled_apart():
    def run(name: str, overrides: dict, peer: str | None, line_search: str = "backtracking") -> Run:
        config = {"env": {"id": "Hopper-v5"}, "seed": 0, "algo": {"max_kl": 0.01, "line_search": line_search}}
        return Run(Path(name), overrides=overrides, config={**config, "peer": {"name": peer}} if peer else config)

    runs = [run("a", {"algo": "trpo", "peer": "none"}, None), run("b", {"algo": "trpo_no_ls"}, None, "none"),
            run("c", {"peer": "sb3_contrib"}, "sb3_contrib_trpo")]
    labels = list(group_runs(runs)["Hopper-v5"])
    assert labels == ["trpo-lab, algo=trpo", "trpo-lab, algo=trpo_no_ls", "sb3_contrib_trpo"]


def test_the_folder_is_bound_to_its_config(peer_run, monkeypatch):
    import trpo_lab.peers.sb3_contrib as peer
    from trpo_lab.train import run

    run_dir, _ = peer_run
    with pytest.raises(RunFolderError, match="peer.cg_damping"):
        run(compose_config([*PEER, "peer.cg_damping=0.2"]), run_dir)
    monkeypatch.setattr(peer, "build", lambda cfg: pytest.fail("a finished run was run again"))
    assert run(compose_config(PEER), run_dir) == read_summary(run_dir)


def test_an_unfinished_run_restarts_from_scratch(peer_run, tmp_path, caplog):
    import shutil

    from trpo_lab.train import run

    run_dir = tmp_path / "run"
    shutil.copytree(peer_run[0], run_dir)
    (run_dir / "summary.json").unlink()  # as if killed before the end
    before = read_metrics(run_dir / "metrics.jsonl")
    with caplog.at_level("WARNING"):
        run(compose_config(PEER), run_dir)
    assert "restarts from scratch" in caplog.text
    assert [r["update"] for r in read_metrics(run_dir / "metrics.jsonl")] == [r["update"] for r in before]


def test_peer_config_is_checked():
    with pytest.raises(ConfigError, match="peer.n_step is not a config key of peer"):
        validate(compose_config([*PEER, "+peer.n_step=3"]))
    with pytest.raises(ConfigError, match=r"peer.cg_damping=-1 is invalid: must be ≥ 0"):
        validate(compose_config([*PEER, "peer.cg_damping=-1"]))
    validate(compose_config([*PEER, "total_env_steps=1000"]))  # the trainer's batch rules do not apply to a peer
    assert compose_config(["env=halfcheetah", *PEER[:1]]).peer.target_kl == 0.04  # RL-Zoo's per-task value
    assert "peer" not in compose_config([])  # peer=none adds no key: the lab's configs are as before


def test_missing_extra_is_one_line_naming_it(monkeypatch):
    from trpo_lab.launch import check_run
    from trpo_lab.peers import run_peer

    monkeypatch.setitem(sys.modules, "sb3_contrib", None)  # find_spec then reports it missing
    cfg = compose_config(PEER)
    for call in (lambda: check_run(cfg, Path("/nonexistent/never-made")), lambda: run_peer(cfg, Path("/x"))):
        with pytest.raises(ConfigError, match=r'^peer=sb3_contrib needs sb3_contrib, not installed: pip install -e "\.\[peers\]"$'):
            call()


@pytest.mark.slow
def test_missing_extra_on_the_cli_exits_2_before_any_folder(tmp_path):
    code = ("import sys; sys.modules['sb3_contrib'] = None; sys.argv = ['train', *sys.argv[1:]]; "
            "from trpo_lab.train import main; main()")
    proc = subprocess.run([sys.executable, "-c", code, *PEER, f"hydra.run.dir={tmp_path / 'run'}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        'error: peer=sb3_contrib needs sb3_contrib, not installed: pip install -e ".[peers]"']
    assert not (tmp_path / "run").exists()
