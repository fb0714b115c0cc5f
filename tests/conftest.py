"""Fixtures shared by the test modules, and the rule that only ``slow`` tests start processes.

Plain constants and functions (override lists, the command-line helpers, hand-written run folders) are in
tests/helpers.py; test modules import them from there and never import each other.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import CONF_DIR, SMOKE, processes_refused

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(1)


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
@pytest.fixture(autouse=True)
def _only_slow_tests_start_processes(request):
    """A test whose own code (its module or tests/helpers.py) starts or signals a process must be marked ``slow``,
    so that ``-m "not slow"`` starts none. Processes that trpo_lab itself starts (``git``, W&B's service) do not
    count. Module-scoped fixtures are set up before this check: they start processes only for slow tests."""
    if request.node.get_closest_marker("slow") is not None:
        yield
        return
    with processes_refused(Path(str(request.path)).resolve(), request.node.nodeid):
        yield
