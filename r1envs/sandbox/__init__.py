"""Sandboxes that run untrusted candidate programs: :class:`LocalSandbox`, :class:`DockerSandbox`.

See ``docs/sandbox.md`` for the guarantees of each.
"""

from __future__ import annotations

import threading
from typing import Any

from r1envs.sandbox.base import Sandbox, SandboxError
from r1envs.sandbox.local import LocalSandbox

__all__ = ["DockerSandbox", "LocalSandbox", "Sandbox", "SandboxError", "get_sandbox"]

_shared: dict[str, Sandbox] = {}
_shared_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    if name == "DockerSandbox":  # imports the docker SDK lazily
        from r1envs.sandbox.docker import DockerSandbox

        return DockerSandbox
    raise AttributeError(name)


def get_sandbox(spec: str | Sandbox | None = None) -> Sandbox:
    """Resolve the ``sandbox=`` kwarg: ``None``/``"local"``, ``"docker"`` or an instance.

    Named sandboxes are shared by every task of the process (one pool per process).

    Raises:
        ValueError: for an unknown name.
        SandboxError: when the named sandbox cannot start here (``"local"``: neither
            bubblewrap nor ``unshare`` can isolate candidates; it never runs them unisolated
            unless ``LocalSandbox(isolation="none")`` is passed explicitly).
    """
    if isinstance(spec, Sandbox):
        return spec
    name = "local" if spec is None else spec
    if name not in ("local", "docker"):
        raise ValueError(f"sandbox must be 'local', 'docker' or a Sandbox, sandbox: {spec!r}")
    with _shared_lock:
        if name not in _shared:
            if name == "local":
                _shared[name] = LocalSandbox()
            else:
                from r1envs.sandbox.docker import DockerSandbox

                _shared[name] = DockerSandbox()
        return _shared[name]
