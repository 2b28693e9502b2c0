"""Small cgroup helper: a child group with a memory and a process-count bound.

Works with cgroup v2 (a child of this process's group when that group delegates the
``memory`` and ``pids`` controllers, else of the hierarchy's root) and with cgroup v1 (a child in the ``memory`` and ``pids``
hierarchies). :func:`create` returns ``None`` where neither is writable, so callers fall back
to rlimits alone.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
_counter = itertools.count()


def _own_paths() -> dict[str, str]:
    """``{controller or "": path}`` of this process's groups (``""`` is cgroup v2)."""
    out: dict[str, str] = {}
    try:
        text = Path("/proc/self/cgroup").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def _v2_root() -> Path | None:
    for cand in (ROOT, ROOT / "unified"):
        if (cand / "cgroup.controllers").is_file():
            return cand
    return None


class Cgroup:
    """A group (one directory per hierarchy) with memory and pids limits."""

    def __init__(self, dirs: dict[str, Path], version: int):
        self.dirs = dirs
        self.version = version
        #: v2 groups that hold sub-groups keep their processes in this leaf
        self.leaf: Path | None = None

    def _file(self, controller: str, v1: str, v2: str) -> Path:
        return self.dirs[controller] / (v1 if self.version == 1 else v2)

    def set_memory(self, limit: int) -> None:
        """Bound the group's memory (RAM plus swap where the kernel accounts it)."""
        mem = self._file("memory", "memory.limit_in_bytes", "memory.max")
        swap = self._file("memory", "memory.memsw.limit_in_bytes", "memory.swap.max")
        if self.version == 2:
            mem.write_text(str(limit))
            if swap.exists():
                swap.write_text("0")
            return
        current = int(mem.read_text())  # v1: memsw must stay >= the memory limit
        order = [(mem, limit), (swap, limit)] if limit < current else [(swap, limit), (mem, limit)]
        for path, value in order:
            if path.exists():
                try:
                    path.write_text(str(value))
                except OSError:
                    if path is mem:
                        raise

    def set_pids(self, limit: int) -> None:
        """Bound the number of processes (and threads) in the group."""
        self._file("pids", "pids.max", "pids.max").write_text(str(limit))

    def procs_files(self) -> list[str]:
        """The ``cgroup.procs`` files a process writes its pid to, to join the group."""
        if self.leaf is not None:
            return [str(self.leaf / "cgroup.procs")]
        return sorted({str(d / "cgroup.procs") for d in self.dirs.values()})

    def nestable(self) -> bool:
        """Let sub-groups (e.g. sandbox slots) nest inside this group, whose own processes
        then live in a leaf (cgroup v2's no-internal-process rule); v1 nests anyway."""
        if self.version == 1:
            return True
        d = self.dirs["memory"]
        try:
            (d / "leaf").mkdir(exist_ok=True)
            (d / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError:
            return False
        self.leaf = d / "leaf"
        return True

    def add(self, pid: int) -> None:
        """Move process ``pid`` into the group."""
        for path in self.procs_files():
            Path(path).write_text(str(pid))

    def usage(self, controller: str) -> int:
        """Current memory bytes or process count of the group."""
        if controller == "memory":
            return int(self._file("memory", "memory.usage_in_bytes", "memory.current").read_text())
        return int(self._file("pids", "pids.current", "pids.current").read_text())

    def headroom(self, controller: str) -> int | None:
        """The smallest ``limit - usage`` over the enclosing groups (``None``: unbounded).

        Sandboxes stay below it so that an enclosing bound (a CI job's, a container's) is
        never what stops a test.
        """
        names = {
            ("memory", 1): ("memory.limit_in_bytes", "memory.usage_in_bytes"),
            ("memory", 2): ("memory.max", "memory.current"),
            ("pids", 1): ("pids.max", "pids.current"),
            ("pids", 2): ("pids.max", "pids.current"),
        }[(controller, self.version)]
        best: int | None = None
        d = self.dirs[controller].parent
        while True:
            try:
                limit_text = (d / names[0]).read_text().strip()
                usage = int((d / names[1]).read_text())
            except (OSError, ValueError):
                break
            if limit_text != "max" and int(limit_text) < (1 << 60):
                room = max(0, int(limit_text) - usage)
                best = room if best is None else min(best, room)
            if d == d.parent or d.name == "" or d in (ROOT / controller, ROOT, ROOT / "unified"):
                break
            d = d.parent
        return best

    def hit_limits(self) -> dict[str, int]:
        """How often each limit stopped something (0 everywhere when never reached)."""
        out: dict[str, int] = {}
        if self.version == 1:
            mem = self.dirs["memory"]
            fail = mem / "memory.failcnt"
            out["memory"] = int(fail.read_text()) if fail.exists() else 0
            peak, limit = mem / "memory.max_usage_in_bytes", mem / "memory.limit_in_bytes"
            if peak.exists() and int(peak.read_text()) >= int(limit.read_text()) - (1 << 20):
                out["memory.reached"] = 1  # v1 may not count a child group's failed charge
        else:  # ".local": this group's own limit, not its sub-groups' (v2 events propagate)
            events = self.dirs["memory"] / "memory.events.local"
            if not events.exists():
                events = self.dirs["memory"] / "memory.events"
            for line in events.read_text().splitlines():
                key, value = line.split()
                if key in ("max", "oom", "oom_kill"):
                    out[f"memory.{key}"] = int(value)
        events = self.dirs["pids"] / "pids.events.local"
        if not events.exists():
            events = self.dirs["pids"] / "pids.events"
        if events.exists():
            for line in events.read_text().splitlines():
                key, value = line.split()
                if key == "max":
                    out["pids"] = int(value)
        return out

    def remove(self) -> None:
        """Remove the (empty) group's directories."""
        for d in ([self.leaf] if self.leaf is not None else []) + list(self.dirs.values()):
            for attempt in range(50):  # the last processes may still be exiting
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01 * (attempt + 1))


def create(name: str) -> Cgroup | None:
    """A new child group named ``name-<pid>-<n>`` under this process's groups, or ``None``."""
    own = _own_paths()
    leaf = f"{name}-{os.getpid()}-{next(_counter)}"
    v2 = _v2_root()
    if v2 is not None and "" in own:
        # the nearest of our group and its ancestors that delegates memory+pids to children
        # (usually our parent: a v2 group holding processes cannot); a group made above our
        # own leaves its accounting but keeps its own, tighter bound
        own_dir = v2 / own[""].lstrip("/")
        for parent in (own_dir, *own_dir.parents):
            if parent != v2 and v2 not in parent.parents:
                break
            try:
                enabled = (parent / "cgroup.subtree_control").read_text().split()
            except OSError:
                continue
            if {"memory", "pids"} <= set(enabled):
                d = parent / leaf
                try:
                    d.mkdir()
                except OSError:
                    continue
                return Cgroup({"memory": d, "pids": d}, 2)
    dirs: dict[str, Path] = {}
    for controller in ("memory", "pids"):
        base = ROOT / controller
        if controller not in own or not (base / "cgroup.procs").is_file():
            break
        d = base / own[controller].lstrip("/") / leaf
        try:
            d.mkdir()
        except OSError:
            break
        dirs[controller] = d
    if len(dirs) == 2:
        return Cgroup(dirs, 1)
    for d in dirs.values():
        d.rmdir()
    return None
