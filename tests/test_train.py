"""End-to-end: every variant trains a few updates through the real entry point's builder."""
import math

import pytest
import torch

from trpo_lab.config import ConfigError
from trpo_lab.train import build_trainer, run

from helpers import SMOKE, metrics_rows, run_cli


@pytest.mark.parametrize("algo", ["npg", "trpo_no_ls", "trpo"])
@pytest.mark.parametrize("env", ["cartpole", "pendulum"])
def test_each_variant_runs_end_to_end(compose, tmp_path, algo, env):
    cfg = compose([f"algo={algo}", f"env={env}", "debug=smoke"])
    summary = run(cfg, tmp_path)
    rows = metrics_rows(tmp_path)
    assert len(rows) == 4 and [r["env_steps"] for r in rows] == [512, 1024, 1536, 2048]
    assert summary["env_steps"] == 2048
    for r in rows:
        for k, v in r.items():
            if isinstance(v, float):
                assert math.isfinite(v), (k, v)
    assert (tmp_path / "config.yaml").exists() and (tmp_path / "summary.json").exists()
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["env_steps"] == 2048 and ckpt["updates"] == 4


def test_metrics_keys_are_identical_across_variants(compose, tmp_path):
    keys = []
    for algo in ("npg", "trpo_no_ls", "trpo"):
        run(compose([f"algo={algo}", *SMOKE]), tmp_path / algo)
        keys.append({k for r in metrics_rows(tmp_path / algo) for k in r})
    assert keys[0] == keys[1] == keys[2]
    for k in ("env_steps", "return/mean", "step/kl_mean", "step/kl_max", "step/surrogate_expected",
              "step/surrogate_actual", "line_search/backtracks", "line_search/accepted", "cg/residual",
              "policy/entropy", "critic/loss", "critic/explained_variance", "time/rollout_s", "time/update_s",
              "full_step/kl_mean", "bound/penalised_surrogate", "monotonic/improved_fraction"):
        assert k in keys[0], k


def test_same_seed_same_metrics(compose, tmp_path):
    cfg = compose(["env=pendulum", "debug=smoke", "seed=7"])
    run(cfg, tmp_path / "a")
    run(cfg, tmp_path / "b")
    assert metrics_rows(tmp_path / "a", timing=False) == metrics_rows(tmp_path / "b", timing=False)
    run(compose(["env=pendulum", "debug=smoke", "seed=8"]), tmp_path / "c")
    assert metrics_rows(tmp_path / "a", timing=False) != metrics_rows(tmp_path / "c", timing=False)


@pytest.mark.parametrize(
    "override, key",
    [("algo.max_kl=-0.01", "algo.max_kl"), ("algo.max_kl=0", "algo.max_kl"),
     ("algo.line_search.backtrack_coef=1.5", "algo.line_search.backtrack_coef"),
     ("algo.solver.iters=0", "algo.solver.iters"), ("algo.solver.damping=-1", "algo.solver.damping"),
     ("rollout.gamma=1.2", "rollout.gamma"), ("rollout.gae_lambda=-0.1", "rollout.gae_lambda"),
     ("rollout.batch_size=1", "rollout.batch_size"), ("total_env_steps=10", "total_env_steps"),
     ("algo.fisher.subsample=0", "algo.fisher.subsample"), ("algo.kl_direction=sideways", "algo.kl_direction")],
)
def test_bad_values_fail_before_any_work(compose, tmp_path, override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build_trainer(compose(["env=cartpole", override]), tmp_path)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_npg_step_size_must_be_positive(compose, tmp_path):
    with pytest.raises(ConfigError, match=r"algo\.step_rule\.step_size"):
        build_trainer(compose(["algo=npg", "algo.step_rule.step_size=0"]), tmp_path)


def test_unknown_env_lists_close_matches(compose, tmp_path):
    with pytest.raises(ConfigError, match="Hopper-v5"):
        build_trainer(compose(["env.id=Hoper-v5"]), tmp_path)


@pytest.mark.slow
def test_cli_exits_nonzero_with_one_line_error(tmp_path):
    out = run_cli("algo.max_kl=-1", f"hydra.run.dir={tmp_path}", timeout=120)
    assert out.returncode == 2
    assert "algo.max_kl=-1" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("total, warmup", [(1100, 0), (1100, 300), (1536, 0)])
def test_a_budget_rounded_up_to_whole_batches_is_said_once(compose, tmp_path, caplog, total, warmup):
    # SMOKE: 2 envs × 256 steps = 512-step batches; a warm-up of w env steps takes ⌈w/2⌉ vector steps
    caplog.set_level("INFO", logger="trpo_lab.trainer")
    summary = run(compose([*SMOKE, f"total_env_steps={total}", f"rollout.normalizer_warmup={warmup}"]), tmp_path / "r")
    warm = 2 * math.ceil(warmup / 2)
    expected = warm + 512 * math.ceil((total - warm) / 512)
    assert summary["env_steps"] == expected  # independent of the message: the trainer's own count
    said = [r.getMessage() for r in caplog.records if "rounded up" in r.getMessage()]
    if expected == total:
        assert said == []
    else:
        assert said == [f"total_env_steps={total} is rounded up to whole batches of 512 env steps"
                        f"{f' after {warm} warm-up steps' if warm else ''}: the run stops at {expected} env steps"]
