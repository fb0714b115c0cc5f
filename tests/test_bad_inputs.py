"""Bad inputs: each is refused with one line naming the key, the value and what is allowed; nothing is created.

The in-process cases call :func:`trpo_lab.launch.check_run` (what the CLI's preflight runs) and the
evaluate CLI's ``main``; the subprocess cases (marked slow) are those only the command line can
show: Hydra's own composition errors, the exit code, a read-only folder, a broken renderer, a sweep.
"""
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from trpo_lab.config import ConfigError
from trpo_lab.evaluate import main as evaluate_main
from trpo_lab.launch import check_run
from trpo_lab.run_folder import CheckpointError

from helpers import SMOKE, run_cli

#: SMOKE with W&B offline: a refusal must come before any W&B folder is made
OFFLINE_SMOKE = [*SMOKE, "logger.wandb.mode=offline"]

CONFIG_CASES = [  # (override, what the one line must contain)
    ("seed=-1", "seed=-1 is invalid: must be an integer ≥ 0"),
    ("seed=1.5", "seed=1.5 is invalid: must be an integer"),
    ("seed=abc", "seed='abc' is invalid: must be an integer"),
    ("total_env_steps=2048.5", "total_env_steps=2048.5 is invalid: must be an integer"),
    ("total_env_steps=10", "total_env_steps=10 is invalid: must be ≥ rollout.batch_size (512)"),
    ("algo.max_kl=0", "algo.max_kl=0 is invalid: must be > 0"),
    ("algo.max_kl=-0.01", "algo.max_kl=-0.01 is invalid: must be > 0"),
    ("algo.line_search.backtrack_coef=1", "algo.line_search.backtrack_coef=1 is invalid: must be in (0, 1)"),
    ("algo.line_search.backtrack_coef=0", "algo.line_search.backtrack_coef=0 is invalid: must be in (0, 1)"),
    ("algo.line_search.max_backtracks=0", "algo.line_search.max_backtracks=0 is invalid: must be an integer ≥ 1"),
    ("algo.solver.iters=0", "algo.solver.iters=0 is invalid: must be an integer ≥ 1"),
    ("algo.solver.damping=-1", "algo.solver.damping=-1 is invalid: must be ≥ 0"),
    ("algo.fisher.subsample=0", "algo.fisher.subsample=0 is invalid: must be in (0, 1]"),
    ("algo.fisher.method=exact", "algo.fisher.method='exact' is invalid: must be one of jmj, double_backprop"),
    ("algo.kl_direction=sideways", "algo.kl_direction='sideways' is invalid: must be one of old_new, new_old"),
    ("algo.constraint=median", "algo.constraint='median' is invalid: must be one of mean, max"),
    ("rollout.gamma=1.2", "rollout.gamma=1.2 is invalid: must be in [0, 1]"),
    ("rollout.gae_lambda=-0.1", "rollout.gae_lambda=-0.1 is invalid: must be in [0, 1]"),
    ("rollout.batch_size=1001", "rollout.batch_size=1001 is invalid: must be a multiple of rollout.num_envs (2)"),
    ("rollout.num_envs=0", "rollout.num_envs=0 is invalid: must be an integer ≥ 1"),
    ("rollout.vector_env=ray", "rollout.vector_env='ray' is invalid: must be one of inprocess, gymnasium"),
    ("rollout.normalize_obs=maybe", "rollout.normalize_obs='maybe' is invalid: must be true or false"),
    ("+rollout.foo=1", "rollout.foo is not a config key of rollout"),
    ("logger.console=fancy", "logger.console='fancy' is invalid: must be one of auto, bar, lines, off"),
    ("logger.console_every=0", "logger.console_every=0 is invalid: must be an integer ≥ 1"),
    ("logger.wandb.mode=sometimes", "logger.wandb.mode='sometimes' is invalid: must be one of auto, online"),
    ("logger.wandb.init_timeout=0", "logger.wandb.init_timeout=0 is invalid: must be > 0"),
    ("logger.wandb.tags=[1]", "logger.wandb.tags[0]=1 is invalid: must be a string"),
    ("eval.episodes=0", "eval.episodes=0 is invalid: must be an integer ≥ 1"),
    ("eval.every=-1", "eval.every=-1 is invalid: must be an integer ≥ 0"),
    ("policy.activation=sigmoid", "policy.activation='sigmoid' is invalid: must be one of tanh, relu, elu"),
    ("policy.hidden_sizes=[64,0]", "policy.hidden_sizes[1]=0 is invalid: must be an integer ≥ 1"),
    ("critic.lr=0", "critic.lr=0 is invalid: must be > 0"),
    ("critic.implementation=jit", "critic.implementation='jit' is invalid: must be one of fused, autograd"),
    ("torch_threads=-1", "torch_threads=-1 is invalid: must be an integer ≥ 0"),
    ("collapse_share=0", "collapse_share=0 is invalid: must be > 0"),
    ("return_window=0", "return_window=0 is invalid: must be an integer ≥ 1"),
    ("max_consecutive_skips=0", "max_consecutive_skips=0 is invalid: must be an integer ≥ 1"),
    ("env.id=Hoper-v5", "env.id='Hoper-v5' is not a registered gymnasium environment. Did you mean: Hopper-v5"),
    ("env.id=LunarLander-v3", "env.id='LunarLander-v3' needs a package that is not installed: Box2D"),
    ("+env.kwargs.foo=1", "env.kwargs={'foo': 1} is invalid: CartPole-v1 does not accept them"),
    ("resume=true", "resume=true, but there is no checkpoint at"),
]


def _box2d_installed() -> bool:
    try:
        import Box2D  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("override, line", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_config_values_are_refused_before_anything_is_made(compose, tmp_path, override, line):
    if "LunarLander" in override and _box2d_installed():
        pytest.skip("Box2D is installed here")
    run_dir = tmp_path / "run"
    with pytest.raises((ConfigError, CheckpointError)) as e:
        check_run(compose([*OFFLINE_SMOKE, override]), run_dir)
    assert line in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_integers_may_be_written_in_float_notation(compose, tmp_path):
    cfg = compose([*OFFLINE_SMOKE, "total_env_steps=1e6", "rollout.batch_size=1.024e3"])
    check_run(cfg, tmp_path / "run")
    assert cfg.total_env_steps == 1_000_000 and isinstance(cfg.total_env_steps, int)
    assert cfg.rollout.batch_size == 1024 and isinstance(cfg.rollout.batch_size, int)


@pytest.mark.parametrize("args, line", [
    (["--episodes", "0"], "error: --episodes=0 is invalid: must be an integer ≥ 1"),
    (["--episodes", "2.5"], "error: --episodes=2.5 is invalid: must be an integer"),
    (["--seed", "-1"], "error: --seed=-1 is invalid: must be an integer ≥ 0"),
    (["--episodes", "x"], "error: argument --episodes: invalid float value: 'x'"),
    (["--frames", "3"], "error: unrecognized arguments: --frames 3"),
])
def test_evaluate_arguments_are_refused_in_one_line(finished_run, capsys, args, line):
    before = sorted(p.name for p in finished_run.iterdir())
    try:
        code = evaluate_main([str(finished_run), *args])
    except SystemExit as e:  # argparse's own errors
        code = e.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(line), err
    assert sorted(p.name for p in finished_run.iterdir()) == before


def test_evaluate_refuses_a_corrupt_run_folder(finished_run, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(finished_run, bad)
    (bad / "config.yaml").write_text("env: [unclosed\n")
    assert evaluate_main([str(bad)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {bad / 'config.yaml'} is not a readable trpo-lab config (ParserError)"


# -- what only the command line shows ------------------------------------------------------------------


def _read_only_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:  # root writes through permission bits: use a read-only file system
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys")
        return Path("/sys/trpo-lab-test")
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return ro


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unknown algo", "unknown env preset", "override syntax", "read-only folder",
                                  "osmesa without OSMesa", "sweep with one bad job", "resume=PATH corrupt",
                                  "config value", "multirun with --cfg job"])
def test_cli_refusals_exit_2_with_one_line_and_leave_nothing(tmp_path, case, finished_run):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    env = None
    if case == "unknown algo":
        args, line = ["algo=trpo2"], "error: In 'train': Could not find 'algo/trpo2' (available: npg, trpo, trpo_no_ls)"
    elif case == "unknown env preset":
        args, line = ["env=hoper"], "error: In 'train': Could not find 'env/hoper' (available: acrobot, ant,"
    elif case == "override syntax":
        args, line = ["seed=[1"], "error: no viable alternative at input '[1'"
    elif case == "read-only folder":
        ro = _read_only_folder(tmp_path)
        args, line = [f"hydra.run.dir={ro}/run"], f"error: run folder='{ro}/run' is invalid: {ro.parent if os.geteuid() == 0 else ro} is not writable"
    elif case == "osmesa without OSMesa":
        probe = subprocess.run([sys.executable, "-c", "import mujoco"], capture_output=True,
                               env={**os.environ, "MUJOCO_GL": "osmesa"})
        if probe.returncode == 0:
            pytest.skip("OSMesa is installed here")
        args, line, env = ["env=hopper"], "error: MUJOCO_GL=osmesa is invalid here: mujoco cannot load", {"MUJOCO_GL": "osmesa"}
    elif case == "sweep with one bad job":
        args, line = ["-m", "seed=0,-1"], "error: job 1 ("
    elif case == "resume=PATH corrupt":
        bad = tmp_path / "bad"
        shutil.copytree(finished_run, bad)
        (bad / "config.yaml").write_text("env: [unclosed\n")
        args, line = [f"resume={bad}"], f"error: resume={bad}: {bad / 'config.yaml'} is not a readable config"
    elif case == "multirun with --cfg job":
        args, line = ["-m", "seed=0,1", "--cfg", "job"], "error: Only one of --run, --multirun, --cfg"
    else:
        args, line = ["rollout.gamma=2"], "error: rollout.gamma=2 is invalid: must be in [0, 1]"
    flags = [a for a in args if a == "-m"]  # Hydra's flags go before the overrides
    out = run_cli(*flags, *OFFLINE_SMOKE, *[a for a in args if a != "-m"], cwd=cwd, env=env)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and lines[0].startswith(line), out.stderr
    assert list(cwd.iterdir()) == []  # no run folder, no W&B folder, no multirun folder
