"""Experiment presets (conf/experiment/), launchers and failure containment in a multirun.

Every preset composes with its sweep grid, every point of every grid composes into a valid config,
and one job of every preset trains at smoke scale (``debug=smoke``). Two real multiruns run as
subprocesses: joblib with reused workers (each job must match the same config run alone), and
submitit_local with one job that fails (the other's results and a sweep summary must survive).
"""
from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import CONF_DIR, SMOKE, metrics_rows, run_cli
from hydra.errors import ConfigCompositionException

from trpo_lab.config import validate
from trpo_lab.envs import check_env_id
from trpo_lab.natural.fisher import AnalyticFisher, EmpiricalFisher
from trpo_lab.natural.line_search import BacktrackingLineSearch, NoLineSearch
from trpo_lab.natural.step_rules import FixedStep, KLScaledStep
from trpo_lab.train import build_update, run

ROOT = Path(CONF_DIR).parent
PRESETS = sorted(p.stem for p in (Path(CONF_DIR) / "experiment").glob("*.yaml"))

#: the grid of each preset, as issue #4 asks for it (seeds aside)
EXPECTED_GRIDS = {
    "variants": {"algo": ["npg", "trpo_no_ls", "trpo"]},
    "step_rule_x_line_search": {"algo/step_rule": ["fixed", "kl_scaled"], "algo/line_search": ["none", "backtracking"]},
    "delta_sweep": {"algo.max_kl": ["0.01", "0.03", "0.1", "0.3"], "algo/line_search": ["none", "backtracking"],
                    "algo.step_rule.curvature": ["damped", "undamped"]},
    "gae_lambda": {"rollout.gae_lambda": ["0", "0.5", "0.9", "0.95", "0.97", "0.99", "1"]},
    "paper_curves": {
        "env": ["hopper", "walker2d"],
        "experiment/paper_variant": ["trpo", "trpo_no_ls", "trpo_empirical_fisher", "trpo_max_kl",
                                     "npg_a0.1", "npg_a0.3", "npg_a1", "npg_a3"],
    },
    "mujoco_1m": {"env": ["hopper", "walker2d", "halfcheetah"], "algo": ["trpo_no_ls", "trpo"]},
    "peer_v5": {"env": ["hopper", "walker2d", "halfcheetah"]},
    "step_statistics": {"experiment/step_variant": ["npg_a0.1", "npg_a0.7", "trpo_no_ls", "trpo", "trpo_undamped"]},
    "trpo_paper": {"experiment/paper_task": ["cartpole_single_path", "cartpole_vine"],
                   "experiment/paper_variant": ["trpo", "trpo_empirical_fisher", "trpo_max_kl",
                                                "npg_a0.1", "npg_a0.3", "npg_a1", "npg_a3"]},
}


def sweep_params(compose, preset: str) -> dict[str, list[str]]:
    """``hydra.sweeper.params`` of a preset, each value list split at its commas."""
    hc = compose([f"experiment={preset}"], return_hydra_config=True).hydra
    return {k: [v.strip() for v in str(vals).split(",")] for k, vals in hc.sweeper.params.items()}


def test_every_preset_is_tested():
    assert PRESETS == sorted(EXPECTED_GRIDS)


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_with_its_sweep_grid(compose, preset):
    cfg = compose([f"experiment={preset}"], return_hydra_config=True)
    assert cfg.hydra.runtime.choices.experiment == preset  # train.run_metadata's W&B group
    params = sweep_params(compose, preset)
    seeds = params.pop("seed")
    assert len(seeds) >= 3 and len(set(seeds)) == len(seeds) and all(s.isdigit() for s in seeds)
    assert params == EXPECTED_GRIDS[preset]


def test_the_documented_form_is_experiment_equals_name(compose):
    # conf/train.yaml's defaults list holds `experiment: null`, so the preset is chosen with `experiment=NAME`;
    # `+experiment=NAME` would append a second entry for the same group, which Hydra refuses.
    assert compose(["experiment=variants"]).env.id == "Hopper-v5"
    with pytest.raises(ConfigCompositionException, match="Multiple values for experiment"):
        compose(["+experiment=variants"])


def _grid_points(params: dict[str, list[str]]) -> list[list[str]]:
    keys = [k for k in params if k != "seed"]
    return [[f"{k}={v}" for k, v in zip(keys, combo)] for combo in itertools.product(*(params[k] for k in keys))]


@pytest.mark.parametrize("preset", PRESETS)
def test_every_grid_point_is_a_valid_config(compose, preset):
    for point in _grid_points(sweep_params(compose, preset)):
        cfg = compose([f"experiment={preset}", *point, "seed=0"])
        validate(cfg)
        check_env_id(cfg.env.id)
        build_update(cfg.algo)


def test_grid_points_set_what_their_names_say(compose):
    def update(*overrides):
        return build_update(compose(list(overrides)).algo)

    for rule, ls in itertools.product(["fixed", "kl_scaled"], ["none", "backtracking"]):
        u = update("experiment=step_rule_x_line_search", f"algo/step_rule={rule}", f"algo/line_search={ls}")
        assert type(u.step_rule) is {"fixed": FixedStep, "kl_scaled": KLScaledStep}[rule]
        assert type(u.line_search) is {"none": NoLineSearch, "backtracking": BacktrackingLineSearch}[ls]
    for kl in (0.01, 0.3):
        cfg = compose(["experiment=delta_sweep", f"algo.max_kl={kl}", "algo/line_search=backtracking"])
        assert cfg.algo.max_kl == kl and cfg.algo.step_rule.max_kl == kl and cfg.algo.line_search.max_kl == kl
    for curvature in ("damped", "undamped"):
        u = update("experiment=delta_sweep", f"algo.step_rule.curvature={curvature}")
        assert isinstance(u.step_rule, KLScaledStep) and u.step_rule.curvature == curvature
    for preset in ("paper_curves", "delta_sweep", "mujoco_1m"):  # the protocol: one deterministic evaluation, after the last update
        cfg = compose([f"experiment={preset}"])
        assert cfg.eval.every * cfg.rollout.batch_size > cfg.total_env_steps and cfg.eval.episodes == 10
    assert compose(["experiment=gae_lambda", "rollout.gae_lambda=0"]).rollout.gae_lambda == 0
    paper = "experiment=paper_curves"
    for alpha in ("0.01", "0.03", "0.1", "0.3", "1", "3", "9", "27"):
        u = update(paper, f"experiment/paper_variant=npg_a{alpha}")
        assert isinstance(u.step_rule, FixedStep) and u.step_rule.step_size == float(alpha)
        assert isinstance(u.line_search, NoLineSearch)
    u = update(paper, "experiment/paper_variant=trpo_no_ls")
    assert isinstance(u.step_rule, KLScaledStep) and isinstance(u.line_search, NoLineSearch)
    u = update(paper, "experiment/paper_variant=trpo_empirical_fisher")
    assert isinstance(u.fisher, EmpiricalFisher) and isinstance(u.line_search, BacktrackingLineSearch)
    u = update(paper, "experiment/paper_variant=trpo_max_kl")
    assert isinstance(u.fisher, AnalyticFisher) and u.constraint == "max" and u.line_search.constraint == "max"
    u = update(paper)  # the default variant
    assert isinstance(u.line_search, BacktrackingLineSearch) and u.constraint == "mean"
    assert compose([paper, "env=swimmer"]).env.id == "Swimmer-v5"
    # the TRPO paper's regime: Table 2's sizes per task, single path with Monte Carlo Q, the paper's networks
    for task in sorted(p.stem for p in (Path(CONF_DIR) / "experiment" / "paper_task").glob("*.yaml")):
        cfg = compose(["experiment=trpo_paper", f"experiment/paper_task={task}"])
        validate(cfg)
        vine = "_vine" in task
        assert cfg.sampling._target_.endswith("VineCollector" if vine else "RolloutCollector")
        assert cfg.algo.max_kl == 0.01 and cfg.rollout.gamma == 0.99
        if not vine:
            assert cfg.rollout.gae_lambda == 1.0
    table2 = {"swimmer": (50_000, [30], 500, 50), "hopper": (1_000_000, [50], 2500, 100),
              "walker2d": (1_000_000, [50], 2500, 100)}  # steps/iteration, hidden units, Q-values, branch length
    for task, (batch, hidden, q_values, branch) in table2.items():
        sp = compose(["experiment=trpo_paper", f"experiment/paper_task={task}_single_path"])
        vi = compose(["experiment=trpo_paper", f"experiment/paper_task={task}_vine"])
        assert sp.rollout.batch_size == batch and list(sp.policy.hidden_sizes) == hidden == list(vi.policy.hidden_sizes)
        assert sp.policy.activation == vi.policy.activation == "softplus"
        assert vi.rollout.batch_size == 16 * 1000 and vi.sampling.actions_per_state == 4
        assert vi.sampling.states * vi.sampling.actions_per_state == q_values
        assert vi.sampling.branch_length == branch and sp.total_env_steps == vi.total_env_steps == 200 * batch
    cart = compose(["experiment=trpo_paper"])
    assert cart.env.id == "InvertedPendulum-v5" and list(cart.policy.hidden_sizes) == []


def _flat(cfg, prefix: str = "") -> dict[str, object]:
    from omegaconf import OmegaConf
    out: dict[str, object] = {}
    for k, v in (OmegaConf.to_container(cfg, resolve=True) if prefix == "" else cfg).items():
        key = f"{prefix}{k}"
        out.update(_flat(v, f"{key}.") if isinstance(v, dict) else {key: v})
    return out


def test_scaled_paper_tasks_differ_from_table_2_only_in_the_stated_sizes(compose):
    """The locomotion study's ``*_scaled_*`` presets: 2M steps per run, Hopper/Walker2d at 50K steps per iteration
    for every sampler (vine: 16K trunk + 85 states × 4 × 100-step branches; vine_small_trunk: Table 2's 6 % trunk
    share, 3K trunk + 117 states; its _bootstrap adds γ^{T_b} V to an unfinished branch); everything else is
    Table 2's."""
    small_trunk = {"rollout.num_envs": 3, "rollout.batch_size": 3_000, "sampling.states": 117}
    scaled = {"swimmer_scaled_single_path": {}, "swimmer_scaled_vine": {},
              "hopper_scaled_single_path": {"rollout.batch_size": 50_000},
              "hopper_scaled_vine": {"sampling.states": 85}, "hopper_scaled_vine_small_trunk": small_trunk,
              "hopper_scaled_vine_small_trunk_bootstrap": {**small_trunk, "sampling.bootstrap": True},
              "walker2d_scaled_single_path": {"rollout.batch_size": 50_000},
              "walker2d_scaled_vine": {"sampling.states": 85}, "walker2d_scaled_vine_small_trunk": small_trunk}
    found = sorted(p.stem for p in (Path(CONF_DIR) / "experiment" / "paper_task").glob("*_scaled_*.yaml"))
    assert found == sorted(scaled)
    for task, changed in scaled.items():
        table_2 = task.replace("_scaled", "").split("_small_trunk")[0]
        base = _flat(compose(["experiment=trpo_paper", f"experiment/paper_task={table_2}"]))
        cfg = _flat(compose(["experiment=trpo_paper", f"experiment/paper_task={task}"]))
        diff = {k: cfg[k] for k in cfg if cfg[k] != base.get(k)}
        assert diff == {**changed, "total_env_steps": 2_000_000}, task
        if "_vine" in task:  # at most as many steps per iteration as single path: trunk + N·K·T_b
            sp = compose(["experiment=trpo_paper", f"experiment/paper_task={task.split('_vine')[0]}_single_path"])
            per_iteration = cfg["rollout.batch_size"] + cfg["sampling.states"] * 4 * cfg["sampling.branch_length"]
            assert per_iteration <= sp.rollout.batch_size


@pytest.mark.parametrize("preset", PRESETS)
def test_one_job_of_each_preset_trains_at_smoke_scale(compose, tmp_path, preset):
    first_point = [f"{k}={v[0]}" for k, v in sweep_params(compose, preset).items()]
    cfg = compose([f"experiment={preset}", *first_point, "debug=smoke"])
    assert cfg.total_env_steps == 2048 and cfg.logger.wandb.mode == "disabled"  # debug=smoke wins over the preset
    summary = run(cfg, tmp_path)
    assert summary["env_steps"] == 2048
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    peer = cfg.get("peer")  # a peer collects its own rollouts: sb3-contrib's 2 envs × 1024 steps
    per_update = peer.n_envs * peer.n_steps if peer else 512
    assert [r["env_steps"] for r in rows] == list(range(per_update, 2049, per_update))


# -- real multiruns -------------------------------------------------------------------------------------


def _multirun(sweep_dir: Path, *overrides: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {"WANDB_MODE": "disabled", "HYDRA_FULL_ERROR": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), *filter(None, [os.environ.get("PYTHONPATH")])])
    return run_cli("-m", *overrides, f"hydra.sweep.dir={sweep_dir}", cwd=ROOT, env=env)


def _jobs(sweep: Path, key: str) -> dict[str, Path]:
    """``{value of the override of key: job folder}`` for the job folders of a sweep."""
    jobs = {}
    for d in sweep.iterdir():
        if (d / ".hydra" / "overrides.yaml").exists():
            overrides = dict(o.split("=", 1) for o in yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text()))
            jobs[overrides[key]] = d
    return jobs


@pytest.mark.slow
def test_joblib_multirun_of_a_preset_reuses_workers_without_leaking_state(compose, tmp_path):
    # 3 jobs on 2 joblib workers: one worker runs two jobs back to back. Each job must log exactly what the
    # same config logs when run alone in this process (no torch seed, threads, env or W&B state carried over).
    sweep = tmp_path / "sweep"
    overrides = ["experiment=variants", *SMOKE, "algo=npg,trpo_no_ls,trpo", "seed=3",
                 "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    res = _multirun(sweep, *overrides)
    assert res.returncode == 0, res.stderr[-3000:]
    jobs = _jobs(sweep, "algo")
    assert sorted(jobs) == ["npg", "trpo", "trpo_no_ls"]
    # the workers' progress lines interleave on one console: each names its job (Hydra's job number), and
    # each job's train.log holds exactly the lines of that job
    labelled = re.findall(r"^\[job (\d+) \|\s+\d+ steps \| update", res.stdout, re.M)
    assert sorted(set(labelled)) == ["0", "1", "2"], res.stdout[-2000:]
    for job in jobs.values():
        assert set(re.findall(r"\[job (\d+) \|", (job / "train.log").read_text())) == {job.name}
    for algo, job in jobs.items():
        summary = json.loads((job / "summary.json").read_text())
        assert summary["meta"]["group"] == "variants"  # the W&B group is the experiment's name
        alone = tmp_path / f"alone_{algo}"
        run(compose(["experiment=variants", *SMOKE, f"algo={algo}", "seed=3"]), alone)
        assert metrics_rows(job, timing=False) == metrics_rows(alone, timing=False), algo
    sweep_summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert (sweep_summary["ok"], sweep_summary["failed"], sweep_summary["incomplete"]) == (3, 0, 0)


#: a valid sweep whose job with ``+env.kwargs.g=nan`` fails while training (every input check passes)
FAILS_AT_RUNTIME = ["env=pendulum", "debug=smoke", "max_consecutive_skips=1"]
RUNTIME_ERROR = "1 consecutive updates were skipped (last reason: non-finite advantages)"


@pytest.mark.slow
def test_a_failing_job_does_not_lose_the_others_is_summarised_and_fails_the_sweep(tmp_path):
    # submitit_local (every job is its own process, started at once); the second job fails while training:
    # gravity NaN makes every observation non-finite, so its first update is skipped and, with
    # max_consecutive_skips=1, the run stops (bad *input* would be refused before any job starts: test_bad_inputs).
    # Contract with trpo_lab/train.py: in MULTIRUN a job's exception goes into its error.txt (with the
    # traceback) and the job returns; at the end the sweep summary lists it and the sweep exits 1.
    sweep = tmp_path / "sweep"
    res = _multirun(sweep, *FAILS_AT_RUNTIME, "+env.kwargs.g=10.0,nan", "hydra/launcher=submitit_local")
    assert res.returncode == 1, res.stderr[-3000:]
    assert "error: 1 of 2 jobs are not ok" in res.stderr
    jobs = _jobs(sweep, "+env.kwargs.g")
    good, bad = jobs["10.0"], jobs["nan"]
    good_summary = json.loads((good / "summary.json").read_text())
    assert good_summary["env_steps"] == 2048 and not (good / "error.txt").exists()
    error = (bad / "error.txt").read_text()
    assert "Traceback" in error and RUNTIME_ERROR in error and not (bad / "summary.json").exists()
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert (summary["jobs_total"], summary["ok"], summary["failed"], summary["incomplete"]) == (2, 1, 1, 0)
    by_status = {j["status"]: j for j in summary["jobs"]}
    assert by_status["ok"]["final_return"] == good_summary["final_return"]
    assert sorted(by_status["ok"]["overrides"]) == sorted(["env.kwargs.g=10.0", *FAILS_AT_RUNTIME])
    assert RUNTIME_ERROR in by_status["failed"]["error"] and by_status["failed"]["final_return"] is None
    assert RUNTIME_ERROR in (sweep / "sweep_summary.md").read_text()


def test_slurm_launcher_config_extends_submitit_slurm(compose):
    launcher = compose(["hydra/launcher=slurm", "hydra.launcher.partition=cpu"], return_hydra_config=True).hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.partition, launcher.cpus_per_task, launcher.timeout_min) == ("cpu", 1, 60)
    assert launcher.array_parallelism >= 1



@pytest.mark.slow
def test_a_failed_batch_does_not_cancel_the_next_and_the_sweep_exits_1(tmp_path):
    # The basic launcher, one job per batch. Hydra's sweeper re-raises a failed job's exception after its batch,
    # which would cancel every later batch; a job therefore records its own failure and the sweep fails at the end.
    sweep = tmp_path / "sweep"
    res = _multirun(sweep, *FAILS_AT_RUNTIME, "+env.kwargs.g=nan,10.0", "hydra.sweeper.max_batch_size=1")
    assert res.returncode == 1, res.stderr[-3000:]
    jobs = _jobs(sweep, "+env.kwargs.g")
    assert json.loads((jobs["10.0"] / "summary.json").read_text())["env_steps"] == 2048
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [summary[k] for k in ("jobs_total", "ok", "failed", "mismatch", "incomplete")] == [2, 1, 1, 0, 0]
    assert "error: 1 of 2 jobs are not ok" in res.stderr


RAISING_LAUNCHER = """
from pathlib import Path

import yaml
from hydra._internal.core_plugins.basic_launcher import BasicLauncher


class RaisingLauncher(BasicLauncher):
    # runs the first job, then loses the second after it started (as Slurm does with a cancelled job)

    def launch(self, job_overrides, initial_job_idx):
        super().launch(job_overrides[:1], initial_job_idx)
        started = Path(self.config.hydra.sweep.dir) / str(initial_job_idx + 1) / ".hydra"
        started.mkdir(parents=True)
        (started / "overrides.yaml").write_text(yaml.safe_dump(list(job_overrides[1])))
        raise RuntimeError("job 1 was cancelled")
"""


@pytest.mark.slow
def test_the_summary_is_written_when_the_launcher_raises(tmp_path):
    plugin = tmp_path / "plugins" / "hydra_plugins" / "raising_launcher"
    plugin.mkdir(parents=True)
    (plugin / "__init__.py").write_text(RAISING_LAUNCHER)
    sweep = tmp_path / "sweep"
    res = _multirun(sweep, *SMOKE, "seed=0,1",
                    "hydra.launcher._target_=hydra_plugins.raising_launcher.RaisingLauncher",
                    pythonpath=tmp_path / "plugins")
    assert res.returncode != 0 and "job 1 was cancelled" in res.stderr, res.stderr[-3000:]
    summary = json.loads((sweep / "sweep_summary.json").read_text())
    assert [summary[k] for k in ("jobs_total", "ok", "failed", "mismatch", "incomplete")] == [2, 1, 0, 0, 1]
    assert "sweep stopped early" in res.stderr
