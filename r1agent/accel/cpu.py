"""CPU process tuning: threads for small models and glibc's malloc policy.

A small model's matrix products are short, so splitting them across cores that other work
holds stalls on OpenMP barriers: :func:`small_model_threads` picks the cores idle at start
for models under :data:`SMALL_MODEL_PARAMS` parameters, and :func:`cpu_threads` applies a
thread count to a block and restores it. :func:`retain_freed_memory` changes glibc's
malloc policy for the whole process, so it is called by command-line entry points
(:func:`tune_process`), never inside library functions.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import time
from collections.abc import Iterator
from typing import Any

import torch

__all__ = [
    "SMALL_MODEL_PARAMS",
    "cpu_threads",
    "idle_cores",
    "retain_freed_memory",
    "small_model_threads",
    "tune_process",
]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


#: Below this many parameters a CPU model only uses idle cores (see :func:`small_model_threads`).
SMALL_MODEL_PARAMS = 20_000_000


_IDLE_CORES: int | None = None


def _busy_cores(window: float = 0.2) -> float:
    """Cores busy with other work now: from ``/proc/stat`` over ``window`` seconds on Linux,
    less this process's own CPU time in the window (its threads may still be spinning down
    from earlier work), else the one-minute load average (which lags by about a minute)."""

    def sample() -> tuple[float, float, float]:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        own = os.times()
        own_ticks = (own.user + own.system) * os.sysconf("SC_CLK_TCK")
        return sum(fields), fields[3] + fields[4], own_ticks  # total, idle + iowait, ours

    try:
        total0, idle0, own0 = sample()
        time.sleep(window)
        total1, idle1, own1 = sample()
        busy = (total1 - total0) - (idle1 - idle0) - (own1 - own0)
        busy_share = max(0.0, busy) / max(1, total1 - total0)
        return busy_share * (os.cpu_count() or 1)
    except (OSError, ValueError, IndexError):
        try:
            return os.getloadavg()[0]
        except OSError:  # neither is available on this platform
            return 0.0


def idle_cores() -> int:
    """Cores not busy with other work when first asked (then fixed for the process).

    ``os.cpu_count()`` minus the cores measured busy (see :func:`_busy_cores`), at least 1.
    Measured once, so this process's own later load does not count against it.
    """
    global _IDLE_CORES
    if _IDLE_CORES is None:
        cores = os.cpu_count() or 1
        _IDLE_CORES = max(1, min(cores, cores - round(_busy_cores())))
    return _IDLE_CORES


def small_model_threads(model: Any) -> int | None:
    """Intra-op threads for ``model`` on CPU: the idle cores for small models, else ``None``.

    The matrix products of a model this small are short: split across threads that must
    share a core with other work, their OpenMP barriers stall badly (measured on the 2-core
    dev box with one other busy process: a batch of 64 decoded with 2 threads took 26x as
    long as with 1). On idle cores the split pays (the same decode 1.6x faster on 2). So
    small models use :func:`idle_cores`, capped by torch's own thread count; ``None``
    (leave as is) for large models and non-CPU devices.
    """
    try:
        param = next(model.parameters())
    except (StopIteration, AttributeError):
        return None
    if param.device.type != "cpu":
        return None
    n = sum(p.numel() for p in model.parameters())
    if n >= SMALL_MODEL_PARAMS:
        return None
    return max(1, min(idle_cores(), torch.get_num_threads()))


def retain_freed_memory() -> bool:
    """Let glibc keep freed memory for reuse; returns whether the setting applied.

    A CPU training step allocates the same large buffers every step (activations saved for
    the backward pass, gradients). By default glibc maps blocks above a moving threshold
    freshly and trims the heap's free top, so every step faults those pages in again, each
    4 KiB page zero-filled by the kernel: on the bench model the forward's gate/up products
    ran at half the speed of the same products writing into reused memory. With the mmap
    threshold at its maximum (32 MiB) and the trim threshold at 1 GiB, buffers come from
    the heap and freed ones are reused, as torch's caching allocator does on CUDA; peak
    memory is unchanged. A no-op off glibc or with ``R1_MALLOC=0``.
    """
    if os.environ.get("R1_MALLOC", "1") == "0":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (``None``: unchanged), then restore."""
    if n is None or n == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def tune_process() -> None:
    """Process-wide CPU tuning for training commands, called once by entry points.

    Lets glibc keep freed memory for reuse (:func:`retain_freed_memory`; ``R1_MALLOC=0``
    turns it off). Library functions never change the malloc policy themselves; thread
    counts are scoped to the work that needs them (:func:`cpu_threads`).
    """
    retain_freed_memory()
