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
    assert compose(["env=halfcheetah", "algo.max_kl=0.02"]).algo.max_kl == 0.02
    assert compose(["env=walker2d"]).algo.max_kl == 0.01
    # the step rule and line search read δ from the one key
    cfg = compose(["algo.max_kl=0.03"])
    assert instantiate(cfg.algo.step_rule).max_kl == 0.03 and instantiate(cfg.algo.line_search).max_kl == 0.03
    names = {"hopper", "walker2d", "halfcheetah", "ant", "swimmer", "humanoid", "inverted_pendulum",
             "inverted_double_pendulum", "reacher", "cartpole", "acrobot", "pendulum"}
    assert names <= set(_options("env"))
    import gymnasium as gym

    for name in names:
        assert compose([f"env={name}"]).env.id in gym.registry


@pytest.mark.parametrize("algo", ["trpo", "npg"])
def test_halfcheetah_preset_is_sb3_contribs_rl_zoo_setting_in_the_labs_units(compose, algo):
    """conf/env/halfcheetah.yaml claims sb3-contrib's RL-Zoo HalfCheetah setting (conf/peer/sb3_contrib.yaml)
    converted to the lab's units: sb3 averages the Gaussian KL over the d action dims, so its (target_kl,
    cg_damping) is our (d·δ, d·λ); its rollout, CG and critic sizes carry over as they are. d comes from
    gymnasium's action space, the sb3 numbers from the peer's own config, and the preset reaches every variant."""
    import gymnasium as gym

    cfg = compose(["env=halfcheetah", f"algo={algo}"])
    sb3 = compose(["env=halfcheetah", "peer=sb3_contrib"]).peer
    d = gym.make(cfg.env.id).action_space.shape[0]
    assert d == 6
    assert cfg.algo.max_kl == pytest.approx(d * sb3.target_kl) == pytest.approx(0.24)
    assert cfg.algo.solver.damping == pytest.approx(d * sb3.cg_damping)
    assert cfg.algo.solver.iters == sb3.cg_max_steps
    assert (cfg.rollout.num_envs, cfg.rollout.batch_size) == (sb3.n_envs, sb3.n_envs * sb3.n_steps)
    assert (cfg.critic.epochs, cfg.critic.minibatch_size, cfg.critic.lr) == (sb3.n_critic_updates, sb3.batch_size, sb3.learning_rate)
    assert (cfg.rollout.gamma, cfg.rollout.gae_lambda) == (sb3.gamma, sb3.gae_lambda)
    # the other tasks keep the lab's generic defaults
    hopper = compose(["env=hopper", f"algo={algo}"])
    assert (hopper.algo.solver.damping, hopper.rollout.num_envs, hopper.critic.epochs) == (0.1, 4, 10)
