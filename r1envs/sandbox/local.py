"""LocalSandbox: a pool of warm, isolated runner processes on this machine.

Each slot is one runner (:mod:`r1envs.sandbox._harness`) started inside its own isolation,
as root or as an ordinary user:

* ``bwrap`` (bubblewrap installed): new pid, net, ipc, uts (and cgroup) namespaces, a
  read-only root made of read-only binds of the system directories and the Python runtime
  (installed-package folders hidden), a fresh read-only ``/dev``, ``/proc`` and private,
  size-bounded ``/tmp`` and ``/dev/shm``. As root the runner keeps only the capabilities it
  needs to drop candidates to another uid; as an ordinary user bubblewrap runs it in a user
  namespace holding only that user, with no capabilities.
* ``unshare`` (util-linux): new mount, pid, net, ipc and uts namespaces (and, for an
  ordinary user, a user namespace); :mod:`r1envs.sandbox._rootfs` builds the same root there
  and starts the runner in it (for an ordinary user in a nested user namespace, without
  capabilities).
* ``none``: no namespaces; only when asked for explicitly (it warns loudly): the candidate
  sees the host's file system (as an unprivileged uid when run as root) and the network.

``"auto"`` (the default) takes ``bwrap``, else ``unshare``, and otherwise refuses with an
error that says how to enable either: it never falls back to ``none``.

In every mode each test runs in a fresh forked child of the runner with rlimits on address
space, CPU, file size, open files and processes, its own session, a fresh working directory
and an empty environment; as root with an unprivileged uid unique to the slot. Afterwards
every other process in the slot is killed (as init of the slot's pid namespace, or from the
candidate uid when root: detached, ``setsid`` and double-forked processes included) and the
working directory removed; the runner empties the slot's own ``/tmp`` and ``/dev/shm``, and no
mode touches a file outside the sandbox's own folders. Slots start lazily, are reused across
calls, restart when they die, and are shared by threads (``workers`` slots run in parallel).
Only ``subprocess`` and threads are used, so the sandbox works inside Gymnasium's daemonic
``AsyncVectorEnv`` workers.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from r1envs.sandbox import _cgroup
from r1envs.sandbox.base import (
    Sandbox,
    SandboxError,
    encode_frame,
    harness_source,
    read_frame,
    request_deadline,
)

log = logging.getLogger(__name__)
ISOLATIONS = ("auto", "bwrap", "unshare", "none")
UID_BASE = 0x60000000
ROOTFS_PATH = Path(__file__).with_name("_rootfs.py")
_uid_counter = itertools.count()
_warned: set[str] = set()
_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER")


def python_runtime() -> str:
    """The real interpreter binary (not a virtualenv's symlink)."""
    return os.path.realpath(sys.executable)


def system_ro_paths() -> list[str]:
    """Host paths the sandbox sees read-only: system dirs and the Python runtime."""
    candidates = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"]
    prefix = os.path.realpath(sys.base_prefix)
    exe_dir = os.path.dirname(python_runtime())
    paths: list[str] = []
    for p in candidates + [prefix, exe_dir]:
        if not os.path.lexists(p) or p == "/":
            continue
        real = p if os.path.islink(p) else os.path.realpath(p)
        if any(real == q or real.startswith(q.rstrip("/") + "/") for q in paths):
            continue
        paths.append(p if os.path.islink(p) else real)
    return paths


def _probe(cmd: list[str]) -> str | None:
    """``None`` when ``cmd`` succeeds, else why not (the end of its error output)."""
    try:
        out = subprocess.run(cmd, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as err:
        return str(err)
    if out.returncode == 0:
        return None
    said = out.stderr.decode("utf-8", "replace").strip().splitlines()
    return said[-1][:300] if said else f"exit status {out.returncode}"


_probe_cache: dict[str, str | None] = {}


def isolation_problem(kind: str) -> str | None:
    """Why ``kind`` ("bwrap" or "unshare") cannot start a sandbox here; ``None`` when it can."""
    if kind == "none":
        return None
    if kind not in ("bwrap", "unshare"):
        return f"unknown isolation {kind!r}"
    if kind not in _probe_cache:
        if shutil.which(kind) is None:
            package = "bubblewrap" if kind == "bwrap" else "util-linux"
            problem: str | None = f"{kind!r} is not installed (package {package})"
        elif kind == "bwrap":
            problem = _probe(["bwrap", *_bwrap_args(), "/bin/true"])
        else:
            uid = os.geteuid() if os.geteuid() else UID_BASE
            cfg = {"uid": uid, "gid": uid if uid == UID_BASE else os.getegid(), "tmp_mb": 1}
            problem = _probe(_unshare_command(cfg, "import os"))
        _probe_cache[kind] = problem
    return _probe_cache[kind]


def isolation_available(kind: str) -> bool:
    """Whether ``kind`` ("bwrap" or "unshare") can start a sandbox on this machine."""
    return isolation_problem(kind) is None


def _unshare_command(cfg: dict[str, Any], runner_source: str) -> list[str]:
    """``unshare`` into fresh namespaces, build the slot's root there, run the runner in it."""
    flags = ["--mount", "--pid", "--fork", "--kill-child", "--net", "--ipc", "--uts",
             "--propagation", "private"]  # fmt: skip
    if os.geteuid() != 0:  # a user namespace of our own, where we are root
        flags = ["--user", "--map-root-user", *flags]
    setup = {
        **cfg,
        "ro_paths": system_ro_paths(),
        "hide": package_dirs(),
        "python": python_runtime(),
        "unshare": shutil.which("unshare") or "unshare",
        "nested_user": os.geteuid() != 0,
    }
    rootfs = [python_runtime(), "-I", "-S", "-c", ROOTFS_PATH.read_text(encoding="utf-8")]
    return ["unshare", *flags, *rootfs, json.dumps(setup), runner_source]


def package_dirs() -> list[str]:
    """Installed-package folders (site-packages, dist-packages) inside the read-only paths.

    The sandbox hides them: candidates run with ``-I -S`` (no third-party imports) and
    package data may hold the tasks' tests.
    """
    import glob

    ro = [os.path.realpath(p) for p in system_ro_paths()]
    found: list[str] = []
    roots = dict.fromkeys(["/usr", "/usr/local", os.path.realpath(sys.base_prefix)])
    patterns = [f"{r}/lib*/python3*/{d}" for r in roots for d in ("site-packages", "dist-packages")]
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            real = os.path.realpath(path)
            inside = any(real.startswith(q.rstrip("/") + "/") for q in ro)
            if inside and os.path.isdir(real) and real not in found:
                found.append(real)
    return found


def _bwrap_supports(option: str) -> bool:
    if option not in _probe_cache:
        try:
            text = subprocess.run(["bwrap", "--help"], capture_output=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            text = b""
        _probe_cache[option] = None if option.encode() in text else "unsupported"
    return _probe_cache[option] is None


def _bwrap_args(tmp_mb: int = 64) -> list[str]:
    args = ["--unshare-pid", "--as-pid-1", "--unshare-net", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try"]  # fmt: skip
    # no --die-with-parent: it tracks the *thread* that started bwrap, and pool threads come
    # and go; the runner exits on end of input when this process dies.
    if os.geteuid() == 0:  # the runner drops each candidate to a uid of its own
        for cap in _CAPS:
            args += ["--cap-add", cap]
    else:  # a user namespace holding only our own uid, and no capabilities in it
        args += ["--unshare-user"]
        if _bwrap_supports("--disable-userns"):
            args += ["--disable-userns"]
    made: set[str] = set()
    for path in system_ro_paths():
        parts = path.strip("/").split("/")[:-1]
        for i in range(len(parts)):  # parents readable by the candidate uid (bwrap: 0700)
            parent = "/" + "/".join(parts[: i + 1])
            if parent not in made:
                made.add(parent)
                args += ["--perms", "0755", "--dir", parent]
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        else:
            args += ["--ro-bind", path, path]
    for path in package_dirs():
        args += ["--size", "4096", "--tmpfs", path, "--remount-ro", path]
    # the root and /dev are read-only before the writable (size-bounded) /tmp and /dev/shm go
    # on top: bwrap's remount also covers the mounts already below the path
    args += ["--dir", "/etc", "--dir", "/tmp", "--dir", "/proc", "--dev", "/dev", "--remount-ro", "/dev",
             "--remount-ro", "/"]  # fmt: skip
    args += ["--proc", "/proc", "--size", str(max(1, tmp_mb // 4) << 20), "--tmpfs", "/dev/shm"]
    return args + ["--size", str(tmp_mb << 20), "--tmpfs", "/tmp", "--chdir", "/"]


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        log.warning(message)


class _Slot:
    """One warm runner process."""

    uid: int = -1

    def __init__(self, cmd: list[str], group: _cgroup.Cgroup | None = None, overhead_mb: int = 0):
        self._err = tempfile.TemporaryFile()
        self.group, self.overhead_mb, self._memory_limit = group, overhead_mb, 0
        procs = group.procs_files() if group is not None else []

        def join_group() -> None:  # runs in the child before exec: all its descendants follow
            for path in procs:
                with open(path, "w") as fh:
                    fh.write(str(os.getpid()))

        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._err,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
                start_new_session=True,
                close_fds=True,
                cwd="/",
                preexec_fn=join_group if procs else None,
            )
        except OSError as err:
            raise SandboxError(f"cannot start sandbox runner {cmd[0]!r}: {err}") from err
        try:
            hello = read_frame(self.proc.stdout.fileno(), time.monotonic() + 30)
        except SandboxError as err:
            self.kill()
            raise SandboxError(f"sandbox runner failed to start: {err}; {self.stderr()}") from err
        if not hello.get("ready"):
            self.kill()
            raise SandboxError(f"sandbox runner said {hello!r}")

    def stderr(self) -> str:
        self._err.seek(0)
        return self._err.read()[-2000:].decode("utf-8", "replace").strip()

    def call(self, request: dict[str, Any], share: int = 1) -> dict[str, Any]:
        if self.group is not None:
            self._bound(int(request["memory_mb"]), share)
        try:
            self.proc.stdin.write(encode_frame(request))
            self.proc.stdin.flush()
        except OSError as err:
            raise SandboxError(f"sandbox runner is gone: {err}") from err
        deadline = time.monotonic() + request_deadline(request)
        return read_frame(self.proc.stdout.fileno(), deadline)

    def _bound(self, memory_mb: int, share: int) -> None:
        """Memory limit of the slot: the test's limit plus the runner's, and never more than
        this slot's share of what the enclosing cgroups have left."""
        limit = (memory_mb + self.overhead_mb) << 20
        try:
            room = self.group.headroom("memory")
            if room is not None:
                room -= max(32 << 20, room // 8)  # the judge's own growth
                limit = min(limit, self.group.usage("memory") + max(0, room) // share)
            if limit != self._memory_limit:
                self.group.set_memory(limit)
                self._memory_limit = limit
        except OSError as err:
            raise SandboxError(f"cannot set the slot's memory limit: {err}") from err

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, 9)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin, self.proc.stdout, self._err):
            try:
                f.close()
            except OSError:
                pass
        if self.group is not None:
            self.group.remove()


class LocalSandbox(Sandbox):
    """A pool of isolated runner processes on this machine.

    Args:
        workers: slots that run in parallel (default: the number of CPUs).
        isolation: ``"auto"`` (bubblewrap, else ``unshare``), or one of ``"bwrap"``,
            ``"unshare"``, ``"none"`` (no isolation: only when chosen explicitly).
        nproc: process limit per candidate uid (``RLIMIT_NPROC``).
        tmp_mb: size of the private ``/tmp`` of each slot.
        file_size_mb: largest file a candidate may write.
        cgroup: put each slot in a memory + pids cgroup where this machine lets us (the
            bound on a whole test: all its processes and the files it writes to ``/tmp``
            share ``memory_limit_mb``, plus 48 MiB for the runner); rlimits alone bound
            each process otherwise.

    Raises:
        ValueError: for a bad argument.
        SandboxError: when the isolation asked for (for ``"auto"``: bubblewrap and
            ``unshare``) cannot start here; the message says why and how to fix it.
    """

    def __init__(
        self,
        workers: int | None = None,
        *,
        isolation: str = "auto",
        nproc: int = 32,
        tmp_mb: int = 64,
        file_size_mb: int = 16,
        cgroup: bool = True,
    ):
        if isolation not in ISOLATIONS:
            raise ValueError(f"isolation must be one of {ISOLATIONS}, isolation: {isolation!r}")
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, workers: {workers!r}")
        self.workers = workers or os.cpu_count() or 1
        self.isolation = self._choose(isolation)
        self.nproc, self.tmp_mb, self.file_size_mb = nproc, tmp_mb, file_size_mb
        self.use_cgroup = cgroup
        self._lock = threading.Lock()
        self._reset_pool()

    @staticmethod
    def _choose(isolation: str) -> str:
        if isolation == "none":
            _warn_once(
                "none",
                "r1envs LocalSandbox: isolation='none': NO NAMESPACE ISOLATION: candidate code "
                "sees this machine's files and network"
                + ("" if os.geteuid() == 0 else " and runs as this user"),
            )
            return isolation
        kinds = ("bwrap", "unshare") if isolation == "auto" else (isolation,)
        problems = {kind: isolation_problem(kind) for kind in kinds}
        for kind in kinds:
            if problems[kind] is None:
                return kind
        tried = "; ".join(f"{kind}: {problem}" for kind, problem in problems.items())
        raise SandboxError(
            f"LocalSandbox(isolation={isolation!r}): no isolation can start on this machine "
            f"({tried}). To fix: install bubblewrap (apt-get install bubblewrap) and, unless "
            "running as root, allow unprivileged user namespaces (sysctl "
            "user.max_user_namespaces=15000, kernel.unprivileged_userns_clone=1 where it "
            "exists, kernel.apparmor_restrict_unprivileged_userns=0 on Ubuntu), or use "
            "DockerSandbox; or pass isolation='none' to run candidates without isolation "
            "(they then see this machine's files and network)."
        )

    def _reset_pool(self) -> None:
        self._pid = os.getpid()
        self._idle: queue.LifoQueue[_Slot] = queue.LifoQueue()
        self._started = 0
        self._all: list[_Slot] = []

    def _command(self, uid: int) -> list[str]:
        root = os.geteuid() == 0
        isolated = self.isolation in ("bwrap", "unshare")
        cfg = {
            "uid": uid,
            "gid": uid if root else os.getegid(),
            "nproc": self.nproc,
            "fsize": self.file_size_mb << 20,
            "tmp_mb": self.tmp_mb,
            # kill(-1) as init of the slot's own pid namespace, or as a candidate uid that
            # is ours alone; without either only the test's process group is killed
            "sweep": root or isolated,
            "pid_ns": isolated,  # the runner is pid 1 there
            "private_tmp": isolated,  # the runner empties the slot's own /tmp and /dev/shm
        }
        runner = [python_runtime(), "-I", "-S", "-c", harness_source(), json.dumps(cfg)]
        if self.isolation == "bwrap":
            return ["bwrap", *_bwrap_args(self.tmp_mb), *runner]
        if self.isolation == "unshare":
            return _unshare_command(cfg, harness_source())
        return runner

    def _acquire(self) -> _Slot:
        while True:
            with self._lock:
                if os.getpid() != self._pid:  # forked: the parent's slots are not ours
                    self._reset_pool()
                slot = self._idle_slot()
                if slot is not None:
                    return slot
                start = self._started < self.workers
                if start:
                    self._started += 1
            if start:
                return self._start_slot()
            try:
                slot = self._idle.get(timeout=0.1)
            except queue.Empty:
                continue
            if slot.alive():
                return slot
            with self._lock:
                self._discard(slot)

    def _idle_slot(self) -> _Slot | None:  # called with the lock held
        while True:
            try:
                slot = self._idle.get_nowait()
            except queue.Empty:
                return None
            if slot.alive():
                return slot
            self._discard(slot)

    def _start_slot(self) -> _Slot:
        group = _cgroup.create("r1sandbox") if self.use_cgroup else None
        if group is not None:
            try:
                room = group.headroom("pids")
                pids = self.nproc + 16
                group.set_pids(pids if room is None else max(8, min(pids, room // self.workers)))
            except OSError:
                group.remove()
                group = None
        uid = UID_BASE + ((os.getpid() & 0xFFFF) << 10) + next(_uid_counter) % 1024
        if os.geteuid() != 0:
            uid = os.geteuid()
        try:
            slot = _Slot(self._command(uid), group, 48)
        except SandboxError:
            if group is not None:
                group.remove()
            with self._lock:
                self._started -= 1
            raise
        slot.uid = uid
        with self._lock:
            self._all.append(slot)
        return slot

    def _release(self, slot: _Slot, ok: bool) -> None:
        if ok and slot.alive():
            self._idle.put(slot)
            return
        with self._lock:
            self._discard(slot)

    def _discard(self, slot: _Slot) -> None:  # called with the lock held
        slot.kill()
        if slot in self._all:
            self._all.remove(slot)
            self._started -= 1

    def execute(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """Run the tests of ``request`` in one slot (see :class:`Sandbox`)."""
        slot = self._acquire()
        ok = False
        try:
            reply = slot.call(request, self.workers)
            ok = True
        except SandboxError as err:
            raise SandboxError(f"{err}; runner stderr: {slot.stderr()!r}") from err
        finally:
            self._release(slot, ok)
        if "error" in reply:
            raise SandboxError(str(reply["error"]))
        return reply["results"]

    @property
    def uids(self) -> list[int]:
        """The candidate uids of the running slots (each slot has its own when root)."""
        with self._lock:
            return [slot.uid for slot in self._all]

    def close(self) -> None:
        """Stop every runner of this process."""
        with self._lock:
            slots = list(self._all) if os.getpid() == self._pid else []
            self._reset_pool()
        for slot in slots:
            slot.kill()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
