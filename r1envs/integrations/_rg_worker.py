"""A helper process that scores answers with one reasoning-gym generator, time-bounded.

``python -m r1envs.integrations._rg_worker`` reads length-prefixed pickled messages on
stdin: first ``(name, seed, size, config)``, answered by ``("ready", None)`` once the
generator is built, then ``(answer, entry)`` requests, each answered by ``("ok", score)`` or
``("err", message)``. :class:`ScoreWorker` (the parent side) kills and restarts the process
when a reply is late, which bounds the time of any scorer (some evaluate the answer with
sympy: ``99999999!`` never returns) from any thread or daemonic process, without signals.
The process caps its own address space so a runaway answer cannot take the host's memory.
"""

from __future__ import annotations

import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import IO, Any

MEMORY_LIMIT_BYTES = 3 * 1024**3
_HEADER = struct.Struct("<Q")


def _write(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _read(stream: IO[bytes]) -> Any:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (n,) = _HEADER.unpack(head)
    return pickle.loads(stream.read(n))


def main() -> None:
    """The worker loop (runs in the helper process)."""
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything the library prints goes to stderr, not into the protocol
    sys.stdout = sys.stderr
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    import reasoning_gym

    stdin = sys.stdin.buffer
    name, seed, size, config = _read(stdin)
    dataset = reasoning_gym.create_dataset(name, seed=seed, size=size, **config)
    _write(proto_out, ("ready", None))
    while True:
        request = _read(stdin)
        if request is None:
            return
        answer, entry = request
        try:
            reply: tuple[str, Any] = ("ok", float(dataset.score_answer(answer, entry)))
        except BaseException as err:  # MemoryError, RecursionError included
            reply = ("err", f"{type(err).__name__}: {err}"[:500])
        _write(proto_out, reply)


def _kill(proc: subprocess.Popen[bytes], owner_pid: int) -> None:
    if os.getpid() == owner_pid and proc.poll() is None:
        proc.kill()
        proc.wait()


class ScoreTimeout(Exception):
    """The scorer did not answer within its time budget."""


class ScoreWorker:
    """The parent side: one helper process per generator config, restarted after a timeout.

    Args:
        spec: ``(name, seed, size, config)`` of the generator.
        start_timeout: seconds allowed for the process to import reasoning-gym and build
            the generator.
    """

    def __init__(self, spec: tuple[str, int, int, dict[str, Any]], start_timeout: float = 120.0):
        self.spec = spec
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._pid = os.getpid()
        self._ready = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Spawn the helper process without waiting for it to be ready."""
        # the helper imports this very package, wherever it was imported from
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", "r1envs.integrations._rg_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._proc, self._pid, self._ready = proc, os.getpid(), False
        weakref.finalize(self, _kill, proc, self._pid)
        _write(proc.stdin, self.spec)

    def wait_ready(self) -> None:
        """Block until the helper process has built the generator (starting it if needed).

        Raises:
            RuntimeError: if it fails to start.
        """
        with self._lock:
            self._ensure_ready()

    def _ensure_ready(self) -> None:
        if self._proc is None or self._pid != os.getpid() or self._proc.poll() is not None:
            self._proc = None  # after a fork, never share the parent's pipes
            self.start()
        if not self._ready:
            reply = self._receive(time.monotonic() + self.start_timeout)
            if reply != ("ready", None):
                self.close()
                raise RuntimeError(f"reasoning-gym scorer did not start: {reply!r}")
            self._ready = True

    def _receive(self, deadline: float) -> Any:
        proc = self._proc
        assert proc is not None and proc.stdout is not None, "worker not started"
        fd = proc.stdout.fileno()
        buf = b""
        need = _HEADER.size
        header_done = False
        while True:
            while len(buf) < need:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    self.close()
                    raise ScoreTimeout
                chunk = os.read(fd, need - len(buf))
                if not chunk:
                    self.close()
                    raise RuntimeError("reasoning-gym scorer process died")
                buf += chunk
            if header_done:
                return pickle.loads(buf)
            (need,) = _HEADER.unpack(buf)
            buf, header_done = b"", True

    def score(self, answer: str, entry: dict[str, Any], timeout: float) -> tuple[str, Any]:
        """``("ok", score)`` or ``("err", message)``.

        Raises:
            ScoreTimeout: when no reply came within ``timeout`` seconds (the process is
                killed; the next call starts a fresh one).
        """
        with self._lock:
            self._ensure_ready()
            assert self._proc is not None and self._proc.stdin is not None
            try:
                _write(self._proc.stdin, (answer, entry))
            except (BrokenPipeError, OSError):
                self.close()
                raise RuntimeError("reasoning-gym scorer process died") from None
            try:
                return self._receive(time.monotonic() + timeout)
            except ScoreTimeout:
                self.start()  # warm up the next one while the caller moves on
                raise

    def close(self) -> None:
        """Kill the helper process (if this process started it)."""
        proc, self._proc, self._ready = self._proc, None, False
        if proc is not None and self._pid == os.getpid():
            _kill(proc, self._pid)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()


if __name__ == "__main__":
    main()
