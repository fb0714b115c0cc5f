"""What the training command says: where the run is, where it resumed, its progress in train.log,
one quiet W&B line, and a `done` line with the final deterministic evaluation."""
import json
import re

import pytest
from hydra.core.hydra_config import HydraConfig

from trpo_lab.launch import run_metadata

from helpers import SMOKE, run_cli


def _train(*args, cwd):
    # without conftest's WANDB_SILENT / WANDB_MODE: what a user's shell has
    return run_cli(*args, cwd=cwd, env={"WANDB_SILENT": None, "WANDB_MODE": None})


@pytest.mark.slow
def test_the_run_says_where_it_is_what_it_did_and_how_it_ended(tmp_path):
    args = [*SMOKE, "logger.wandb.mode=offline", "logger.console=off"]
    out = _train(*args, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    text = out.stdout + out.stderr
    (run_dir,) = list((tmp_path / "outputs").glob("*/*"))
    assert re.findall(r"run folder: (\S+)", text) == [str(run_dir)]
    # W&B is quiet: none of its own "wandb:" lines, one line of ours with the offline folder
    assert not [ln for ln in text.splitlines() if ln.startswith("wandb:")], text
    (offline,) = list((run_dir / "wandb").glob("offline-run-*"))
    assert re.findall(r"W&B: offline run in (\S+) \(upload with: wandb sync (\S+)\)", text) == [(str(offline),) * 2]
    # train.log has a progress line per update (console_every=1 in debug=smoke), with metrics.jsonl's returns
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    log = (run_dir / "train.log").read_text()
    progress = re.findall(r"\[\s*(\d+) steps \| update\s+(\d+)\] return\s+(\S+)", log)
    assert progress == [(str(r["env_steps"]), str(r["update"]), f"{r['return/mean']:.1f}") for r in rows]
    # done: the final deterministic evaluation, as logged in the last row
    last = rows[-1]
    done = re.findall(r"done: (\d+) env steps in [\d.]+ s; deterministic evaluation (\S+) ± (\S+) over (\d+) episodes", text)
    assert done == [("2048", f"{last['eval/return_mean']:.1f}", f"{last['eval/return_std']:.1f}", "5")]
    assert "done: " in log
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_eval"]["return_mean"] == last["eval/return_mean"]

    again = _train(*args, "total_env_steps=3072", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming at update 4, env step 2048 of 3072" in again.stdout + again.stderr


@pytest.mark.parametrize("overrides, job_type", [
    (["algo=trpo"], "kl_scaled-backtracking"),
    (["algo=trpo_no_ls"], "kl_scaled-none"),
    (["algo=npg"], "fixed-none"),
    (["algo/line_search=backtracking", "algo/step_rule=fixed"], "fixed-backtracking"),
    (["experiment=paper_curves", "experiment/paper_variant=npg_a0.1"], "fixed-none"),
])
def test_wandb_job_type_names_the_step_rule_and_line_search_cell(compose, overrides, job_type):
    cfg = compose(overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        meta = run_metadata()
    finally:
        HydraConfig.instance().cfg = None
    assert meta["job_type"] == job_type
    # the cell agrees with the classes the config instantiates
    targets = {"kl_scaled": "KLScaledStep", "fixed": "FixedStep", "backtracking": "BacktrackingLineSearch",
               "none": "NoLineSearch"}
    step, ls = job_type.split("-")
    assert cfg.algo.step_rule._target_.endswith(targets[step]) and cfg.algo.line_search._target_.endswith(targets[ls])
