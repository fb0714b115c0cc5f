"""The run folder: what one training job writes, how each file is read and written, and when two
configs describe the same run.

A run folder holds (README, "Interruptions, resume and failures"):

* ``config.yaml``: the resolved config the data was trained with; a fresh run claims its folder by
  creating it exclusively;
* ``metrics.jsonl``: one JSON object per update, appended and flushed line by line (a killed writer
  leaves at most a torn last line, which every reader drops);
* ``checkpoint.pt``: the state after the last checkpointed update: tensors, numbers, strings, lists
  and dicts only, so it loads with ``torch.load(weights_only=True)`` and no pickled code runs;
* ``summary.json``: written at the end; its presence marks the run as finished;
* ``peer_policy.pt`` and ``peer_normalizer.pt`` instead of ``checkpoint.pt`` in a peer's run (``peer=...``,
  :mod:`trpo_lab.peers`): the final policy's ``state_dict`` and its normaliser's statistics, tensors and numbers
  only, so they too load with ``torch.load(weights_only=True)`` (never the peer library's pickles);
* ``error.txt`` (a job that failed inside a multirun; ``error.previous.txt`` once a retry starts),
  ``video.gif`` (``trpo-evaluate --video``) and ``wandb/`` (W&B's files);
* ``.hydra/overrides.yaml`` and ``.hydra/config.yaml``: Hydra's record of the latest launch (its
  command-line overrides and the config they compose to), and Hydra's ``train.log``.

Every write of config, summary and checkpoint is atomic (:func:`~trpo_lab.files.write_atomic`):
a reader, or a run killed mid-write, sees the old file or the whole new one.

A run folder is bound to its config: two configs describe the same run when they are equal in every
key outside :data:`MAY_CHANGE_ON_RESUME` (:func:`config_differences`, the one comparison behind the
resume binding and the sweep summary's ``mismatch``).

Imported by the sweep summary in every training job: torch and the trainer's builders are imported
inside the functions that need them.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import yaml
from omegaconf import DictConfig, OmegaConf

from trpo_lab.config import ConfigError
from trpo_lab.files import write_atomic, write_text_atomic

if TYPE_CHECKING:
    from trpo_lab.envs import ObservationNormalizer
    from trpo_lab.policies import Policy

CONFIG, METRICS, SUMMARY, CHECKPOINT = "config.yaml", "metrics.jsonl", "summary.json", "checkpoint.pt"
ERROR, PREVIOUS_ERROR, VIDEO, WANDB = "error.txt", "error.previous.txt", "video.gif", "wandb"
#: Hydra's record of the job's latest launch: its overrides, and the config they compose to (unresolved)
OVERRIDES, REQUESTED_CONFIG = ".hydra/overrides.yaml", ".hydra/config.yaml"
#: what the lab writes into a run folder (``resume=overwrite`` removes exactly these; Hydra's ``.hydra/``
#: and ``train.log`` are rewritten and appended by Hydra itself)
#: a peer's trained policy (its ``state_dict``) and its VecNormalize statistics (trpo_lab/peers/sb3_contrib.py)
PEER_POLICY, PEER_NORMALIZER = "peer_policy.pt", "peer_normalizer.pt"
RUN_FILES = (CONFIG, METRICS, CHECKPOINT, SUMMARY, ERROR, PREVIOUS_ERROR, VIDEO, WANDB, PEER_POLICY, PEER_NORMALIZER)
#: keys every checkpoint holds
CHECKPOINT_KEYS = ("policy", "critic", "critic_optimizer", "obs_normalizer", "reward_scaler", "env_steps", "updates")

#: top-level keys a later launch may change in a run folder's saved config and still continue (or skip) that
#: run: its budget, how it resumes, threads, checkpoint cadence, the skip limit and console/W&B output. Every
#: other key is the run's identity.
MAY_CHANGE_ON_RESUME = (
    "total_env_steps", "resume", "torch_threads", "checkpoint_every", "max_consecutive_skips", "logger",
)


#: what a config saved before the ``sampling`` group existed ran (conf/sampling/single_path.yaml)
SINGLE_PATH_SAMPLING = {"_target_": "trpo_lab.rollout.RolloutCollector", "baseline": "critic"}


class RunFolderError(ConfigError):
    """A run folder holds another run (a different config), or was claimed by another process."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupt or not a trpo-lab checkpoint."""


# -- the config ------------------------------------------------------------------------------------------


def read_saved_config(run_dir: Path) -> DictConfig | None:
    """The ``config.yaml`` a run folder was started with (None if it has none); :class:`RunFolderError` if unreadable."""
    path = Path(run_dir) / CONFIG
    if not path.exists():
        return None
    try:
        saved = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001 - corrupt YAML of any kind
        raise RunFolderError(f"{path} is not a readable config ({one_line(e)}); resume=overwrite discards that run") from None
    if not isinstance(saved, DictConfig):
        raise RunFolderError(f"{path} is not a trpo-lab config; resume=overwrite discards that run")
    if "sampling" not in saved and "algo" in saved:  # saved before the sampling group: it ran single path
        saved.sampling = dict(SINGLE_PATH_SAMPLING)
    return saved


def claim_folder(cfg: DictConfig, run_dir: Path, fresh: bool) -> None:
    """Write ``config.yaml``; a fresh run creates it exclusively, so two runs never share a folder."""
    text = OmegaConf.to_yaml(cfg, resolve=True)
    if not fresh:
        write_text_atomic(Path(run_dir) / CONFIG, text)
        return
    try:
        with open(Path(run_dir) / CONFIG, "x") as f:
            f.write(text)
    except FileExistsError:
        raise RunFolderError(f"{run_dir} was claimed by another run started at the same time; use another folder") from None


def read_yaml(path: Path) -> Any:
    """A YAML file as plain data (``config.yaml``, ``.hydra/*``), or None if it is missing or unreadable."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None


def read_requested_config(run_dir: Path) -> dict[str, Any] | None:
    """``.hydra/config.yaml`` with its interpolations (``${algo.max_kl}``) resolved, or None."""
    from omegaconf.errors import OmegaConfBaseException

    raw = read_yaml(Path(run_dir) / REQUESTED_CONFIG)
    if not isinstance(raw, dict):
        return None
    try:
        resolved = OmegaConf.to_container(OmegaConf.create(raw), resolve=True)
    except OmegaConfBaseException:
        return None
    return resolved if isinstance(resolved, dict) else None


def may_change_on_resume(dotted_key: str) -> bool:
    """Whether ``dotted_key`` (``"logger.wandb.mode"``) lies under :data:`MAY_CHANGE_ON_RESUME`."""
    return dotted_key.split(".", 1)[0] in MAY_CHANGE_ON_RESUME


def flatten_config(tree: Any, prefix: str = "") -> dict[str, Any]:
    """A plain config as ``{dotted key: leaf}``: ``{"algo": {"max_kl": 0.01}}`` → ``{"algo.max_kl": 0.01}``.

    Lists are leaves; an empty mapping has no leaves (``env.kwargs: {}`` and no ``env.kwargs`` flatten alike)."""
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(flatten_config(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def config_differences(saved: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """``key (saved X, requested Y)`` for every key whose value differs (a key in one config only is
    ``<absent>`` in the other), but for those of :func:`may_change_on_resume`; sorted by key.

    A sub-config whose ``_target_`` differs (another step rule, say) is one entry, named by its class."""
    a, b = flatten_config(saved), flatten_config(requested)
    absent = "<absent>"
    differing = [k for k in sorted(set(a) | set(b))
                 if not may_change_on_resume(k) and a.get(k, absent) != b.get(k, absent)]
    swapped = [k[: -len("._target_")] for k in differing if k.endswith("._target_")]
    out = []
    for k in differing:
        if any(k.startswith(p + ".") and not k.endswith("._target_") for p in swapped):
            continue  # reported with the _target_ that replaced its whole sub-config
        x, y = a.get(k, absent), b.get(k, absent)
        if k.endswith("._target_"):
            k, x, y = k[: -len("._target_")], str(x).rsplit(".", 1)[-1], str(y).rsplit(".", 1)[-1]
        out.append(f"{k} (saved {x!r}, requested {y!r})")
    return out


# -- metrics, summary, errors ----------------------------------------------------------------------------


def metrics_rows(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(line, row)`` for each line of a ``metrics.jsonl`` that is a complete JSON object; others (the torn
    last line of a killed writer) are dropped."""
    for line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            yield line, row


def read_metrics(path: Path, tail_bytes: int | None = None) -> list[dict[str, Any]]:
    """The rows of a ``metrics.jsonl`` (see :func:`metrics_rows`); [] if there is none.

    With ``tail_bytes``, only the rows in the file's last ``tail_bytes`` bytes are read (cheap for a
    status check of a long run).
    """
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - tail_bytes) if tail_bytes else 0
            f.seek(start)
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = text.splitlines()
    if start > 0:
        lines = lines[1:]  # the first line was cut by the offset
    return [row for _, row in metrics_rows(lines)]


def truncate_metrics(path: Path, updates: int) -> int:
    """Keep only the rows of ``metrics.jsonl`` with ``update`` ≤ ``updates`` (those the checkpoint covers).

    Rows written after the checkpoint belong to updates whose state was lost; they are redone.
    A torn last line (killed mid-write) is dropped too. Returns the number of rows kept.
    """
    path = Path(path)
    if not path.exists():
        return 0
    kept = [line for line, row in metrics_rows(path.read_text().splitlines()) if row.get("update", math.inf) <= updates]
    write_text_atomic(path, "".join(line + "\n" for line in kept))
    return len(kept)


def has_metrics(run_dir: Path) -> bool:
    """Whether the folder's ``metrics.jsonl`` holds anything."""
    path = Path(run_dir) / METRICS
    return path.exists() and path.stat().st_size > 0


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``summary.json``, whose presence marks the run as finished."""
    write_text_atomic(Path(run_dir) / SUMMARY, json.dumps(summary, indent=2, default=str))


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """``summary.json``, or None if the run did not finish (or the file is not a JSON object)."""
    try:
        summary = json.loads((Path(run_dir) / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    return summary if isinstance(summary, dict) else None


def write_error(run_dir: Path, text: str) -> Path:
    """Write ``error.txt`` (a failed job's exception and traceback)."""
    path = Path(run_dir) / ERROR
    path.write_text(text, encoding="utf-8")
    return path


def retire_stale_error(run_dir: Path) -> None:
    """A re-launched sweep retries a failed job: keep its old ``error.txt``, but not as the current one."""
    stale = Path(run_dir) / ERROR
    if stale.exists():
        stale.replace(Path(run_dir) / PREVIOUS_ERROR)


def discard_run(run_dir: Path) -> None:
    """Remove what an earlier run wrote into ``run_dir`` (:data:`RUN_FILES`); any other file stays."""
    for name in RUN_FILES:
        path = Path(run_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


# -- the checkpoint --------------------------------------------------------------------------------------


def write_checkpoint(state: dict[str, Any], path: Path) -> Path:
    """Write ``state`` to ``path`` atomically: a kill mid-write keeps the old file."""
    import torch

    return write_atomic(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load and sanity-check a checkpoint (``path`` or ``path/checkpoint.pt``); any problem becomes one
    :class:`CheckpointError` naming the file."""
    import torch

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - truncated, corrupt or foreign files all end here
        raise CheckpointError(f"{path} is not a readable trpo-lab checkpoint ({one_line(e, 200)})") from None
    missing = [k for k in CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path} is not a trpo-lab checkpoint (missing {', '.join(missing)})")
    return state


# -- the folder as a whole -------------------------------------------------------------------------------


def check_writable_folder(key: str, folder: Path) -> None:
    """``folder`` exists and is writable, or can be created: its nearest existing parent is writable.
    Otherwise :class:`~trpo_lab.config.ConfigError` naming it ``key``."""
    folder = Path(folder).absolute()
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{key}={str(folder)!r} is invalid: {probe} is a file, not a folder")
    try:  # a real attempt: permission bits say nothing for root, or on a read-only file system
        os.rmdir(tempfile.mkdtemp(dir=probe, prefix=".trpo-lab-write-test-"))
    except OSError as e:
        raise ConfigError(f"{key}={str(folder)!r} is invalid: {probe} is not writable ({e.strerror})") from None


class SavedRun(NamedTuple):
    """A trained run rebuilt from its folder."""

    policy: Policy
    obs_normalizer: ObservationNormalizer
    config: dict[str, Any]
    state: dict[str, Any]


def build_from_folder(run_dir: Path) -> SavedRun:
    """The policy and observation normaliser of a run folder, built by the trainer's own builder
    (:func:`trpo_lab.train.build_policy`) from ``config.yaml`` and loaded from ``checkpoint.pt``;
    with the config (plain) and the checkpoint state. Bad folders raise :class:`CheckpointError` or
    :class:`~trpo_lab.config.ConfigError` (the env cannot be made) in one line."""
    from trpo_lab.envs import check_env, make_vec_env
    from trpo_lab.train import build_policy  # the composition root imports this module

    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG
    if not cfg_path.exists():
        raise CheckpointError(f"{cfg_path} does not exist: is {run_dir} a trpo-lab run folder?")
    try:
        cfg = OmegaConf.load(cfg_path)
        env_id, env_kwargs = cfg.env.id, OmegaConf.to_container(cfg.env.kwargs)
    except Exception as e:  # noqa: BLE001 - corrupt YAML, or not a trpo-lab config
        raise CheckpointError(f"{cfg_path} is not a readable trpo-lab config ({type(e).__name__})") from None
    if (run_dir / PEER_POLICY).exists():
        raise CheckpointError(f"{run_dir} holds a peer's run ({cfg.peer.name}), not a trpo-lab checkpoint; its final "
                              f"deterministic evaluation is {SUMMARY}'s final_eval")
    state = load_checkpoint(run_dir)
    check_env(env_id, env_kwargs)
    envs = make_vec_env(env_id, 1, env_kwargs)
    try:
        policy, obs_normalizer = build_policy(cfg, envs.single_observation_space, envs.single_action_space)
    finally:
        envs.close()
    try:
        policy.load_state_dict(state["policy"])
        obs_normalizer.load_state_dict(state["obs_normalizer"])
    except (KeyError, RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"the checkpoint in {run_dir} does not match its config.yaml ({e})") from None
    return SavedRun(policy, obs_normalizer, OmegaConf.to_container(cfg), state)


def one_line(e: BaseException, limit: int = 300) -> str:
    """``ExcType: first line of its message`` (the line cut at ``limit`` characters)."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:limit]}" if text else type(e).__name__
