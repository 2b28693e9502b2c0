"""Functions run in spawned worker processes by the tests (importable by the child)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def write_pid_then_sleep(path: str, seconds: float) -> int:
    """Write this process's id to ``path``, then sleep."""
    Path(path).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def square(x: int) -> int:
    return x * x
