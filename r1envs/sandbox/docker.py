"""DockerSandbox: the same runner inside pooled, locked-down containers (docker SDK).

Each container is started from the sandbox image (``scripts/docker_setup.sh`` builds it with
``docker import``, no registry) with ``network_mode="none"``, memory = memory + swap, a pids
limit, a read-only root with a small tmpfs ``/tmp``, a non-root user, ``cap_drop=["ALL"]`` and
``no-new-privileges``; its PID 1 only reaps orphans. A request is one ``exec`` of the runner
(:mod:`r1envs.sandbox._harness`) fed through the exec's stdin; the runner forks one child
per test, and after each test kills every process of the container's user and wipes
``/tmp``, so the container is clean for the next request. A container whose runner did not
finish cleanly is discarded. Containers are warm and pooled; ``base_url`` may name several
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
_REAPER = (
    "import os, signal\n"
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
        api = self.client.api
        cmd = ["python3", "-I", "-S", "-c", harness_source(), cfg]
        try:
            exec_id = api.exec_create(self.obj.id, cmd, stdin=True, user=f"{SANDBOX_UID}")["Id"]
            sock = api.exec_start(exec_id, socket=True)
        except Exception as err:  # noqa: BLE001
            raise SandboxError(f"docker exec failed: {err}") from err
        raw = getattr(sock, "_sock", sock)
        deadline = time.monotonic() + request_deadline(request)
        try:
            raw.sendall(encode_frame(request))
            raw.shutdown(socket.SHUT_WR)
            stdout = _read_stream(raw, deadline)
        except (OSError, TimeoutError) as err:
            raise SandboxError(f"sandbox container did not answer: {err}") from err
        finally:
            raw.close()
        frames = _frames(stdout)
        if not frames or not frames[0].get("ready"):
            why = frames[0].get("error") if frames else "no answer"
            raise SandboxError(f"the runner did not start in the container: {why}")
        if len(frames) < 2:  # started, then killed mid-request: the candidate's doing
            n = len(request["tests"])
            return {"results": [{"status": "killed", "detail": "runner killed"}] * n, "dirty": True}
        return frames[1]

    def remove(self) -> None:
        try:
            self.obj.remove(force=True)
        except Exception:  # noqa: BLE001, S110 - already gone
            pass


def _read_stream(raw: socket.socket, deadline: float, limit: int = 256 << 20) -> bytes:
    """Demultiplex the exec's attach stream; keep stdout."""
    buf, out = b"", bytearray()
    while True:
        raw.settimeout(max(0.01, deadline - time.monotonic()))
        if time.monotonic() > deadline:
            raise TimeoutError("deadline passed")
        chunk = raw.recv(1 << 20)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 8:
            kind, size = buf[0], struct.unpack(">I", buf[4:8])[0]
            if len(buf) < 8 + size:
                break
            if kind == 1:
                out += buf[8 : 8 + size]
            buf = buf[8 + size :]
        if len(out) > limit:
            raise OSError("runner output too large")
    return bytes(out)


def _frames(data: bytes) -> list[dict[str, Any]]:
    frames, i = [], 0
    while i + 4 <= len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        if i + 4 + n > len(data):
            break
        frames.append(json.loads(data[i + 4 : i + 4 + n].decode("utf-8")))
        i += 4 + n
    return frames


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
            {"uid": SANDBOX_UID, "gid": SANDBOX_UID, "nproc": nproc, "sweep": True}
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
