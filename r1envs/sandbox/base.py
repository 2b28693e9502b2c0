"""The sandbox interface shared by :class:`LocalSandbox` and :class:`DockerSandbox`.

A sandbox runs *requests* in the wire format of the in-sandbox runner
(:mod:`r1envs.sandbox._harness`): one candidate program plus the tests of one problem::

    {"code": str, "time_limit": float, "memory_mb": int, "output_limit": int,
     "tests": [{"exprs": [str, ...]} | {"input": str}
               | {"script": str, "setup": str, "entry": str | None, "prelude": str}, ...]}

and returns one raw outcome per test (``status``, ``stdout``, ``stderr``, ``exit_code`` /
``signal``; ``frames``, the raw JSON result frames of an ``exprs`` test; ``verdict``, the
report of a ``script`` test's judge process). The program never decides pass or fail: for
``exprs`` and ``input`` tests the judge in :mod:`r1envs.verifiers.code` does, in its own
process; a ``script`` test is judged by a process of its own next to the program (see
:func:`r1envs.sandbox._harness.run_judge`).
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

HARNESS_PATH = Path(__file__).with_name("_harness.py")


class SandboxError(RuntimeError):
    """The sandbox itself failed (could not start, died, engine down): not the candidate."""


def harness_source() -> str:
    """The source of the in-sandbox runner."""
    return HARNESS_PATH.read_text(encoding="utf-8")


def encode_frame(obj: Any) -> bytes:
    """A length-prefixed JSON frame."""
    data = json.dumps(obj).encode("utf-8")
    return struct.pack(">I", len(data)) + data


def read_frame(fd: int, deadline: float, limit: int = 1 << 30) -> Any:
    """Read one frame from ``fd`` before ``deadline`` (monotonic seconds).

    Raises:
        SandboxError: on timeout, end of stream, or a frame larger than ``limit``.
    """
    head = _read_exact(fd, 4, deadline)
    (n,) = struct.unpack(">I", head)
    if n > limit:
        raise SandboxError(f"sandbox reply too large: {n} bytes")
    try:
        return json.loads(_read_exact(fd, n, deadline).decode("utf-8"))
    except ValueError as err:
        raise SandboxError(f"malformed sandbox reply: {err}") from err


def _read_exact(fd: int, n: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    got = 0
    while got < n:
        wait = deadline - time.monotonic()
        if wait <= 0:
            raise SandboxError("sandbox did not answer in time")
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            continue
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            raise SandboxError("sandbox runner exited unexpectedly")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def request_deadline(request: dict[str, Any], slack: float = 10.0) -> float:
    """Seconds a well-behaved runner may take for ``request`` (limits plus clean-up)."""
    per_test = float(request["time_limit"]) + 1.0
    return per_test * max(1, len(request["tests"])) + slack


class Sandbox(ABC):
    """Runs untrusted programs against tests; thread-safe; reusable across calls."""

    #: short name of the isolation in use (e.g. ``"bwrap"``, ``"unshare"``, ``"docker"``).
    isolation: str = "?"

    @abstractmethod
    def execute(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """Run every test of ``request``; one raw outcome per test.

        Raises:
            SandboxError: when the sandbox itself fails.
        """

    def close(self) -> None:  # noqa: B027 - optional hook
        """Stop worker processes or containers."""

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
