"""The sweep summary (trpo_lab.sweep) on hand-written job folders: statuses, mismatches, error.txt for a
job that raised, and the exit status of a sweep with a job that is not ok."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf
from helpers import config_for, return_rows, run_cli, write_run

from trpo_lab.sweep import SweepSummary, write_sweep_summary


def _hydra_config(sweep, job_dir=None):
    return OmegaConf.create({"hydra": {"mode": RunMode.MULTIRUN, "sweep": {"dir": str(sweep)},
                                       "runtime": {"output_dir": str(job_dir or sweep)}}})


def test_sweep_summary_lists_each_jobs_status_return_and_error(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", ["algo=npg", "seed=0"], return_rows([1.0, 7.5]), summary={"env_steps": 2000, "final_return": 7.5})
    traceback = 'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\nValueError: bad env\n'
    write_run(sweep / "1", ["algo=trpo", "seed=0"], [], finished=False, error=traceback)
    write_run(sweep / "2", ["algo=trpo", "seed=1"], return_rows([3.0, 4.0, None]), seed=1, finished=False)
    summary = write_sweep_summary(sweep)
    on_disk = json.loads((sweep / "sweep_summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary))
    assert [summary[k] for k in ("jobs_total", "ok", "failed", "mismatch", "incomplete")] == [3, 1, 1, 0, 1]
    jobs = {j["job"]: j for j in summary["jobs"]}
    assert jobs["0"] == {"job": "0", "overrides": ["algo=npg", "seed=0"], "status": "ok", "env_steps": 2000,
                         "final_return": 7.5, "error": None, "mismatch": []}
    assert jobs["1"]["status"] == "failed" and jobs["1"]["error"] == "ValueError: bad env"
    assert jobs["2"]["status"] == "incomplete" and jobs["2"]["final_return"] == 4.0 and jobs["2"]["env_steps"] == 3000
    md = (sweep / "sweep_summary.md").read_text()
    assert "3 jobs — 1 ok, 1 failed, 0 mismatch, 1 incomplete" in md and "ValueError: bad env" in md


def test_sweep_summary_flags_a_job_whose_overrides_do_not_match_its_data(tmp_path):
    # a re-launched sweep relabelled job 2 `algo=npg seed=2` (.hydra/), but the folder holds a finished trpo seed 0
    sweep = tmp_path / "sweep"
    asked = config_for(["algo=npg"], seed=2, env_id="Hopper-v5", max_kl=0.01, total_env_steps=2048)
    held = config_for(["algo=trpo"], seed=0, env_id="Hopper-v5", max_kl=0.01, total_env_steps=2048)
    write_run(sweep / "2", ["algo=npg", "seed=2"], return_rows([1.0]), config=held, requested=asked)
    write_run(sweep / "3", ["algo=npg", "seed=0"], return_rows([1.0]))
    summary = write_sweep_summary(sweep)
    assert [summary[k] for k in ("ok", "failed", "mismatch", "incomplete")] == [1, 0, 1, 0]
    job = summary["jobs"][0]
    assert job["status"] == "mismatch"
    assert job["mismatch"] == ["algo.preset (saved 'trpo', requested 'npg')", "seed (saved 0, requested 2)"]
    md = (sweep / "sweep_summary.md").read_text()
    assert "| 2 | algo=npg seed=2 | mismatch |" in md and "seed (saved 0, requested 2)" in md


def test_a_job_whose_run_was_extended_to_a_larger_budget_is_not_a_mismatch(tmp_path):
    # the data was trained to 1M env steps and the launch asked for 2048 (or the reverse): the same run, as
    # for resume; the skip limit and output settings may change too, but a seed or a max_kl may not
    sweep = tmp_path / "sweep"
    held = config_for(["algo=trpo"], seed=0, env_id="Hopper-v5", max_kl=0.01, total_env_steps=1_000_000)
    held["max_consecutive_skips"], held["checkpoint_every"] = 5, 10
    asked = config_for(["algo=trpo"], seed=0, env_id="Hopper-v5", max_kl=0.01, total_env_steps=2048)
    asked["max_consecutive_skips"], asked["checkpoint_every"] = 9, 0
    write_run(sweep / "0", ["algo=trpo", "seed=0"], return_rows([1.0]), config=held, requested=asked)
    other = {**asked, "seed": 3, "algo": {**asked["algo"], "max_kl": 0.02}}
    write_run(sweep / "1", ["algo=trpo", "seed=3"], return_rows([1.0]), config=held, requested=other)
    jobs = write_sweep_summary(sweep)["jobs"]
    assert [(j["status"], j["mismatch"]) for j in jobs] == [
        ("ok", []), ("mismatch", ["algo.max_kl (saved 0.01, requested 0.02)", "seed (saved 0, requested 3)"])]


def test_summary_callback_records_a_job_that_raised(tmp_path):
    # If an exception escapes the task function, Hydra hands it to on_job_end: its traceback goes into error.txt.
    job_dir = tmp_path / "sweep" / "0"
    (job_dir / ".hydra").mkdir(parents=True)
    (job_dir / ".hydra" / "overrides.yaml").write_text("- seed=0\n")
    try:
        raise RuntimeError("boom in job 0")
    except RuntimeError as e:
        ret = JobReturn(status=JobStatus.FAILED, _return_value=e)
    SweepSummary().on_job_end(_hydra_config(tmp_path / "sweep", job_dir), ret)
    text = (job_dir / "error.txt").read_text()
    assert text.startswith("Traceback") and text.strip().endswith("RuntimeError: boom in job 0")
    summary = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    assert summary["failed"] == 1 and summary["jobs"][0]["error"] == "RuntimeError: boom in job 0"


def test_a_sweep_with_a_job_that_is_not_ok_exits_1_after_writing_its_summary(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    write_run(sweep / "0", ["seed=0"], return_rows([1.0]))
    SweepSummary().on_multirun_end(_hydra_config(sweep))  # every job ok: returns
    assert json.loads((sweep / "sweep_summary.json").read_text())["ok"] == 1
    write_run(sweep / "1", ["seed=1"], [], seed=1, finished=False, error="ValueError: bad\n")
    with pytest.raises(SystemExit) as exit_info:
        SweepSummary().on_multirun_end(_hydra_config(sweep))
    assert exit_info.value.code == 1
    assert json.loads((sweep / "sweep_summary.json").read_text())["failed"] == 1
    assert "error: 1 of 2 jobs are not ok" in capsys.readouterr().err


@pytest.mark.slow
def test_the_summary_cli_rewrites_the_summary(tmp_path):
    write_run(tmp_path / "sweep" / "0", ["seed=0"], return_rows([1.0, 7.5]), summary={"env_steps": 2000, "final_return": 7.5})
    res = run_cli(str(tmp_path / "sweep"), module="trpo_lab.sweep")
    assert res.returncode == 0 and "1 jobs — 1 ok, 0 failed, 0 mismatch, 0 incomplete" in res.stdout
    assert json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())["jobs"][0]["final_return"] == 7.5
    res = run_cli(str(tmp_path / "none"), module="trpo_lab.sweep")
    assert res.returncode == 1 and res.stderr.strip() == f"error: no run folders under {tmp_path / 'none'}"


@pytest.mark.slow
def test_the_sweep_callback_imports_neither_matplotlib_nor_scipy():
    # every training job imports trpo_lab.sweep (the Hydra callback): it must stay light
    code = "import sys, trpo_lab.sweep; print(sorted(m for m in ('matplotlib', 'scipy') if m in sys.modules))"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.strip() == "[]"
