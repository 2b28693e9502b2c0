"""Access to the data shipped with r1envs (the top-level ``tasks/`` folder).

In a wheel, ``tasks/`` is the package ``r1envs.taskdata``; in a source checkout it is the
folder next to the package. :func:`data_path` finds a file in either.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def data_root() -> Path:
    """The folder holding the shipped task definitions and data files."""
    try:
        root = Path(str(importlib.resources.files("r1envs.taskdata")))
        if root.is_dir():
            return root
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "tasks"


def data_path(relative: str) -> Path:
    """The path of a shipped data file, e.g. ``data_path("math/problems.jsonl")``.

    Raises:
        FileNotFoundError: naming the missing file.
    """
    path = data_root() / relative
    if not path.exists():
        raise FileNotFoundError(f"no shipped data file {relative!r} under {data_root()}")
    return path
