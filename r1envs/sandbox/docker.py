"""DockerSandbox: the same runner inside pooled, locked-down containers (docker SDK).

Each container is started from the sandbox image (``scripts/docker_setup.sh`` builds it with
``docker import``, no registry) with ``network_mode="none"``, memory = memory + swap, a pids
limit, a read-only root with a small tmpfs ``/tmp``, a non-root user, ``cap_drop=["ALL"]`` and
``no-new-privileges``; its PID 1 only reaps orphans. A request is one ``exec`` of the runner
(:mod:`r1envs.sandbox._harness`) fed through the exec's stdin; the runner forks one child
per test, and after each test kills every process of the container's user and wipes
``/tmp`` and ``/dev/shm``, so the container is clean for the next request. A container whose
runner did not finish cleanly is discarded. Containers are warm and pooled; ``base_url`` may name several
engines (``["unix:///var/run/docker.sock", "tcp://gpu-box:2375"]``), used as one pool.

Inside a container the candidate shares the runner's uid (no capabilities to switch): it can
kill its runner, which fails its tests (never a pass, never an infrastructure error); it
cannot learn expected values, which never enter the container.
"""

from __future__ import annotations

import itertools
import json
import queue
import socket
import struct
import threading
import time
from typing import Any

from r1envs.sandbox.base import (
    Sandbox,
    SandboxError,
    encode_frame,
    harness_source,
    request_deadline,
)

DEFAULT_IMAGE = "r1-sandbox:latest"
SANDBOX_UID = 65534
_REAPER = (  # not dumpable: candidates share its uid, yet cannot ptrace it or open its memory
    "import ctypes, os, signal\n"
    "ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\n"  # PR_SET_DUMPABLE 0
    "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})\n"
    "while True:\n"
    "    try:\n"
    "        os.waitpid(-1, 0)\n"
    "    except ChildProcessError:\n"
    "        signal.sigtimedwait({signal.SIGCHLD}, 1.0)\n"
)


def _client(base_url: str | None) -> Any:
    import docker

    return docker.from_env() if base_url is None else docker.DockerClient(base_url=base_url)


def docker_unavailable_reason(
    image: str = DEFAULT_IMAGE, base_url: str | None = None
) -> str | None:
    """``None`` when an engine answers and has ``image``; else why not."""
    try:
        import docker
    except ImportError:
        return "the docker SDK is not installed (pip install 'r1[code]')"
    try:
        client = _client(base_url)
        client.ping()
    except Exception as err:  # noqa: BLE001 - any failure means "no engine"
        return f"no Docker engine answers ({type(err).__name__}: {str(err)[:120]})"
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        return f"image {image!r} not built (run scripts/docker_setup.sh)"
    except Exception as err:  # noqa: BLE001
        return f"cannot inspect image {image!r}: {err}"
    return None


class _Container:
    def __init__(self, client: Any, memory_mb: int, sandbox: DockerSandbox):
        self.client, self.memory_mb = client, memory_mb
        self.runner: _Runner | None = None
        try:
            self.obj = client.containers.run(
                sandbox.image,
                ["python3", "-I", "-S", "-c", _REAPER],
                detach=True,
                network_mode="none",
                mem_limit=f"{memory_mb}m",
                memswap_limit=f"{memory_mb}m",
                pids_limit=sandbox.pids_limit,
                read_only=True,
                tmpfs={"/tmp": f"rw,nosuid,nodev,size={sandbox.tmp_mb}m,mode=1777"},
                user=f"{SANDBOX_UID}:{SANDBOX_UID}",
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                environment={},
                working_dir="/tmp",
                labels={"r1.sandbox": "1"},
                nano_cpus=int(sandbox.cpus * 1e9) if sandbox.cpus else None,
            )
        except Exception as err:  # noqa: BLE001 - engine errors of every kind
            raise SandboxError(f"cannot start a sandbox container: {err}") from err

    def call(self, request: dict[str, Any], cfg: str) -> dict[str, Any]:
        if self.runner is None:
            self.runner = _Runner(self.client, self.obj.id, cfg)
        try:
            self.runner.send(request)
        except OSError as err:
            raise SandboxError(f"sandbox runner is gone: {err}") from err
        reply = self.runner.next_frame(time.monotonic() + request_deadline(request))
        if reply is None:  # started, then killed mid-request: the candidate's doing
            n = len(request["tests"])
            return {"results": [{"status": "killed", "detail": "runner killed"}] * n, "dirty": True}
        return reply

    def remove(self) -> None:
        if self.runner is not None:
            self.runner.close()
        try:
            self.obj.remove(force=True)
        except Exception:  # noqa: BLE001, S110 - already gone
            pass


class _Runner:
    """One long-lived ``docker exec`` of the runner, spoken to through its attach socket."""

    def __init__(self, client: Any, container_id: str, cfg: str):
        cmd = ["python3", "-I", "-S", "-c", harness_source(), cfg]
        try:
            exec_id = client.api.exec_create(container_id, cmd, stdin=True, user=f"{SANDBOX_UID}")
            sock = client.api.exec_start(exec_id["Id"], socket=True)
        except Exception as err:  # noqa: BLE001
            raise SandboxError(f"docker exec failed: {err}") from err
        self.raw: socket.socket = getattr(sock, "_sock", sock)
        self._mux = b""
        self._out = bytearray()
        hello = self.next_frame(time.monotonic() + 60)
        if not hello or not hello.get("ready"):
            self.close()
            why = hello.get("error") if hello else "no answer"
            raise SandboxError(f"the runner did not start in the container: {why}")

    def send(self, request: dict[str, Any]) -> None:
        self.raw.sendall(encode_frame(request))

    def next_frame(self, deadline: float) -> dict[str, Any] | None:
        """The next frame on the runner's stdout; ``None`` when the stream ended.

        Raises:
            SandboxError: when nothing complete arrives before ``deadline``.
        """
        while True:
            if len(self._out) >= 4:
                (n,) = struct.unpack(">I", self._out[:4])
                if len(self._out) >= 4 + n:
                    body = bytes(self._out[4 : 4 + n])
                    del self._out[: 4 + n]
                    try:
                        return json.loads(body.decode("utf-8"))
                    except ValueError as err:
                        raise SandboxError(f"malformed sandbox reply: {err}") from err
            wait = deadline - time.monotonic()
            if wait <= 0:
                raise SandboxError("sandbox container did not answer in time")
            try:
                self.raw.settimeout(wait)
                chunk = self.raw.recv(1 << 20)
            except TimeoutError as err:
                raise SandboxError("sandbox container did not answer in time") from err
            except OSError:
                return None
            if not chunk:
                return None
            self._demux(chunk)

    def _demux(self, chunk: bytes) -> None:
        """Keep the stdout payloads of the attach stream's 8-byte-header frames."""
        self._mux += chunk
        while len(self._mux) >= 8:
            size = struct.unpack(">I", self._mux[4:8])[0]
            if len(self._mux) < 8 + size:
                return
            if self._mux[0] == 1:
                self._out += self._mux[8 : 8 + size]
            self._mux = self._mux[8 + size :]

    def close(self) -> None:
        try:
            self.raw.close()
        except OSError:
            pass


class DockerSandbox(Sandbox):
    """A pool of warm, locked-down containers on one or several Docker engines.

    Args:
        workers: containers that run in parallel (across all engines).
        image: the sandbox image (built by ``scripts/docker_setup.sh``).
        base_url: an engine URL, a list of them (one pool), or ``None`` for the environment's.
        memory_mb: container memory (= memory + swap); raised per request when a problem
            needs more than ``memory_limit_mb + 128``.
        pids_limit: processes per container.
        tmp_mb: size of the container's tmpfs ``/tmp``.
        cpus: CPU quota per container (``None``: no quota).
        nproc: ``RLIMIT_NPROC`` per test.
    """

    isolation = "docker"

    def __init__(
        self,
        workers: int = 2,
        *,
        image: str = DEFAULT_IMAGE,
        base_url: str | list[str] | None = None,
        memory_mb: int = 512,
        pids_limit: int = 64,
        tmp_mb: int = 64,
        cpus: float | None = 1.0,
        nproc: int = 32,
    ):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, workers: {workers!r}")
        urls = base_url if isinstance(base_url, list) else [base_url]
        if not urls:
            raise ValueError("base_url must name at least one engine, base_url: []")
        self.workers, self.image, self.memory_mb = workers, image, memory_mb
        self.pids_limit, self.tmp_mb, self.cpus, self.nproc = pids_limit, tmp_mb, cpus, nproc
        self._urls = urls
        self._clients: dict[str | None, Any] = {}
        self._next_url = itertools.cycle(urls)
        self._idle: queue.LifoQueue[_Container] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._started = 0
        self._all: list[_Container] = []
        self._cfg = json.dumps(
            # the container's /tmp and /dev/shm are its own: the runner empties them
            {
                "uid": SANDBOX_UID,
                "gid": SANDBOX_UID,
                "nproc": nproc,
                "sweep": True,
                "private_tmp": True,
            }
        )

    def _client_for(self, url: str | None) -> Any:
        with self._lock:
            if url not in self._clients:
                try:
                    self._clients[url] = _client(url)
                except Exception as err:  # noqa: BLE001
                    raise SandboxError(
                        f"cannot reach Docker engine {url or '(default)'}: {err}"
                    ) from err
            return self._clients[url]

    def _acquire(self, memory_mb: int) -> _Container:
        while True:
            with self._lock:
                start = self._started < self.workers and self._idle.empty()
                if start:
                    self._started += 1
            if start:
                try:
                    box = _Container(self._client_for(next(self._next_url)), memory_mb, self)
                except SandboxError:
                    with self._lock:
                        self._started -= 1
                    raise
                with self._lock:
                    self._all.append(box)
                return box
            try:
                box = self._idle.get(timeout=0.1)
            except queue.Empty:
                continue
            if box.memory_mb >= memory_mb:
                return box
            self._discard(box)  # too small for this problem: replace it

    def _discard(self, box: _Container) -> None:
        box.remove()
        with self._lock:
            if box in self._all:
                self._all.remove(box)
                self._started -= 1

    def execute(self, request: dict[str, Any]) -> list[dict[str, Any]]:
        """Run the tests of ``request`` in one pooled container (see :class:`Sandbox`)."""
        need = max(self.memory_mb, int(request["memory_mb"]) + 128)
        box = self._acquire(need)
        clean = False
        try:
            reply = box.call(request, self._cfg)
            clean = not reply.get("dirty")
        finally:
            if clean:
                self._idle.put(box)
            else:
                self._discard(box)
        if "error" in reply:
            raise SandboxError(str(reply["error"]))
        return reply["results"]

    def close(self) -> None:
        """Remove every container of this pool."""
        with self._lock:
            boxes, self._all = list(self._all), []
            self._started = 0
            self._idle = queue.LifoQueue()
        for box in boxes:
            box.remove()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass
