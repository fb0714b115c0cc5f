"""Slurm through Hydra's submitit launcher (conf/hydra/launcher/slurm.yaml), on a real single-node cluster
started by .ci/start-slurm-cluster.sh: a 2-job multirun, a requeue, a preemption and a time limit. The last
three must resume from the checkpoint written at the signal (SIGTERM, or submitit's SIGUSR2): every update
runs exactly once over all attempts, and the run equals the same config run here without interruption, row
for row (all but time/perf) and in its final evaluation. Plus, without a cluster: the SIGUSR2 hand-over to submitit's handler.

The runs use ``checkpoint_every=0`` (a checkpoint only at the end and at a signal), so a resumed attempt that
starts past update 0 can only have started from a checkpoint written at the signal.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
from omegaconf import OmegaConf

from trpo_lab.run_folder import CHECKPOINT, load_checkpoint
from trpo_lab.train import build_trainer

from helpers import FAST, QUIET, assert_same_run, start_cli

REPO = Path(__file__).resolve().parents[1]
START_CLUSTER = REPO / ".ci" / "start-slurm-cluster.sh"
BATCH = 512
RUN = [*FAST, "checkpoint_every=0"]  # FAST's batches are BATCH steps
#: one console line per update: "[job 0 |      1024 steps | update     2] return ..." (the job label in a multirun)
UPDATE_LINE = re.compile(r"^\[(?:job \d+ \| )?\s*(\d+) steps \| update\s+(\d+)\]", re.M)
SIGNAL_CHECKPOINT = re.compile(r"(SIG\w+): checkpoint written at update (\d+) \((\d+) env steps\)")


# -- the cluster and the launcher ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def slurm() -> None:
    """Starts the cluster (returns at once when it is up); skips with the reason when it cannot start.
    On CI (``CI`` set) a cluster that cannot start is a failure, not a skip."""
    give_up = pytest.fail if os.environ.get("CI") else pytest.skip
    if os.geteuid() != 0:
        give_up("the Slurm tests start a single-node cluster, which needs root")
    if not Path("/usr/sbin/slurmctld").exists() and shutil.which("slurmctld") is None:
        give_up("Slurm is not installed (apt-get install --no-install-recommends slurmctld slurmd slurm-client "
                "munge slurmdbd mariadb-server)")
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher is not installed")
    out = subprocess.run(["bash", str(START_CLUSTER)], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        give_up(f"the Slurm cluster did not start: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    print(out.stdout.strip())


def _launch(sweep: Path, *overrides: str) -> subprocess.Popen:
    """``python -m trpo_lab.train -m hydra/launcher=slurm ...``: blocks until every job of the sweep is done."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    sweep.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "trpo_lab.train", "-m", "hydra/launcher=slurm", f"hydra.sweep.dir={sweep}",
         "hydra.launcher.mem_gb=1", *RUN, *overrides],
        cwd=sweep.parent, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _finish(proc: subprocess.Popen, timeout: float) -> str:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"the sweep did not finish within {timeout} s:\n{out[-3000:]}") from None
    assert proc.returncode == 0, out[-3000:]
    return out


def _job_id(sweep: Path, timeout: float = 60) -> str:
    """The Slurm id of job 0 of the sweep, from submitit's folder: ``<array id>_0``, or a plain id when the
    sweep has a single job (an array of one is submitted as a plain job)."""
    end = time.time() + timeout
    while time.time() < end:
        found = [p.name for p in (sweep / ".submitit").glob("*") if p.is_dir() and re.fullmatch(r"\d+(_0)?", p.name)]
        if found:
            return found[0]
        time.sleep(0.2)
    raise AssertionError(f"no submitit job folder appeared in {sweep / '.submitit'}")


def _rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _wait_for_rows(proc: subprocess.Popen, run_dir: Path, n: int, timeout: float = 180) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if len(_rows(run_dir)) >= n:
            return
        assert proc.poll() is None, f"the sweep ended early:\n{proc.stdout.read()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"{run_dir} did not reach {n} updates within {timeout} s")


def _job_log(sweep: Path, job: str) -> str:
    """submitit's stdout log of the job; every attempt appends to it (the cluster sets JobFileAppend=1)."""
    return "".join(p.read_text() for p in sorted((sweep / ".submitit" / job).glob("*_log.out")))


def _sacct(job: str, fields: str = "JobID,State", attempts: bool = True) -> str:
    """Slurm's accounting of ``job``, "; "-separated: one entry per attempt, or only the latest."""
    cmd = ["sacct", "-j", job, *(["--duplicates"] if attempts else []), "-X", "-n", "-P", "-o", fields]
    return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().replace("\n", "; ")


def _settled(job: str, tasks: int = 0, timeout: float = 60) -> str:
    """sacct's JobID|State of each attempt of ``job`` once the latest has ended (the launcher returns as soon
    as the results are written, a moment before Slurm records the end). For an array of ``tasks`` tasks, also
    once each task has its own ``<job>_<i>`` row: slurmdbd can for a moment hold only the array's first record,
    as a plain ``<job>``, before the split reaches it (CI printed ``44|COMPLETED`` once; minutes later sacct had both tasks)."""
    def unsettled() -> bool:
        latest = _sacct(job, attempts=False)
        split = len(re.findall(rf"(?:^|; ){job}_\d+\|", latest))
        return bool(re.search(r"PENDING|RUNNING|REQUEUED|COMPLETING", latest)) or split < tasks

    end = time.time() + timeout
    while unsettled() and time.time() < end:
        time.sleep(0.5)
    return _sacct(job)


def _signal_checkpoints(run_dir: Path) -> list[tuple[str, int, int]]:
    """(signal, update, env steps) of each checkpoint the trainer wrote at a signal, from the run's train.log
    (Hydra's job log, which every attempt appends to)."""
    path = run_dir / "train.log"
    text = path.read_text() if path.exists() else ""
    return [(name, int(u), int(s)) for name, u, s in SIGNAL_CHECKPOINT.findall(text)]


def _straight(run_dir: Path, total: int) -> Callable[[], Path]:
    """Start the same config here, straight through and never interrupted (what the interrupted job must equal),
    beside the Slurm job; the returned call waits for it and gives its run folder."""
    proc = start_cli(*RUN, *QUIET, f"total_env_steps={total}", f"hydra.run.dir={run_dir}")

    def finished() -> Path:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-2000:]
        return run_dir

    return finished


def _assert_resumed_at_signal(sweep: Path, job: str, total: int, signal_name: str,
                              straight: Callable[[], Path]) -> list[int]:
    """Every update ran exactly once over all attempts, each resume started at a signal's checkpoint, and the
    run is the uninterrupted one (``straight``): every metrics.jsonl value but time/perf, and the final evaluation.

    Returns the update counts of the checkpoints written at the signal."""
    run_dir = sweep / "0"
    rows = _rows(run_dir)
    steps = [r["env_steps"] for r in rows]
    assert steps == list(range(BATCH, total + 1, BATCH)), steps  # strictly increasing, no gaps, no duplicates
    assert [r["update"] for r in rows] == list(range(1, total // BATCH + 1))
    log_out = _job_log(sweep, job)
    # per attempt (submitit logs "Starting with JobEnvironment" at each start): the updates it printed, and
    # the checkpoint it wrote at a signal, if any (the trainer's warning also goes to stdout)
    attempts = [([int(u) for _, u in UPDATE_LINE.findall(chunk)],
                 [(name, int(u), int(s)) for name, u, s in SIGNAL_CHECKPOINT.findall(chunk)])
                for chunk in log_out.split("Starting with JobEnvironment")[1:]]
    done: list[int] = []
    provisional = False  # the last attempt that printed rows stopped at a signal: its last row was provisional
    for i, (updates, at_signal) in enumerate(attempts):
        # a row written at a signal has return/delta null (no batch followed yet); the next attempt that runs
        # prints that update again, completed, then goes on
        first = done[-1] if provisional and updates else len(done) + 1
        assert updates == list(range(first, first + len(updates))), (i, attempts)
        done = done[: first - 1] + updates
        provisional = bool(at_signal) if updates else provisional
        if i < len(attempts) - 1 and updates:  # interrupted after some updates: checkpoint at the signal, after them
            assert [(name, u, s) for name, u, s in at_signal] == [(signal_name, done[-1], done[-1] * BATCH)], (i, attempts)
        assert all(u == len(done) for _, u, _ in at_signal)  # never a checkpoint behind the last update
    # all attempts together ran each update exactly once: nothing lost, nothing redone
    assert done == list(range(1, total // BATCH + 1))
    # (an attempt signalled while it was still starting ran no update: submitit requeued it before the trainer's
    # handler was installed, and there was nothing to save)
    assert sum(1 for updates, _ in attempts if updates) >= 2, f"job {job} was not interrupted and resumed:\n{log_out[-3000:]}"
    at_signal = [c for _, cs in attempts for c in cs]
    assert at_signal == _signal_checkpoints(run_dir)  # the run's own log (train.log) says the same
    assert load_checkpoint(run_dir / CHECKPOINT)["updates"] == total // BATCH
    assert_same_run(run_dir, straight())
    updates = [u for _, u, _ in at_signal]
    print(f"\n{signal_name} job {job}: attempts ran updates "
          f"{', '.join(f'{a[0][0]}..{a[0][-1]}' if a[0] else '(none)' for a in attempts)}; checkpoints at the "
          f"signal at updates {updates}; env_steps around the first: {steps[max(0, updates[0] - 3):updates[0] + 3]} "
          f"(all {len(steps)} rows {BATCH}..{steps[-1]} step {BATCH}); sacct: {_settled(job)}")
    return [u for _, u, _ in at_signal]


# -- without a cluster -----------------------------------------------------------------------------------
@pytest.mark.slow  # signals this process (os.kill)
def test_sigusr2_checkpoints_after_the_update_in_flight_then_hands_over_to_the_previous_handler(compose, tmp_path):
    """submitit installs a USR2 handler that calls checkpoint(), requeues and exits; the trainer's own handler
    must let the update in flight finish, write the checkpoint, and only then run submitit's."""
    trainer = build_trainer(compose([*RUN, f"total_env_steps={100 * BATCH}"]), tmp_path)
    seen: dict[str, int] = {}

    def submitit_like(signum, frame):  # what submitit's handler sees on disk when it runs
        seen["signal"], seen["updates"] = signum, trainer.updates
        seen["checkpoint_updates"] = load_checkpoint(tmp_path)["updates"]
        seen["our_handler_restored"] = signal.getsignal(signal.SIGUSR2) is submitit_like
        raise SystemExit(-1)  # submitit's handler requeues, then sys.exit(-1)

    collect = trainer.collector.collect

    def collect_then_signal():  # USR2 arrives in the middle of update 3
        batch = collect()
        if trainer.updates == 2:
            os.kill(os.getpid(), signal.SIGUSR2)
        return batch

    trainer.collector.collect = collect_then_signal
    before = signal.signal(signal.SIGUSR2, submitit_like)
    try:
        with trainer, pytest.raises(SystemExit):
            trainer.run_updates()
    finally:
        signal.signal(signal.SIGUSR2, before)
    assert seen == {"signal": signal.SIGUSR2, "updates": 3, "checkpoint_updates": 3, "our_handler_restored": True}
    assert [r["env_steps"] for r in _rows(tmp_path)] == [BATCH, 2 * BATCH, 3 * BATCH]


@pytest.mark.slow
def test_task_function_is_pickled_by_reference(tmp_path):
    """``python -m trpo_lab.train`` runs the module as ``__main__``; a launcher pickles the task function, and
    cloudpickle pickles ``__main__``'s functions by value (a requeued job would run the code as submitted).
    Pickled from a real ``python -m`` process, then unpickled where ``trpo_lab.train`` holds newer code, the
    task function must be the newer one."""
    dump = tmp_path / "task.pkl"
    code = ("import sys, runpy, cloudpickle\n"
            "sys.argv = ['trpo_lab.train', 'debug=smoke']\n"
            "import hydra.main\n"
            "def capture(task_function, **kw):\n"
            f"    open({str(dump)!r}, 'wb').write(cloudpickle.dumps(task_function)); raise SystemExit(0)\n"
            "sys.modules['hydra.main']._run_hydra = capture  # what Hydra hands to the launcher\n"
            "runpy.run_module('trpo_lab.train', run_name='__main__', alter_sys=True)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and dump.exists(), out.stderr[-2000:]
    newer = tmp_path / "newer"
    (newer / "trpo_lab").mkdir(parents=True)
    # a trpo_lab whose train.py is new code; the rest of the package still comes from the checkout
    (newer / "trpo_lab" / "__init__.py").write_text(
        f"__path__.append({str(REPO / 'trpo_lab')!r})\n")
    (newer / "trpo_lab" / "train.py").write_text("def task(cfg):\n    return 'the code installed now'\n")
    load = f"import pickle; print(pickle.load(open({str(dump)!r}, 'rb'))(None))"
    out = subprocess.run([sys.executable, "-c", load], env={**env, "PYTHONPATH": str(newer)}, cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "the code installed now", out.stderr[-2000:]


# -- on the cluster --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_job_multirun_through_the_slurm_launcher(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    out = _finish(_launch(sweep, "total_env_steps=2048", "seed=0,1"), timeout=300)
    for job in ("0", "1"):
        steps = [r["env_steps"] for r in _rows(sweep / job)]
        assert steps == [512, 1024, 1536, 2048], (job, out[-2000:])
        assert json.loads((sweep / job / "summary.json").read_text())["env_steps"] == 2048
        assert OmegaConf.load(sweep / job / "config.yaml").seed == int(job)
    array = _job_id(sweep).split("_")[0]
    states = _settled(array, tasks=2).split("; ")
    assert sorted(states) == [f"{array}_0|COMPLETED", f"{array}_1|COMPLETED"], states
    assert "2 ok, 0 failed" in out, out[-2000:]


@pytest.mark.slow
def test_requeued_job_resumes_from_the_checkpoint_written_at_sigterm(slurm, tmp_path):
    sweep, total = tmp_path / "sweep", 120 * BATCH
    straight = _straight(tmp_path / "straight", total)
    proc = _launch(sweep, f"total_env_steps={total}")
    job = _job_id(sweep)
    _wait_for_rows(proc, sweep / "0", 5)
    subprocess.run(["scontrol", "requeue", job], check=True)
    _finish(proc, timeout=300)
    assert _assert_resumed_at_signal(sweep, job, total, "SIGTERM", straight)


@pytest.mark.slow
def test_preempted_job_resumes_from_the_checkpoint_written_at_sigusr2(slurm, tmp_path):
    sweep, total = tmp_path / "sweep", 120 * BATCH
    straight = _straight(tmp_path / "straight", total)
    proc = _launch(sweep, f"total_env_steps={total}", "hydra.launcher.partition=low")
    job = _job_id(sweep)
    _wait_for_rows(proc, sweep / "0", 5)
    # a job in the high-priority partition that needs the whole node: Slurm preempts the low one (USR2 first)
    high = subprocess.run(["sbatch", "--parsable", "-p", "high", "--exclusive", "-o", "/dev/null", "--wrap", "sleep 3"],
                          capture_output=True, text=True, check=True).stdout.strip()
    _finish(proc, timeout=300)
    assert _assert_resumed_at_signal(sweep, job, total, "SIGUSR2", straight)
    assert "this job is preempted" in _job_log(sweep, job)  # submitit's USR2 handler ran (after ours)
    assert _settled(high) == f"{high}|COMPLETED"


@pytest.mark.slow
def test_job_at_its_time_limit_resumes_from_the_checkpoint_written_at_sigusr2(slurm, tmp_path):
    # Limit 2 min; USR2 comes signal_delay_s (30 s) before it, or up to a minute earlier (Slurm's resolution of
    # time events), so 30-90 s after the start: never while submitit is still starting (a 1-min limit let it come
    # 2 s in, before any handler was installed, and the job died of it). The run is long enough that the first
    # attempt cannot finish before the signal: 6000 updates take about 190 s on the Intel VM with nothing else running
    # (32 updates/s; 2400 updates ended in 75 s there, before the signal) and 400 s on the AMD EPYC VM (15 updates/s);
    # once an attempt has resumed, the limit is lifted so that the test ends.
    sweep, total = tmp_path / "sweep", 6000 * BATCH
    straight = _straight(tmp_path / "straight", total)
    proc = _launch(sweep, f"total_env_steps={total}", "hydra.launcher.timeout_min=2")
    job = _job_id(sweep)
    end = time.time() + 300
    while not (_signal_checkpoints(sweep / "0") and len(_rows(sweep / "0")) > _signal_checkpoints(sweep / "0")[0][1]):
        assert proc.poll() is None and time.time() < end, _job_log(sweep, job)[-3000:]
        time.sleep(0.5)  # until an attempt has resumed from the first checkpoint at the signal
    subprocess.run(["scontrol", "update", f"JobId={job}", "TimeLimit=30"], check=True)
    _finish(proc, timeout=900)
    assert _assert_resumed_at_signal(sweep, job, total, "SIGUSR2", straight)
    log_out = _job_log(sweep, job)
    assert "this job is timed-out" in log_out and "Requeued job" in log_out, log_out[-3000:]
