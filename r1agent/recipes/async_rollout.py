"""Rollouts generated ahead on a background thread while the trainer updates.

``async: {max_staleness: k}`` in a GRPO config: the samples of step ``s`` are generated
from the weights after optimizer step ``max(s - k, start)`` (their *policy version*), on
one background thread, while the main thread updates. With ``k = 1`` the rollouts of step
``t + 1`` are generated during the update of step ``t``; a step then takes about
``max(generation, update)`` instead of their sum. Every sample is at most ``k`` steps
stale, and which weights produce which step's samples is fixed (not a race), so a run is
reproducible given its seed.

Safety: the generator never reads weights the optimizer is changing. Before each update
the main thread copies the trainable parameters into a snapshot (a plain tensor copy,
made while nothing writes them); the generator thread loads the snapshot it needs into its
own copy of the policy (``shadow``, made once at start) and samples from that, or, with a
vLLM engine, pushes that copy into the engine (the weight sync runs on the generator
thread between its rollouts, never while vLLM samples). Snapshots no job needs any more are
dropped, so at most ``k + 1`` are held. The thread sets the intra-op thread count of the
thread that built it (``threads`` in the config) when it starts: a fresh thread otherwise
runs torch's CPU kernels under other settings (measured on a 2-core box: the same matrix
products took 2.5 to 6 times the CPU time).

:class:`SyncRollouts` is the same interface without overlap (the default): rollout, then
update, then push the new weights into the engine.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

__all__ = ["AsyncRollouts", "Produce", "SyncRollouts", "trainable_snapshot"]

#: ``produce(step, model) -> (episodes, groups_dropped)``: one step's rollouts sampled with
#: ``model`` (the policy or its shadow copy).
Produce = Callable[[int, Any], tuple[list[Any], int]]


def trainable_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the parameters the optimizer changes (``requires_grad``)."""
    with torch.no_grad():
        return {
            name: prm.detach().clone()
            for name, prm in model.named_parameters()
            if prm.requires_grad
        }


class SyncRollouts:
    """Rollout, then update, then sync the engine: no overlap, samples never stale.

    Args:
        produce: see :data:`Produce`.
        model: the policy (samples with it directly).
        after_update: called after each update (e.g. push weights into a vLLM engine).
    """

    def __init__(
        self, produce: Produce, model: Any, after_update: Callable[[], None] | None = None
    ) -> None:
        self.produce, self.model, self._after = produce, model, after_update

    def get(self, step: int) -> tuple[list[Any], int, float, float]:
        """Step ``step``'s rollouts: ``(episodes, groups_dropped, generation_s, wait_s)``."""
        t0 = time.perf_counter()
        episodes, dropped = self.produce(step, self.model)
        for e in episodes:
            e.policy_version = step
        t_gen = time.perf_counter() - t0
        return episodes, dropped, t_gen, t_gen

    def after_update(self) -> None:
        """Hook after the optimizer step."""
        if self._after is not None:
            self._after()

    def close(self) -> None:
        """Nothing to stop."""


class AsyncRollouts:
    """Generates the rollouts of the next ``max_staleness`` steps on a background thread.

    Args:
        produce: see :data:`Produce` (called on the background thread).
        model: the policy being trained (read on the calling thread only).
        max_staleness: ``k``: step ``s`` samples with the weights after step ``max(s - k,
            start)``.
        start: the first step (a resumed run's step), whose weights are current now.
        steps: the run's last step (exclusive); nothing is generated past it.
        after_load: ``after_load(shadow)`` after each load (e.g. sync a vLLM engine).
        shadow: the generator's model (default: ``copy.deepcopy(model)``).
    """

    def __init__(
        self,
        produce: Produce,
        model: Any,
        *,
        max_staleness: int,
        start: int,
        steps: int,
        after_load: Callable[[Any], None] | None = None,
        shadow: Any = None,
    ) -> None:
        if max_staleness < 1:
            raise ValueError(f"max_staleness must be >= 1, max_staleness: {max_staleness}")
        self.produce, self.model, self.k, self.steps = produce, model, max_staleness, steps
        self.after_load = after_load
        self.shadow = copy.deepcopy(model) if shadow is None else shadow
        self.shadow.requires_grad_(False)
        self.loaded: int | None = None  # the version in the shadow
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}
        self.lock = threading.Lock()
        # a fresh thread runs the CPU kernels under other thread settings: set this one's
        self.executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="r1-rollout",
            initializer=torch.set_num_threads,
            initargs=(torch.get_num_threads(),),
        )
        self.futures: dict[int, Future[tuple[list[Any], int, float]]] = {}
        self._publish(start)
        for s in range(start, min(start + self.k, steps)):
            self._submit(s, start)

    def _publish(self, version: int) -> None:
        """Snapshot the policy's current weights as ``version`` (main thread, before the
        update of step ``version`` changes them)."""
        snap = trainable_snapshot(self.model)
        with self.lock:
            self.snapshots[version] = snap

    def _submit(self, step: int, version: int) -> None:
        self.futures[step] = self.executor.submit(self._job, step, version)

    def _job(self, step: int, version: int) -> tuple[list[Any], int, float]:
        """Background thread: load weights ``version`` if needed, generate step ``step``."""
        t0 = time.perf_counter()
        if self.loaded != version:
            with self.lock:
                snap = self.snapshots[version]
                for v in [v for v in self.snapshots if v < version]:
                    del self.snapshots[v]  # jobs run in order: no later job needs them
            params = dict(self.shadow.named_parameters())
            with torch.no_grad():
                for name, value in snap.items():
                    params[name].copy_(value)
            self.loaded = version
            if self.after_load is not None:
                self.after_load(self.shadow)
        episodes, dropped = self.produce(step, self.shadow)
        for e in episodes:
            e.policy_version = version
        return episodes, dropped, time.perf_counter() - t0

    def get(self, step: int) -> tuple[list[Any], int, float, float]:
        """Step ``step``'s rollouts, queueing step ``step + k``'s (from the current weights)
        first: ``(episodes, groups_dropped, generation_s, wait_s)``; ``wait_s`` is how long
        this call blocked on the generator. Call before the update of step ``step``."""
        ahead = step + self.k
        if ahead < self.steps and ahead not in self.futures:
            self._publish(step)
            self._submit(ahead, step)
        t0 = time.perf_counter()
        episodes, dropped, t_gen = self.futures.pop(step).result()
        return episodes, dropped, t_gen, time.perf_counter() - t0

    def after_update(self) -> None:
        """Nothing: the generator loads the snapshots it needs itself."""

    def close(self) -> None:
        """Cancel queued rollouts and wait for the running one (idempotent)."""
        for f in self.futures.values():
            f.cancel()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.futures.clear()
        with self.lock:
            self.snapshots.clear()
