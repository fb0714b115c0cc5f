"""Test helpers shared across test modules (test modules never import each other)."""
from __future__ import annotations

import contextlib
import copy
import json
import multiprocessing.process
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parameters_to_vector

from trpo_lab.policies import CategoricalPolicy, GaussianPolicy

#: the W&B command-line tool of the running interpreter (``wandb leet inspect`` reads offline runs)
WANDB = str(Path(sys.executable).parent / "wandb")

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
HELPERS = Path(__file__).resolve()
#: a frozen copy of experiments/mujoco_1m/runs.csv as recorded at ed7e62d (60 runs; Walker2d's trpo and trpo_no_ls
#: runs bit-identical seed by seed): the comparison tests' data, which a re-run of the study does not change
MUJOCO_1M_RUNS = HELPERS.parent / "data" / "mujoco_1m_runs_ed7e62d.csv"

# -- shared overrides -----------------------------------------------------------------------------------------
#: a 4-update CartPole run: debug=smoke is 2 envs, 512-step batches, 2048 steps, no W&B, a console line per update
SMOKE = ["env=cartpole", "debug=smoke"]
#: CartPole with 512-step batches and nothing else per update, for command-line runs that are killed, signalled
#: or resumed at a row count (set total_env_steps and checkpoint_every per test)
FAST = ["env=cartpole", "rollout.num_envs=2", "rollout.batch_size=512", "critic.epochs=1",
        "logger.wandb.mode=disabled", "logger.console=lines", "logger.console_every=1", "eval.every=0",
        "rollout.normalizer_warmup=0"]
#: no W&B and no console output, for in-process runs at their configured scale
QUIET = ["logger.wandb.mode=disabled", "logger.console=off"]
#: metric sections that hold wall-clock times: the only keys that differ between two runs of one config
TIMING = ("time/", "perf/")


def metrics_rows(run_dir: Path | str, *, timing: bool = True) -> list[dict]:
    """The rows of ``run_dir/metrics.jsonl``; without the TIMING keys when ``timing`` is false."""
    rows = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return rows if timing else [{k: v for k, v in r.items() if not k.startswith(TIMING)} for r in rows]


# -- the command line (every test that calls these is marked slow: tests/conftest.py enforces it) ----------------
def _cli_env(env: dict[str, str | None] | None) -> dict[str, str]:
    """os.environ with ``env`` applied; a None value removes the variable."""
    out = {**os.environ, **{k: v for k, v in (env or {}).items() if v is not None}}
    return {k: v for k, v in out.items() if (env or {}).get(k, "") is not None}


def run_cli(*args: str, module: str = "trpo_lab.train", cwd: Path | str | None = None,
            env: dict[str, str | None] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m module *args`` in a new process, to its end; text stdout and stderr captured."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=_cli_env(env), capture_output=True,
                          text=True, timeout=timeout)


def start_cli(*args: str, module: str = "trpo_lab.train", cwd: Path | str | None = None,
              env: dict[str, str | None] | None = None, **popen) -> subprocess.Popen:
    """``python -m module *args`` started in a new process (stdout and stderr piped unless ``popen`` says
    otherwise); the caller waits for it, signals or kills it."""
    popen = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, **popen}
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, env=_cli_env(env), **popen)



# -- only slow tests start processes (the check behind tests/conftest.py's autouse fixture) ----------------------
#: what starts or signals a process, as (owner, attribute); Popen._execute_child is under every subprocess call
PROCESS_STARTERS = [(subprocess.Popen, "_execute_child"), (multiprocessing.process.BaseProcess, "start"),
                    *((os, name) for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "kill",
                                              "killpg") if hasattr(os, name))]
_STDLIB_PROCESS_FILES = {subprocess.__file__, multiprocessing.process.__file__}


@contextlib.contextmanager
def processes_refused(test_file: Path, nodeid: str) -> Iterator[None]:
    """Inside, a process started or signalled by code in ``test_file`` or in this module fails the test
    ``nodeid`` before the process exists; code elsewhere (trpo_lab, the libraries it calls) is let through."""

    def guarded_by(owner: Any, name: str, real: Any) -> Any:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            frame = sys._getframe(1)  # the caller, past subprocess.run → Popen.__init__ and other guards
            while frame is not None and (frame.f_code.co_filename in _STDLIB_PROCESS_FILES
                                         or frame.f_code is guarded.__code__):
                frame = frame.f_back
            if frame is not None and Path(frame.f_code.co_filename) in (test_file, HELPERS):
                what = f"{getattr(owner, '__name__', owner)}.{name}"
                pytest.fail(f"{nodeid} starts or signals a process ({what}): mark it @pytest.mark.slow", pytrace=False)
            return real(*args, **kwargs)

        return guarded

    saved = [(owner, name, getattr(owner, name)) for owner, name in PROCESS_STARTERS]
    try:
        for owner, name, real in saved:
            setattr(owner, name, guarded_by(owner, name, real))
        yield
    finally:
        for owner, name, real in saved:
            setattr(owner, name, real)


class CountingEnv(gym.Env):
    """obs = [steps taken in this episode]; reward = that count + 1; terminates after ``term_at`` steps."""

    def __init__(self, term_at: int | None = None):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.term_at = term_at
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action):
        reward = float(self.t + 1)
        self.t += 1
        terminated = self.term_at is not None and self.t >= self.term_at
        return np.array([float(self.t)], np.float32), reward, terminated, False, {}


class LinearValue(torch.nn.Module):
    """V(s) = 10 + s: a known critic."""

    def forward(self, obs):
        return 10.0 + obs[..., 0]


class StateStdGaussian(nn.Module):
    """A policy outside trpo_lab.policies: N(μ(s), diag σ(s)²) with a state-dependent σ and a LayerNorm."""

    discrete = False

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(obs_dim, 8), nn.LayerNorm(8), nn.Tanh())
        self.mu = nn.Linear(8, act_dim)
        self.ls = nn.Linear(8, act_dim)

    def dist_params(self, obs):
        h = self.body(obs)
        return self.mu(h), self.ls(h)

    forward = dist_params

    def kl(self, p, q):
        (mp, lp), (mq, lq) = p, q
        return (lq - lp + 0.5 * (torch.exp(2 * (lp - lq)) + ((mp - mq) * torch.exp(-lq)) ** 2) - 0.5).sum(-1)


def perturbed(pol: nn.Module, scale: float = 0.3, seed: int = 0) -> nn.Module:
    """Adds scale·N(0, 1) noise to every parameter: a non-trivial operating point, away from the near-zero init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in pol.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return pol


def small_policy(kind: str, activation: str = "tanh", hidden=(5, 4)) -> nn.Module:
    """A perturbed 3-input policy: ``gaussian`` (2 actions), ``categorical`` (4 actions) or ``custom`` (StateStdGaussian)."""
    torch.manual_seed(0)
    if kind == "gaussian":
        return perturbed(GaussianPolicy(3, 2, hidden_sizes=hidden, activation=activation, log_std_init=-0.3))
    if kind == "categorical":
        return perturbed(CategoricalPolicy(3, 4, hidden_sizes=hidden, activation=activation))
    return perturbed(StateStdGaussian(3, 2))


def unflatten(pol: nn.Module, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """The flat vector ``flat`` as ``{name: tensor}`` in the order and shapes of ``pol.named_parameters()``."""
    out, i = {}, 0
    for name, p in pol.named_parameters():
        out[name] = flat[i : i + p.numel()].reshape(p.shape)
        i += p.numel()
    return out


def dense_kl_hessian(pol: nn.Module, obs: torch.Tensor) -> torch.Tensor:
    """∇²_θ mean KL(π_θold ‖ π_θ) at θ_old in float64, by ``torch.autograd.functional.hessian``."""
    pol64 = copy.deepcopy(pol).double()
    obs64 = obs.double()
    theta0 = parameters_to_vector(pol64.parameters()).detach()
    with torch.no_grad():
        old = pol64.dist_params(obs64)

    def kl_of(theta: torch.Tensor) -> torch.Tensor:
        return pol64.kl(old, functional_call(pol64, unflatten(pol64, theta), (obs64,))).mean()

    return torch.autograd.functional.hessian(kl_of, theta0)


# -- run folders written by hand, as a training job writes them (README: config.yaml, metrics.jsonl,
# summary.json, .hydra/overrides.yaml, .hydra/config.yaml): for the tests of runs, reports and the sweep summary


def config_for(overrides: list[str], *, seed: int, env_id: str, max_kl: float, total_env_steps: int) -> dict[str, Any]:
    """A resolved config that holds what ``overrides`` ask for.

    A leaf override ``a.b=v`` sets ``a.b`` to ``v`` (parsed as YAML); a group choice ``algo=npg`` stands for
    the group's contents, written as the leaf ``algo.preset: npg``.
    """
    config: dict[str, Any] = {"seed": seed, "total_env_steps": total_env_steps, "env": {"id": env_id},
                              "algo": {"max_kl": max_kl}, "logger": {"wandb": {"mode": "offline"}}}
    for o in overrides:
        key, _, value = o.lstrip("+~").partition("=")
        if key == "seed":
            continue
        path = key.replace("/", ".").split(".")
        if len(path) == 1 and (key not in config or isinstance(config[key], dict)):
            path = [key, "preset"]
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {o} replaces a leaf")
        node[path[-1]] = yaml.safe_load(value)
    return config


def write_run(
    path: Path,
    overrides: list[str],
    rows: list[dict],
    *,
    env_id: str = "Hopper-v5",
    seed: int = 0,
    max_kl: float = 0.01,
    total_env_steps: int = 1_000_000,
    config: dict[str, Any] | None = None,
    requested: dict[str, Any] | None = None,
    summary: dict | None = None,
    finished: bool = True,
    error: str | None = None,
) -> Path:
    """A run folder; ``config`` (default: :func:`config_for` the overrides) is the data's config.yaml and
    ``requested`` (default: the same) the launch's .hydra/config.yaml."""
    if config is None:
        config = config_for(overrides, seed=seed, env_id=env_id, max_kl=max_kl, total_env_steps=total_env_steps)
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(copy.deepcopy(requested if requested is not None else config)))
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if finished:
        (path / "summary.json").write_text(json.dumps(summary or {"env_steps": rows[-1]["env_steps"] if rows else 0}))
    if error is not None:
        (path / "error.txt").write_text(error)
    return path


def return_rows(returns: list[float | None], batch: int = 1000, **columns: list) -> list[dict]:
    """One row per update with ``return/mean`` = returns[i]; other keys from ``columns``."""
    rows = []
    for i, ret in enumerate(returns):
        row = {"env_steps": (i + 1) * batch, "update": i + 1, "return/mean": ret}
        row.update({k: v[i] for k, v in columns.items()})
        rows.append(row)
    return rows


# -- resume identity ---------------------------------------------------------------------------------------------
def assert_same_run(run_dir: Path | str, reference: Path | str) -> None:
    """``run_dir`` holds the run of ``reference``: every metrics.jsonl value but the TIMING keys, row for row, and
    the final deterministic evaluation (summary.json)."""
    rows, expected = metrics_rows(run_dir, timing=False), metrics_rows(reference, timing=False)
    assert [r["update"] for r in rows] == [r["update"] for r in expected]
    for got, want in zip(rows, expected):
        differing = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
        assert not differing, f"update {want['update']}: {[(k, got.get(k), want.get(k)) for k in differing[:5]]}"
    final = [json.loads((Path(d) / "summary.json").read_text())["final_eval"] for d in (run_dir, reference)]
    assert final[0] == final[1]


def wait_for_rows(proc: subprocess.Popen, run_dir: Path | str, n: int, timeout: float = 180) -> None:
    """Wait until ``run_dir/metrics.jsonl`` holds ``n`` rows; fail if ``proc`` ends first."""
    path, end = Path(run_dir) / "metrics.jsonl", time.time() + timeout
    while time.time() < end:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        if proc.poll() is not None:
            raise AssertionError(f"training ended early: {proc.stderr.read()[-2000:] if proc.stderr else ''}")
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {n} rows within {timeout} s")
