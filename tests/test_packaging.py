"""Installing like a library (a wheel with the configs inside, console scripts), and the benchmark script and
throughput drivers that measure the fast paths."""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: the console scripts the README promises, and the functions they run
CONSOLE_SCRIPTS = {
    "trpo-train": "trpo_lab.train:main",
    "trpo-evaluate": "trpo_lab.evaluate:main",
    "trpo-sweep-summary": "trpo_lab.sweep:main",
    "trpo-plot-curves": "trpo_lab.reports.curves:main",
    "trpo-step-behavior": "trpo_lab.reports.step_behavior:main",
    "trpo-final-scores": "trpo_lab.reports.final_scores:main",
}


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:  # its parent package does not exist
        return False


def test_console_scripts_are_declared_and_point_at_callables():
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert declared == CONSOLE_SCRIPTS
    present = {name: target for name, target in declared.items() if _module_exists(target.split(":")[0])}
    assert {"trpo-train", "trpo-evaluate", "trpo-sweep-summary"} <= set(present)
    for target in present.values():
        module, attr = target.split(":")
        assert callable(getattr(importlib.import_module(module), attr)), target


def _source_copy(dest: Path) -> Path:
    """The checkout without its VCS folder and run outputs (a wheel build writes build/ into the tree)."""
    shutil.copytree(REPO, dest, ignore=shutil.ignore_patterns(
        ".git", "outputs", "multirun", "wandb", "build", "dist", "*.egg-info", "__pycache__", ".venv", "*.pt"))
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = _source_copy(tmp / "src")
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-w", str(tmp / "dist")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (whl,) = (tmp / "dist").glob("trpo_lab-*.whl")
    return whl


@pytest.mark.slow
def test_the_wheel_carries_every_config(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    shipped = {n.removeprefix("trpo_lab/conf/") for n in names if n.startswith("trpo_lab/conf/")}
    in_checkout = {p.relative_to(REPO / "conf").as_posix() for p in (REPO / "conf").rglob("*.yaml")}
    assert shipped == in_checkout
    assert not any(n.startswith("conf/") for n in names)  # inside the package, not a top-level "conf" package
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{name} = {target}" in text for name, target in CONSOLE_SCRIPTS.items())


def _venv_with_this_environments_packages(venv: Path) -> Path:
    """A venv that sees no system site-packages and, after its own site-packages, the site-packages of the
    interpreter running the tests (through a ``.pth`` file): the wheel's dependencies, whatever the system
    Python has. A ``.pth`` line only appends its folder to ``sys.path``; the ``.pth`` files inside that
    folder (this environment's editable install of the checkout) are not processed."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    ours = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.strip()
    here = [p for p in site.getsitepackages() if Path(p).is_dir()]
    (Path(ours) / "_tests_dependencies.pth").write_text("".join(f"{p}\n" for p in here))
    return python


@pytest.mark.slow
def test_installed_wheel_trains_with_the_console_script_away_from_the_checkout(wheel, tmp_path):
    """pip install of the wheel (dependencies from this environment), then ``trpo-train debug=smoke`` and
    ``trpo-evaluate`` from a folder that is not the checkout, with nothing of the checkout on the path."""
    venv = tmp_path / "venv"
    python = _venv_with_this_environments_packages(venv)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # before the install, the dependencies import there and trpo_lab does not: neither the checkout nor this
    # environment's editable install of it is reachable, so the trpo_lab used below can only be the wheel's
    before = subprocess.run([str(python), "-c", "import hydra, torch, gymnasium, mujoco, wandb; import trpo_lab"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert before.stderr.strip().splitlines()[-1:] == ["ModuleNotFoundError: No module named 'trpo_lab'"], before
    out = subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
                          str(wheel)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    where = subprocess.run([str(python), "-c", "import trpo_lab; print(trpo_lab.CONFIG_DIR)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    site_dir = str(venv / "lib")
    assert where.stdout.strip().startswith(site_dir) and where.stdout.strip().endswith("trpo_lab/conf"), where

    run_dir = tmp_path / "run"
    out = subprocess.run([str(venv / "bin" / "trpo-train"), "debug=smoke", "env=cartpole", f"hydra.run.dir={run_dir}"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    steps = [json.loads(line)["env_steps"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [512, 1024, 1536, 2048]  # debug=smoke: 4 updates of 512 steps
    out = subprocess.run([str(venv / "bin" / "trpo-evaluate"), str(run_dir), "--episodes", "2"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and "return" in out.stdout.lower(), (out.stdout, out.stderr[-2000:])
    for name, target in CONSOLE_SCRIPTS.items():
        if _module_exists(target.split(":")[0]):
            out = subprocess.run([str(venv / "bin" / name), "--help"], cwd=tmp_path, env=env,
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0 and out.stdout.strip(), (name, out.stderr[-2000:])


# -- the benchmark script and the throughput drivers ---------------------------------------------------------
@pytest.mark.slow
def test_benchmark_levers_set_their_config_keys():
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--vector-env", "gymnasium", "--actor", "torch",
         "--critic-impl", "autograd", "env=cartpole", "total_env_steps=1024", "rollout.batch_size=512",
         "rollout.normalizer_warmup=0"],
        capture_output=True, text=True, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["env_steps"] == 1024
    s = result["settings"]
    assert (s["vector_env"], s["numpy_actor"], s["critic_implementation"]) == ("gymnasium", False, "autograd")


@pytest.mark.slow
def test_throughput_levers_driver_runs_every_variant(tmp_path):
    """experiments/throughput/levers.sh with 1 round of 2048 steps: one JSON line per variant and env, each
    with the settings its tag names."""
    out_file = tmp_path / "levers.jsonl"
    out = subprocess.run(["bash", str(REPO / "experiments" / "throughput" / "levers.sh"), "1", "2048", str(out_file)],
                         env={**os.environ, "PY": sys.executable, "ORIG": ""}, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {r["tag"]: r for r in map(json.loads, out_file.read_text().splitlines())}
    variants = ["1-all-off", "2-+inprocess-env", "3-+numpy-actor", "4-+jmj-fisher", "5-+fused-critic=default",
                "7-torch_threads=2"]
    assert set(rows) == {f"{v}/{env}" for v in variants for env in ("hopper", "halfcheetah")}
    for env in ("hopper", "halfcheetah"):
        off, default = rows[f"1-all-off/{env}"]["settings"], rows[f"5-+fused-critic=default/{env}"]["settings"]
        assert off["fisher"]["method"] == "double_backprop" and default["fisher"]["method"] == "jmj"
        assert (off["vector_env"], off["numpy_actor"], off["critic_implementation"]) == ("gymnasium", False, "autograd")
        assert (default["vector_env"], default["numpy_actor"], default["critic_implementation"]) == ("inprocess", True, "fused")
        assert rows[f"7-torch_threads=2/{env}"]["settings"]["torch_threads"] == 2
        assert all(rows[f"{v}/{env}"]["env_steps"] == 2048 for v in variants)
