"""Fixtures for the sandbox tests.

Tests that run hostile code first move the test process into an *outer* cgroup with a pids
and memory bound (where this machine lets us create one), so a sandbox regression fails a
test instead of taking the machine down; after each hostile case they assert that this outer
bound was never what stopped it (the sandbox's own limits must act first).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from r1envs.sandbox import _cgroup
from r1envs.sandbox.local import LocalSandbox, isolation_problem

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
    """A sandbox of ``kind`` ("bwrap", "unshare", "docker"), or skip with a reason.

    As root and as an ordinary user alike (bubblewrap and ``unshare`` both run unprivileged
    where user namespaces are allowed).
    """
    if kind == "docker":
        return docker_sandbox_or_skip()
    problem = isolation_problem(kind)
    if problem is not None:
        pytest.skip(f"{kind} cannot run here: {problem}")
    return LocalSandbox(workers=2, isolation=kind)


def sandbox_processes(sandbox) -> list[int]:
    """Host pids of the processes in a LocalSandbox's slots other than their runners.

    As root these are the processes of the slots' candidate uids; as an ordinary user
    (candidates share our uid) those in the slots' pid namespaces but their pid 1 (the runner).
    """
    if os.geteuid() == 0:
        return _uid_processes(set(sandbox.uids))
    spaces = set()
    for slot in list(sandbox._all):
        for pid in _children(slot.proc.pid):
            try:
                spaces.add(os.readlink(f"/proc/{pid}/ns/pid"))
            except OSError:
                pass
    found = []
    for pid in _pids():
        try:
            space = os.readlink(f"/proc/{pid}/ns/pid")
            nspid = _status(pid).get("NSpid", "").split()
        except OSError:
            continue
        if space in spaces and nspid and nspid[-1] != "1":
            found.append(pid)
    return found


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status") as fh:
        return dict(line.split(":\t", 1) for line in fh.read().splitlines() if ":\t" in line)


def _children(pid: int) -> list[int]:
    out = []
    for p in _pids():
        try:
            if int(_status(p).get("PPid", "0")) == pid:
                out.append(p)
        except (OSError, ValueError):
            pass
    return out


def _uid_processes(uids: set[int]) -> list[int]:
    found = []
    for pid in _pids():
        try:
            uid = int(_status(pid).get("Uid", "-1").split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if uid in uids:
            found.append(pid)
    return found


@pytest.fixture(
    scope="module", params=["bwrap", "unshare", pytest.param("docker", marks=pytest.mark.docker)]
)
def any_sandbox(request, outer_bound):
    sandbox = make_sandbox(request.param)
    yield sandbox
    sandbox.close()
