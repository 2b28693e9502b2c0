"""Grading a batch of env steps concurrently, each within a time limit.

:class:`Grader` steps the envs of a batch's live episodes in a bounded pool and returns one
:class:`Outcome` per step, in order. A step that raises, or outlives ``timeout`` seconds,
costs *that* episode an error; the batch goes on and nothing waits for the stuck step.

Two kinds of pool:

* **threads** — for envs whose grading mostly waits: code envs (the tests run in sandbox
  processes; the shared sandbox's slots run in parallel), remote judges, math (sympy runs in
  :mod:`r1envs.verifiers.math`'s helper processes). The episode's own env object is stepped
  (multi-turn envs keep their state). A step that times out is abandoned: its thread is a
  daemon, its env is dropped (never reused). Envs whose class has a ``step_many(envs,
  actions)`` classmethod (e.g. :class:`r1agent.rewards.chat_env.ChatEnv`, which scores with
  judges) are stepped together, one call per class and id, so judges see whole batches.
* **processes** — for grading that holds the GIL. A worker process cannot step the parent's
  env object, so it makes its own env (``gym.make(env_id, **kwargs)``, kept for reuse),
  resets it with the episode's seed and replays the episode's earlier turns before stepping
  the last one: deterministic envs end in the same state, multi-turn included (earlier
  turns are graded again, which costs time). Workers are plain ``python`` processes that
  load this file alone (no torch): ``gymnasium`` and ``r1envs`` are their only imports; an
  id registered at run time travels as its ``EnvSpec``. A worker whose step times out is
  killed (its process group with it) and replaced.

``auto`` uses threads. Measured with ``bench/parallel_rewards.py`` on a shared 2-core
machine: ``r1/Code-v0`` (the sandbox does the work) about 2x faster than one after another
with either kind (bounded by the sandbox's slots); ``r1/Math-v0`` (a few milliseconds a
step, the symbolic part already in sympy helper processes) 1.2x to 2x with either kind,
threads and processes within the noise of each other; threads need no second set of sympy
helpers per worker and replay nothing. Processes remain
the choice for an env whose own Python code is slow (``grading_pool: process``).

An env id is made in the parent's :class:`~r1agent.rollout.episodes.EnvPool` (threads)
or in the worker (processes); its ``reset`` runs in the pool too, under the same time
limit. ``workers=0`` keeps the loop of before: each step in the calling thread, no limit.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

import r1envs  # noqa: F401  (registers the r1 ids, also in worker processes)

__all__ = ["DEFAULT_TIMEOUT", "POOLS", "Grader", "Job", "Outcome", "default_workers", "serve"]

#: ``grading_pool`` choices.
POOLS = ("auto", "thread", "process")
#: Default seconds one step may take before its episode fails.
DEFAULT_TIMEOUT = 300.0
#: Seconds a worker process may take to start (imports, before its first job).
STARTUP_S = 120.0

#: Longest single wait of the pools' loops (they wake and look again; ``timeout`` may be inf).
_MAX_WAIT = 3600.0

StepResult = tuple[Any, Any, Any, Any, dict[str, Any]]


@dataclass
class Job:
    """One env step to grade.

    Attributes:
        env_id: the env's id.
        seed: the episode's reset seed.
        history: the policy's turns so far; the last one is graded now.
        env: the episode's env when it already has one (a live multi-turn episode).
    """

    env_id: str
    seed: int
    history: list[str]
    env: Any = None


@dataclass
class Outcome:
    """What one step gave.

    Attributes:
        result: ``env.step``'s 5-tuple, or ``None`` when the step failed.
        error: why it failed (``"TypeName: message"`` for an exception, or a timeout).
        env: the env that stepped (threads; hold or release it), ``None`` otherwise.
        abandoned: the step still runs in a thread that was given up on: drop ``env``.
    """

    result: StepResult | None = None
    error: str | None = None
    env: Any = None
    abandoned: bool = False


def default_workers(pool: str) -> int:
    """Auto-sized pools: 4 threads per CPU (they mostly wait), or one process per CPU."""
    cpus = os.cpu_count() or 1
    return max(4, 4 * cpus) if pool == "thread" else max(1, cpus)


def check_settings(workers: int | None, timeout: float, pool: str) -> None:
    """Validate the grading settings.

    Raises:
        ValueError: naming the bad value.
    """
    if workers is not None and (isinstance(workers, bool) or workers < 0):
        raise ValueError(f"grading_workers must be >= 0 (0: one after another), got {workers!r}")
    if not timeout > 0 or timeout != timeout:
        raise ValueError(f"grading_timeout must be > 0 seconds, got {timeout!r}")
    if pool not in POOLS:
        raise ValueError(f"grading_pool must be one of {POOLS}, got {pool!r}")


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _timeout_error(timeout: float, env_id: str) -> str:
    return f"grading timed out after {timeout:g} s (env {env_id})"


class Grader:
    """A bounded pool that grades env steps (see the module doc).

    Args:
        acquire: ``acquire(env_id) -> env`` for episodes without an env yet (threads).
        env_kwargs: ``gym.make`` kwargs per env id (worker processes make their own envs).
        workers: pool size; ``None``: :func:`default_workers`; 0: one after another in this
            thread (no time limit, as a plain loop).
        timeout: seconds one step (or one ``step_many`` group) may take.
        pool: ``"auto"`` (threads), ``"thread"`` or ``"process"``.
    """

    def __init__(
        self,
        acquire: Callable[[str], Any],
        env_kwargs: dict[str, dict[str, Any]] | None = None,
        *,
        workers: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        pool: str = "auto",
    ) -> None:
        check_settings(workers, timeout, pool)
        self.acquire = acquire
        self.env_kwargs = env_kwargs or {}
        self.kind = "thread" if pool == "auto" else pool
        self.workers = default_workers(self.kind) if workers is None else workers
        self.timeout = float(timeout)
        self._procs: _ProcessPool | None = None

    def configure(self, workers: int | None, timeout: float, pool: str) -> None:
        """Change the settings (a process pool of another size restarts)."""
        check_settings(workers, timeout, pool)
        kind = "thread" if pool == "auto" else pool
        size = default_workers(kind) if workers is None else workers
        if self._procs is not None and (kind != "process" or size != self.workers):
            self._procs.close()
            self._procs = None
        self.kind, self.workers, self.timeout = kind, size, float(timeout)

    def grade(self, jobs: Sequence[Job]) -> list[Outcome]:
        """Step every job; one outcome per job, in order."""
        if not jobs:
            return []
        if self.workers == 0:
            return _grade_inline(self.acquire, jobs)
        if self.kind == "process":
            if self._procs is None:
                self._procs = _ProcessPool(self.workers)
            return self._procs.run(jobs, self.env_kwargs, self.timeout)
        return _grade_threads(self.acquire, jobs, self.workers, self.timeout)

    def close(self) -> None:
        """Stop the worker processes (threads need nothing)."""
        if self._procs is not None:
            self._procs.close()
            self._procs = None


# -- threads -------------------------------------------------------------------------------


def _step_one(env: Any, job: Job, fresh: bool) -> Outcome:
    """Reset a fresh env with the episode's seed, then step it."""
    try:
        if fresh:
            env.reset(seed=job.seed)
        return Outcome(result=env.step(job.history[-1]), env=env)
    except Exception as exc:  # a failing env masks this episode, training goes on
        return Outcome(error=_error(exc), env=env)


def _step_group(envs: list[Any], jobs: list[Job], fresh: list[bool]) -> list[Outcome]:
    """Envs of one class with ``step_many``: reset the fresh ones, then one ``step_many``."""
    out: list[Outcome | None] = [None] * len(envs)
    ok = []
    for k, (env, job) in enumerate(zip(envs, jobs, strict=True)):
        try:
            if fresh[k]:
                env.reset(seed=job.seed)
            ok.append(k)
        except Exception as exc:
            out[k] = Outcome(error=_error(exc), env=env)
    try:
        step_many = type(envs[ok[0]].unwrapped).step_many if ok else None
        results = step_many([envs[k].unwrapped for k in ok], [jobs[k].history[-1] for k in ok])
        if len(results) != len(ok):
            raise RuntimeError(f"step_many returned {len(results)} results for {len(ok)} envs")
        for k, r in zip(ok, results, strict=True):
            out[k] = Outcome(result=r, env=envs[k])
    except Exception as exc:
        for k in ok:
            out[k] = Outcome(error=_error(exc), env=envs[k])
    return [o if o is not None else Outcome(error="not graded") for o in out]


@dataclass
class _Units:
    """A batch for the thread pool: each job's env, and units of work over job indices (one
    job, or the jobs of one ``step_many`` class and id)."""

    jobs: Sequence[Job]
    envs: list[Any]
    fresh: list[bool]
    units: list[list[int]]
    failed: dict[int, Outcome]

    @classmethod
    def build(cls, acquire: Callable[[str], Any], jobs: Sequence[Job]) -> _Units:
        """Acquire an env for each job without one (here: the pool is not thread-safe)."""
        me = cls(jobs, [None] * len(jobs), [job.env is None for job in jobs], [], {})
        groups: dict[tuple[str, type], list[int]] = {}
        for i, job in enumerate(jobs):
            try:
                env = me.envs[i] = job.env if job.env is not None else acquire(job.env_id)
            except Exception as exc:
                me.failed[i] = Outcome(error=_error(exc))
                continue
            if callable(getattr(type(env.unwrapped), "step_many", None)):
                groups.setdefault((job.env_id, type(env.unwrapped)), []).append(i)
            else:
                me.units.append([i])
        me.units += list(groups.values())
        return me

    def run(self, u: int) -> list[Outcome]:
        """Grade unit ``u``."""
        idx = self.units[u]
        if len(idx) == 1:
            return [_step_one(self.envs[idx[0]], self.jobs[idx[0]], self.fresh[idx[0]])]
        pick = (
            [self.envs[i] for i in idx],
            [self.jobs[i] for i in idx],
            [self.fresh[i] for i in idx],
        )
        return _step_group(*pick)


def _grade_inline(acquire: Callable[[str], Any], jobs: Sequence[Job]) -> list[Outcome]:
    """One after another in this thread, each env stepped on its own."""
    out = []
    for job in jobs:
        try:
            env = job.env if job.env is not None else acquire(job.env_id)
        except Exception as exc:
            out.append(Outcome(error=_error(exc)))
            continue
        out.append(_step_one(env, job, job.env is None))
    return out


def _grade_threads(
    acquire: Callable[[str], Any], jobs: Sequence[Job], workers: int, timeout: float
) -> list[Outcome]:
    """At most ``workers`` units at once, each on a daemon thread, each within ``timeout``."""
    batch = _Units.build(acquire, jobs)
    out: list[Outcome | None] = [batch.failed.get(i) for i in range(len(jobs))]
    done: queue.SimpleQueue[tuple[int, list[Outcome]]] = queue.SimpleQueue()
    running: dict[int, float] = {}
    nxt = finished = 0
    while finished < len(batch.units):
        while nxt < len(batch.units) and len(running) < workers:
            u = nxt
            threading.Thread(
                target=lambda u=u: done.put((u, batch.run(u))), daemon=True, name="r1-grading"
            ).start()
            running[u] = time.monotonic()
            nxt += 1
        wait = min(min(running.values()) + timeout - time.monotonic(), _MAX_WAIT)
        try:
            u, res = done.get(timeout=max(wait, 0.0))
            late = []
        except queue.Empty:
            now = time.monotonic()
            u, res, late = -1, [], [v for v, t0 in running.items() if now - t0 >= timeout]
        if u in running:
            del running[u]
            finished += 1
            for i, o in zip(batch.units[u], res, strict=True):
                out[i] = o
        for v in late:  # given up on: its thread keeps running, its env is never reused
            del running[v]
            finished += 1
            for i in batch.units[v]:
                out[i] = Outcome(error=_timeout_error(timeout, jobs[i].env_id), abandoned=True)
    return [o if o is not None else Outcome(error="not graded") for o in out]


# -- processes -----------------------------------------------------------------------------

_BOOT = (
    "import importlib.util, sys\n"
    "spec = importlib.util.spec_from_file_location('_r1_grading_worker', sys.argv[1])\n"
    "mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)\n"
    "spec.loader.exec_module(mod)\n"
    "mod.serve()\n"
)


def _send(fd: int, obj: Any) -> None:
    data = obj if isinstance(obj, bytes) else pickle.dumps(obj)
    view = memoryview(struct.pack("<I", len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _recv(fd: int, deadline: float | None = None, raw: bool = False) -> Any:
    """One length-prefixed pickle from ``fd`` (``EOFError`` at end, ``TimeoutError`` late);
    ``raw``: its bytes, not unpickled."""

    def exact(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise TimeoutError
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return bytes(buf)

    (size,) = struct.unpack("<I", exact(4))
    data = exact(size)
    return data if raw else pickle.loads(data)


class _Worker:
    """One worker process (:func:`serve`) in its own process group."""

    def __init__(self) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _BOOT, os.path.abspath(__file__)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.fd_in, self.fd_out = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        self.ready = False

    def wait_ready(self) -> None:
        if not self.ready:
            if _recv(self.fd_out, time.monotonic() + STARTUP_S) != "ready":
                raise RuntimeError("grading worker sent no ready signal")
            self.ready = True

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(timeout=5)
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()  # type: ignore[union-attr]


class _ProcessPool:
    """``size`` worker processes; a job runs in one, a late one is killed and replaced."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: list[_Worker] = []

    def _workers(self, n: int) -> list[_Worker]:
        """``n`` ready workers (started together)."""
        fresh = [_Worker() for _ in range(max(0, n - len(self.idle)))]
        for w in fresh:
            try:
                w.wait_ready()
            except (EOFError, TimeoutError, RuntimeError, OSError) as exc:
                w.kill()
                raise RuntimeError(f"a grading worker process did not start: {exc!r}") from exc
        self.idle += fresh
        got, self.idle = self.idle[:n], self.idle[n:]
        return got

    def run(
        self, jobs: Sequence[Job], env_kwargs: dict[str, dict[str, Any]], timeout: float
    ) -> list[Outcome]:
        """Grade ``jobs`` (see :class:`Grader`)."""
        out: list[Outcome | None] = [None] * len(jobs)
        payloads: list[bytes | None] = []
        for i, job in enumerate(jobs):
            try:
                payloads.append(pickle.dumps(_payload(job, env_kwargs.get(job.env_id, {}))))
            except Exception as exc:  # e.g. a lambda in the kwargs: cannot reach a process
                payloads.append(None)
                out[i] = Outcome(error=f"cannot send env {job.env_id} to a worker: {_error(exc)}")
        pending = [i for i in range(len(jobs)) if payloads[i] is not None][::-1]
        busy: dict[int, tuple[_Worker, int, float]] = {}
        free = self._workers(min(self.size, len(jobs)))
        while pending or busy:
            while pending and free:
                w, i = free.pop(), pending.pop()
                try:
                    _send(w.fd_in, payloads[i])  # type: ignore[arg-type]
                    busy[w.fd_out] = (w, i, time.monotonic())
                except OSError as exc:
                    out[i] = Outcome(error=f"grading worker failed: {exc}")
                    w.kill()
                    free += self._workers(1)
            first = min((t0 for _, _, t0 in busy.values()), default=time.monotonic())
            wait = min(max(first + timeout - time.monotonic(), 0.0), _MAX_WAIT)
            ready = select.select(list(busy), [], [], wait)[0] if busy else []
            for fd in ready:
                w, i, _ = busy.pop(fd)
                out[i], ok = _reply(w, jobs[i].env_id)
                if ok:
                    free.append(w)
                else:
                    w.kill()
                    free += self._workers(1)
            now = time.monotonic()
            for fd in [fd for fd, (_, _, t0) in busy.items() if now - t0 >= timeout]:
                w, i, _ = busy.pop(fd)
                out[i] = Outcome(error=_timeout_error(timeout, jobs[i].env_id))
                w.kill()
                free += self._workers(1)
        self.idle += free
        return [o if o is not None else Outcome(error="not graded") for o in out]

    def close(self) -> None:
        """Stop every idle worker."""
        for w in self.idle:
            w.kill()
        self.idle = []


def _payload(job: Job, kwargs: dict[str, Any]) -> dict[str, Any]:
    spec = gym.spec(job.env_id)
    return {
        "env_id": job.env_id,
        "spec": spec,
        "kwargs": kwargs,
        "seed": job.seed,
        "history": list(job.history),
    }


def _reply(w: _Worker, env_id: str) -> tuple[Outcome, bool]:
    """Read one reply; ``(outcome, worker still usable)``."""
    try:
        kind, value = _recv(w.fd_out, time.monotonic() + 60.0)
    except (EOFError, TimeoutError, OSError, pickle.UnpicklingError) as exc:
        with contextlib.suppress(subprocess.TimeoutExpired):
            w.proc.wait(timeout=2.0 if isinstance(exc, EOFError) else 0.0)
        code = w.proc.poll()
        why = f"exit code {code}" if code is not None else repr(exc)
        return Outcome(error=f"grading worker died (env {env_id}): {why}"), False
    if kind == "ok":
        return Outcome(result=value), True
    return Outcome(error=value), True


# -- the worker process --------------------------------------------------------------------


def _make(req: dict[str, Any]) -> Any:
    env_id = req["env_id"]
    if env_id not in gym.registry and req["spec"] is not None:
        gym.register(**{k: v for k, v in vars(req["spec"]).items() if k in _SPEC_KEYS})
    return gym.make(env_id, **req["kwargs"])


_SPEC_KEYS = (
    "id",
    "entry_point",
    "reward_threshold",
    "nondeterministic",
    "max_episode_steps",
    "order_enforce",
    "disable_env_checker",
    "kwargs",
)


def _handle(req: dict[str, Any], envs: dict[str, list[Any]]) -> tuple[str, Any]:
    """Reset a (cached) env, replay the earlier turns, step the last one."""
    free = envs.setdefault(req["env_id"], [])
    env = free.pop() if free else None
    try:
        if env is None:
            env = _make(req)
        env.reset(seed=req["seed"])
        for turn in req["history"][:-1]:
            env.step(turn)
        obs, reward, terminated, truncated, info = env.step(req["history"][-1])
        reply = ("ok", (obs, reward, terminated, truncated, dict(info)))
        pickle.dumps(reply)
    except Exception as exc:  # the parent records it as this episode's error
        if env is not None:
            with contextlib.suppress(Exception):
                env.close()
        return ("err", _error(exc))
    if info.get("error"):
        with contextlib.suppress(Exception):
            env.close()  # a broken env is not reused (as the parent's pool does)
    else:
        free.append(env)
    return reply


def serve() -> None:
    """The worker loop: read jobs from stdin, write replies to stdout (fd 1 goes to stderr,
    so prints of an env cannot corrupt the replies)."""
    out = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    fd_in = sys.stdin.fileno()
    envs: dict[str, list[Any]] = {}
    _send(out, "ready")
    while True:
        try:
            data = _recv(fd_in, raw=True)
        except EOFError:
            return
        try:
            req = pickle.loads(data)
        except Exception as exc:  # e.g. an env class this process cannot import
            _send(out, ("err", f"cannot load the job in a worker process: {_error(exc)}"))
            continue
        _send(out, _handle(req, envs))
