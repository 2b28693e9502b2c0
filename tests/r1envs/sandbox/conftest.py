"""Fixtures for the sandbox tests.

Tests that run hostile code first move the test process into an *outer* cgroup with a pids
and memory bound (where this machine lets us create one), so a sandbox regression fails a
test instead of taking the machine down; after each hostile case they assert that this outer
bound was never what stopped it (the sandbox's own limits must act first).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from r1envs.sandbox import _cgroup
from r1envs.sandbox.local import LocalSandbox, isolation_available

OUTER_MEMORY = 1 << 30
OUTER_PIDS = 1024


@pytest.fixture(scope="module")
def outer_bound():
    """The test process inside a memory + pids cgroup (``None`` where none can be made)."""
    group = _cgroup.create("r1tests-outer")
    if group is None:
        yield None
        return
    old = {c: p for c, p in _cgroup._own_paths().items() if c in ("memory", "pids", "")}
    try:
        group.set_memory(OUTER_MEMORY)
        group.set_pids(OUTER_PIDS)
        group.nestable()  # the sandboxes' slot groups are created inside it
        group.add(os.getpid())
    except OSError:
        group.remove()
        yield None
        return
    yield group
    for controller, path in old.items():  # back where we were
        base = (
            (_cgroup._v2_root() or _cgroup.ROOT) if controller == "" else _cgroup.ROOT / controller
        )
        try:
            (Path(base) / path.lstrip("/") / "cgroup.procs").write_text(str(os.getpid()))
        except OSError:
            pass
    group.remove()


def docker_sandbox_or_skip():
    """A DockerSandbox, or skip with the reason no engine/image is usable."""
    try:
        from r1envs.sandbox.docker import DockerSandbox, docker_unavailable_reason
    except ImportError as err:
        pytest.skip(f"docker SDK not importable: {err}")
    reason = docker_unavailable_reason()
    if reason:
        pytest.skip(f"no usable Docker engine: {reason}")
    return DockerSandbox(workers=2)


def make_sandbox(kind: str):
    """A sandbox of ``kind`` ("bwrap", "unshare", "docker"), or skip with a reason."""
    if kind == "docker":
        return docker_sandbox_or_skip()
    if os.geteuid() != 0:
        pytest.skip("the local isolation tests need root (namespaces, uid switching)")
    if kind == "bwrap" and shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (apt-get install bubblewrap)")
    if not isolation_available(kind):
        pytest.skip(f"{kind} namespaces are refused on this machine")
    return LocalSandbox(workers=2, isolation=kind)


@pytest.fixture(
    scope="module", params=["bwrap", "unshare", pytest.param("docker", marks=pytest.mark.docker)]
)
def any_sandbox(request, outer_bound):
    sandbox = make_sandbox(request.param)
    yield sandbox
    sandbox.close()
