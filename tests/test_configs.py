"""Every config group option and every preset composes and instantiates (lightning-hydra-template style)."""
from pathlib import Path

import pytest
from hydra.utils import instantiate

from trpo_lab.natural.line_search import BacktrackingLineSearch, NoLineSearch
from trpo_lab.natural.step_rules import FixedStep, KLScaledStep
from trpo_lab.train import build_update

from helpers import CONF_DIR

CONF = Path(CONF_DIR)


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_default_is_trpo_on_hopper(compose):
    cfg = compose()
    assert cfg.env.id == "Hopper-v5"
    upd = build_update(cfg.algo)
    assert isinstance(upd.step_rule, KLScaledStep) and isinstance(upd.line_search, BacktrackingLineSearch)
    assert upd.kl_direction == "old_new" and upd.constraint == "mean"


@pytest.mark.parametrize(
    "algo, rule, ls",
    [("npg", FixedStep, NoLineSearch), ("trpo_no_ls", KLScaledStep, NoLineSearch),
     ("trpo", KLScaledStep, BacktrackingLineSearch)],
)
def test_variant_presets_are_compositions(compose, algo, rule, ls):
    upd = build_update(compose([f"algo={algo}"]).algo)
    assert type(upd.step_rule) is rule and type(upd.line_search) is ls


@pytest.mark.parametrize("group", ["algo", "sampling", "algo/step_rule", "algo/line_search", "algo/fisher", "algo/solver",
                                   "env", "policy", "critic", "logger", "debug"])
def test_every_group_option_composes_and_instantiates(compose, group):
    opts = _options(group)
    assert opts, f"conf/{group} is empty"
    for opt in opts:
        cfg = compose([f"{group}={opt}"])
        build_update(cfg.algo)
        for piece in ("step_rule", "line_search", "fisher", "solver"):
            instantiate(cfg.algo[piece])


def test_two_by_two_ablation_is_group_overrides(compose):
    seen = set()
    for rule in _options("algo/step_rule"):
        for ls in _options("algo/line_search"):
            upd = build_update(compose([f"algo/step_rule={rule}", f"algo/line_search={ls}"]).algo)
            seen.add((type(upd.step_rule).__name__, type(upd.line_search).__name__))
    assert len(seen) == 4


def test_env_presets_set_their_task_and_per_task_delta(compose):
    assert compose(["env=halfcheetah"]).algo.max_kl == 0.04
    assert compose(["env=halfcheetah", "algo.max_kl=0.02"]).algo.max_kl == 0.02
    # the step rule and line search read δ from the one key
    cfg = compose(["algo.max_kl=0.03"])
    assert instantiate(cfg.algo.step_rule).max_kl == 0.03 and instantiate(cfg.algo.line_search).max_kl == 0.03
    names = {"hopper", "walker2d", "halfcheetah", "ant", "swimmer", "humanoid", "inverted_pendulum",
             "inverted_double_pendulum", "reacher", "cartpole", "acrobot", "pendulum"}
    assert names <= set(_options("env"))
    import gymnasium as gym

    for name in names:
        assert compose([f"env={name}"]).env.id in gym.registry
