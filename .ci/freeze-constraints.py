#!/usr/bin/env python3
"""Write constraints.txt: the installed version of every package in trpo-lab's dependency closure.

The closure is pyproject.toml's dependencies plus the ``test``, ``launchers`` and ``peers`` extras, followed recursively
through each installed distribution's requirements (markers evaluated for this interpreter). Versions are
written without a local label (``torch==2.13.0``, not ``2.13.0+cpu``): ``==2.13.0`` still admits the CPU
build, and the same file works where only the public index is reachable.

    python3 .ci/freeze-constraints.py            # run in the environment the tests passed in

.ci/run installs with ``-c constraints.txt``, so CI gets what was tested.
"""
from __future__ import annotations

import importlib.metadata as md
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("test", "launchers", "peers")


def closure(requirements: list[Requirement]) -> dict[str, str]:
    """name -> installed version, for the requirements and everything they require (with their extras)."""
    pinned: dict[str, str] = {}
    todo = [(r, "") for r in requirements]
    seen: set[tuple[str, str]] = set()
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        for wanted in ("", *sorted(req.extras)):
            if (name, wanted) in seen:
                continue
            seen.add((name, wanted))
            try:
                dist = md.distribution(name)
            except md.PackageNotFoundError:
                sys.exit(f"error: {req.name} is required but not installed; install the project and its extras first")
            pinned[name] = dist.version.split("+")[0]
            todo += [(Requirement(r), wanted) for r in dist.requires or []]
    return pinned


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for e in EXTRAS for r in project["optional-dependencies"][e]]
    pins = closure(reqs)
    lines = [
        "# The versions trpo-lab's tests passed with: its dependency closure, pinned (with the test, launchers and peers",
        "# extras). CI installs with `-c constraints.txt`. Regenerate with `python3 .ci/freeze-constraints.py`.",
        f"# Python {sys.version_info.major}.{sys.version_info.minor}, {sys.platform}.",
        *(f"{name}=={version}" for name, version in sorted(pins.items())),
    ]
    (ROOT / "constraints.txt").write_text("\n".join(lines) + "\n")
    print(f"constraints.txt: {len(pins)} packages")


if __name__ == "__main__":
    main()
