"""Docs that run: every fenced ```bash block of README.md, experiments/README.md and experiments/*/README.md,
scaled down to smoke size and run, each block in a throwaway copy of the repository; every command must exit 0.

The scaling rule (one rule for every command, so a reader can tell what was checked):

* ``python -m trpo_lab.train …`` (not ``--cfg``): any ``total_env_steps=…`` is dropped and SMOKE_OVERRIDES are
  appended (1024 env steps in 512-step batches of 2 envs, 1 critic epoch, 2 evaluation episodes, no W&B, no
  console); with ``-m``, a ``seed=a,b,…`` sweep keeps its first seed and a sweep without one gets ``seed=0`` (a
  preset's other swept keys stay: every cell of its grid runs once).
* ``multirun/DATE/TIME``, ``SWEEP_DIR [SWEEP_DIR ...]``: the sweep folder the block's ``-m`` command wrote (the
  newest under ``multirun/``); ``experiments/NAME``: ``report/``.
* ``python``/``python3`` are this test's interpreter (the project installed with its test extras).
* Not run, by rule: ``pip install`` (CI installs the project that way before the tests run: `.ci/run`) and
  ``python -m pytest`` (this test is part of that suite).
* Not run, by mark: a block with a line ``# not run by tests/test_docs.py: REASON``; the reason is the skip
  message (``pytest -ra`` lists them).

The copy holds the repository's tracked-style files (not .git, .venv, outputs/, multirun/), so a command that
writes into experiments/ or studies/ writes into the copy.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "experiments" / "README.md", *sorted((ROOT / "experiments").glob("*/README.md"))]
MARK = "# not run by tests/test_docs.py:"
SMOKE_OVERRIDES = ["total_env_steps=1024", "rollout.num_envs=2", "rollout.batch_size=512", "rollout.normalizer_warmup=0",
                   "critic.epochs=1", "eval.episodes=2", "checkpoint_every=0", "logger.wandb.mode=disabled",
                   "logger.console=off"]
NOT_COPIED = {".git", ".venv", "outputs", "multirun", "studies", "wandb", ".pytest_cache", "build", "dist"}


def bash_blocks(doc: Path) -> list[tuple[str, str]]:
    """``(id, text)`` of every fenced bash block of ``doc``; the id is ``file:n`` (its n-th bash block)."""
    text = doc.read_text()
    return [(f"{doc.relative_to(ROOT)}:{n}", m.group(1)) for n, m in enumerate(re.finditer(r"```bash\n(.*?)```", text, re.S), 1)]


def commands(block: str) -> list[str]:
    """The block's commands: continuation lines joined, comments and blank lines dropped, ``a && b`` split."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        out.extend(part.strip() for part in line.split(" && "))
    return out


def not_run_by_rule(tokens: list[str]) -> str | None:
    if "pip" in tokens and "install" in tokens:
        return "pip install: CI installs the project so before the tests (.ci/run)"
    if tokens[:3] in (["python3", "-m", "pytest"], ["python", "-m", "pytest"]):
        return "the test suite itself"
    return None


def scale(tokens: list[str]) -> list[str]:
    """The smoke-size form of a ``trpo_lab.train`` command (the module docstring's rule); others unchanged."""
    if tokens[1:3] != ["-m", "trpo_lab.train"] or "--cfg" in tokens:
        return tokens
    keys = {o.split("=", 1)[0] for o in SMOKE_OVERRIDES}
    out = [t for t in tokens if t.split("=", 1)[0] not in keys]
    if "-m" in out[3:]:
        seeds = [i for i, t in enumerate(out) if t.startswith("seed=")]
        for i in seeds:
            out[i] = out[i].split(",")[0]
        if not seeds:
            out.append("seed=0")
    return out + SMOKE_OVERRIDES


def substitute(tokens: list[str], cwd: Path) -> list[str]:
    """Placeholders: the newest sweep folder under ``multirun/`` for a sweep folder, ``report`` for a study folder."""
    out = []
    for t in tokens:
        if t in ("[SWEEP_DIR", "...]"):  # "SWEEP_DIR [SWEEP_DIR ...]": one folder
            continue
        if t in ("multirun/DATE/TIME", "SWEEP_DIR"):
            sweeps = sorted((cwd / "multirun").glob("*/*"), key=lambda p: p.stat().st_mtime)
            assert sweeps, f"{t}: no sweep folder was written before this command"
            t = str(sweeps[-1])
        elif t == "experiments/NAME":
            t = "report"
        out.append(t)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(ROOT)) for d in DOCS])
def test_doc_commands_run_at_smoke_scale(doc, tmp_path):
    """The doc's blocks in order, in one copy of the repository (a report block reads the sweep before it)."""
    cwd = tmp_path / "repo"
    shutil.copytree(ROOT, cwd, ignore=lambda d, names: [n for n in names if n in NOT_COPIED or n.endswith(".egg-info")])
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}
    ran, skipped = [], []
    for block_id, block in bash_blocks(doc):
        marks = [ln.split(MARK, 1)[1].strip() for ln in block.splitlines() if MARK in ln]
        if marks:
            skipped.append(f"{block_id}: {marks[0]}")
            continue
        for command in commands(block):
            tokens = shlex.split(command, comments=True)
            reason = not_run_by_rule(tokens)
            if reason:
                skipped.append(f"{block_id}: {command[:70]} ({reason})")
                continue
            tokens = substitute(scale(tokens), cwd)
            tokens[0] = sys.executable if tokens[0] in ("python", "python3") else tokens[0]
            res = subprocess.run(tokens, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
            assert res.returncode == 0, f"{block_id}: {shlex.join(tokens)}\n{res.stderr[-3000:]}"
            ran.append(f"{block_id}: {command[:70]}")
    print("ran:", *ran, "not run:", *skipped, sep="\n  ")
    if not ran:
        pytest.skip("; ".join(skipped) or "no bash block")
