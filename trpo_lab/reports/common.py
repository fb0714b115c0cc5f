"""What both reports share: their command-line skeleton, and loading and grouping the runs."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from trpo_lab.runs import Groups, NoRunsError, Run, display_path, group_runs, load_complete_runs, pooling_warnings


def base_parser(description: str) -> argparse.ArgumentParser:
    """SWEEP_DIR..., ``--out`` and the bootstrap's ``--resamples/--confidence/--seed``."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("sweep_dirs", nargs="+", type=Path, metavar="SWEEP_DIR", help="sweep or run folders (searched recursively)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: FIRST_SWEEP_DIR/analysis)")
    p.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default: 10000)")
    p.add_argument("--confidence", type=float, default=0.95, help="CI coverage (default: 0.95)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default: 0)")
    return p


def run_report(args: argparse.Namespace, write: Callable[[Groups, list[tuple[Run, str]], Path], None],
               label_keys: Sequence[str] = ()) -> int:
    """Load and group the runs below ``args.sweep_dirs`` (skips and pooling warnings on stderr; ``label_keys`` as
    in :func:`~trpo_lab.runs.group_runs`), create the output folder and call ``write(groups, skipped, out)``;
    exit status 2 after a one-line error when no run is usable."""
    try:
        runs, skipped = load_complete_runs(args.sweep_dirs)
    except NoRunsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    groups = group_runs(runs, label_keys)
    for warning in pooling_warnings(groups):
        print(warning, file=sys.stderr)
    out = args.out or args.sweep_dirs[0] / "analysis"
    out.mkdir(parents=True, exist_ok=True)
    write(groups, skipped, out)
    return 0


def skipped_json(skipped: Sequence[tuple[Run, str]]) -> list[dict[str, str]]:
    return [{"run": display_path(r.path), "reason": why} for r, why in skipped]

