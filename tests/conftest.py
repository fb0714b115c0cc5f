"""Fixtures shared by the test modules, and the rule that only ``slow`` tests start processes.

Plain constants and functions (override lists, the command-line helpers, hand-written run folders) are in
tests/helpers.py; test modules import them from there and never import each other.
"""
from __future__ import annotations

import multiprocessing.process
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import CONF_DIR, SMOKE

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)

TESTS_DIR = Path(__file__).resolve().parent


def compose_config(overrides=(), config_name="train", return_hydra_config=False):
    """The DictConfig of conf/<config_name>.yaml with ``overrides``, via Hydra's compose API."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=return_hydra_config)


@pytest.fixture
def compose():
    """compose(overrides) -> DictConfig of conf/train.yaml, via Hydra's compose API."""
    return compose_config


def _smoke_run(tmp_path_factory, name: str, overrides: list[str]) -> Path:
    from trpo_lab.train import run

    run_dir = tmp_path_factory.mktemp(name)
    run(compose_config(overrides), run_dir)
    return run_dir


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished CartPole smoke run (4 updates of 512 steps), one per test module."""
    return _smoke_run(tmp_path_factory, "finished", SMOKE)


@pytest.fixture(scope="module")
def pendulum_run(tmp_path_factory) -> Path:
    """A finished InvertedPendulum-v5 smoke run (a MuJoCo task, for rendering), one per test module."""
    return _smoke_run(tmp_path_factory, "run", ["env=inverted_pendulum", "debug=smoke"])


# -- only tests marked slow start processes ------------------------------------------------------------------
#: what starts or signals a process, as (owner, attribute); Popen._execute_child is under every subprocess call
_PROCESS_STARTERS = [(subprocess.Popen, "_execute_child"), (multiprocessing.process.BaseProcess, "start"),
                     *((os, name) for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "kill",
                                               "killpg") if hasattr(os, name))]
_STDLIB_PROCESS_FILES = {subprocess.__file__, multiprocessing.process.__file__}


def _started_by_test_code(test_file: Path) -> bool:
    """Whether the code that asked for the process is the test's module or tests/helpers.py, not trpo_lab or a
    library it calls (trpo_lab runs git for the run's commit; W&B starts its service)."""
    frame = sys._getframe(2)  # the caller of the guarded function
    while frame is not None and frame.f_code.co_filename in _STDLIB_PROCESS_FILES:
        frame = frame.f_back  # subprocess.run → Popen.__init__ → _execute_child
    if frame is None:
        return False
    where = Path(frame.f_code.co_filename)
    return where == test_file or where == TESTS_DIR / "helpers.py"


@pytest.fixture(autouse=True)
def _only_slow_tests_start_processes(request, monkeypatch):
    """A test that starts (or signals) a process must be marked ``slow``, so that ``-m "not slow"`` starts none.
    Processes that trpo_lab itself starts (``git``, W&B's service) do not count."""
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    test_file = Path(str(request.path)).resolve()

    def guard(owner, name):
        real = getattr(owner, name)

        def guarded(*args, **kwargs):
            if _started_by_test_code(test_file):
                what = f"{getattr(owner, '__name__', owner)}.{name}"
                pytest.fail(f"{request.node.nodeid} starts or signals a process ({what}): mark it @pytest.mark.slow",
                            pytrace=False)
            return real(*args, **kwargs)

        return guarded

    for owner, name in _PROCESS_STARTERS:
        monkeypatch.setattr(owner, name, guard(owner, name))
    yield
