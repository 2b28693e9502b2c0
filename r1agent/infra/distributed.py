"""Multi-process plumbing of the trainer: the process group, DDP/FSDP2 helpers, metric
reduction and checkpoint saving from several ranks.

Under ``torchrun`` the trainer joins a process group (gloo on CPU, NCCL on GPU). With DDP
every rank holds the full model; with FSDP2 (``fsdp: true``) parameters are sharded and
gathered once around generation (ranks decode different numbers of tokens, so no
collective may run inside it), and checkpoints are written from full state dicts.
``fsdp_offload: true`` adds FSDP2's CPU offload (see :func:`wrap_model`; useful on CUDA).

Several nodes (``torchrun --nnodes N``) work the same way: :class:`Dist` holds the *global*
rank, which decides who writes (rank 0 alone writes metrics, checkpoints and the final
model, to its own node's ``output_dir``), while the device is the node-local
``LOCAL_RANK``'s (:func:`r1agent.infra.models.default_device`). A run that resumes reads
its checkpoint on every rank; :func:`same_on_all_ranks` stops it with a clear error when
the nodes see different checkpoints (``output_dir`` not on a shared filesystem) instead
of letting the ranks train from different states.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.nn.parallel import DistributedDataParallel

from r1agent.infra import checkpoint as ckpt

logger = logging.getLogger(__name__)

__all__ = [
    "Dist",
    "fsdp_gathered",
    "full_model_state",
    "load_optimizer_state",
    "reduce_mean",
    "same_on_all_ranks",
    "save_run_checkpoint",
    "setup_distributed",
    "unwrap",
    "wrap_model",
]


@dataclass
class Dist:
    """Process-group facts (world of 1 when not under torchrun)."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0


def setup_distributed(device: torch.device) -> Dist:
    """Join the torchrun process group when ``WORLD_SIZE > 1``.

    On CPU the group is gloo. On GPU it is NCCL for CUDA tensors and gloo for CPU tensors
    (metric reduction, and the gradient norm of FSDP2 parameters offloaded to the CPU).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def same_on_all_ranks(value: Any, dd: Dist, what: str) -> Any:
    """Check that every rank holds the same ``value`` (a collective); return it.

    Args:
        value: a picklable, comparable value (say, the name of the checkpoint to resume).
        dd: the process group facts.
        what: what the value is and how to make the ranks agree, for the error message.

    Raises:
        RuntimeError: on every rank, naming each rank's value, when they differ.
    """
    if dd.world <= 1:
        return value
    values: list[Any] = [None] * dd.world
    dist.all_gather_object(values, value)
    if any(v != values[0] for v in values):
        seen = ", ".join(f"rank {r}: {v!r}" for r, v in enumerate(values))
        raise RuntimeError(f"the ranks disagree on {what} ({seen})")
    return value


def unwrap(model: Any) -> Any:
    """The module inside a DDP wrapper (the model itself otherwise)."""
    return getattr(model, "module", model)


def reduce_mean(row: dict[str, Any], dd: Dist) -> dict[str, Any]:
    """Average scalar metrics over processes (rank 0 logs them)."""
    if dd.world <= 1:
        return row
    keys = sorted(k for k, v in row.items() if isinstance(v, float))
    t = torch.tensor([row[k] if math.isfinite(row[k]) else 0.0 for k in keys], dtype=torch.float64)
    dist.all_reduce(t)
    return {**row, **{k: float(v) / dd.world for k, v in zip(keys, t.tolist(), strict=True)}}


def wrap_model(
    model: Any, dd: Dist, device: torch.device, *, fsdp: bool, offload: bool = False
) -> Any:
    """The module the update calls: ``model`` alone, or under DDP / FSDP2 when several
    processes train.

    FSDP2 (``fsdp``) shards each decoder layer, then the whole model, in place. ``offload``
    (FSDP2 only) keeps the sharded parameters, their gradients and the optimizer state in
    host memory (``CPUOffloadPolicy``): each layer's shard is copied to the GPU for its
    all-gather, gradients are copied back, and the optimizer step runs on the CPU. It saves
    GPU memory at the cost of host-device copies and a CPU optimizer step, so it is meant
    for CUDA; on CPU the parameters already live in host memory and the setting changes
    nothing (FSDP2's offload policy needs an accelerator, so it is not applied there).
    With one process, or without ``fsdp``, ``offload`` has no effect and a warning says so.

    Args:
        model: the Hugging Face causal LM (``model.model.layers`` are sharded).
        dd: the process group facts.
        device: this process's device.
        fsdp: shard with FSDP2 instead of replicating with DDP.
        offload: FSDP2 CPU offload of parameters, gradients and optimizer state.
    """
    if offload and (dd.world <= 1 or not fsdp):
        logger.warning(
            "fsdp_offload has no effect here (fsdp: %s, processes: %d): it applies to FSDP2 "
            "under torchrun with several processes",
            fsdp,
            dd.world,
        )
    if dd.world <= 1:
        return model
    if fsdp:
        from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard  # public from 2.6

        kwargs: dict[str, Any] = {}
        if offload and device.type == "cuda":
            kwargs["offload_policy"] = CPUOffloadPolicy()
        elif offload:
            logger.warning("fsdp_offload on %s: parameters are already in host memory", device)
        for layer in model.model.layers:
            fully_shard(layer, **kwargs)
        return fully_shard(model, **kwargs)
    return DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None
    )


def load_optimizer_state(model: Any, optimizer: Any, state: dict[str, Any], *, fsdp: bool) -> None:
    """Restore a saved optimizer state (a full state dict under FSDP2)."""
    if fsdp:
        set_optimizer_state_dict(
            model,
            optimizer,
            optim_state_dict=state,
            options=StateDictOptions(full_state_dict=True),
        )
    else:
        optimizer.load_state_dict(state)


def _fsdp_modules(model: Any) -> list[Any]:
    from torch.distributed.fsdp import FSDPModule  # public from torch 2.6

    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def fsdp_gathered(model: Any, enabled: bool) -> Any:
    """FSDP2: hold full parameters while generating.

    Ranks decode different numbers of tokens, so no collective may run inside generation:
    parameters are all-gathered once before and resharded after.
    """
    if not enabled:
        yield
        return
    mods = _fsdp_modules(model)
    for m in mods:
        m.unshard()
        m.set_reshard_after_forward(False)
    try:
        yield
    finally:
        for m in mods:
            m.reshard()
            m.set_reshard_after_forward(True)


def full_model_state(model: Any, fsdp: bool) -> dict[str, Any] | None:
    """Full (unsharded, CPU) state dict under FSDP2 — a collective; ``None`` otherwise."""
    if not fsdp:
        return None
    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=opts)


def save_run_checkpoint(
    c: Any, dd: Dist, model: Any, tokenizer: Any, optimizer: Any, scheduler: Any, step: int
) -> None:
    """Write a resumable step checkpoint (all ranks call it; rank 0 writes).

    Holds every rank's RNG state, the optimizer (full state under FSDP2) and the scheduler.
    """
    rngs: Any = ckpt.rng_state()
    if dd.world > 1:
        gathered: list[Any] = [None] * dd.world
        dist.all_gather_object(gathered, rngs)
        rngs = gathered
    fsdp = c.fsdp and dd.world > 1
    full_state = full_model_state(model, fsdp)
    optim_state = optimizer.state_dict()
    if fsdp:
        opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
        optim_state = get_optimizer_state_dict(model, optimizer, options=opts)
    if dd.main:
        state = {
            "optimizer": optim_state,
            "scheduler": scheduler.state_dict(),
            "rng": rngs,
        }
        ckpt.save_checkpoint(
            c.output_dir,
            step,
            unwrap(model),
            tokenizer,
            state,
            keep=c.keep_checkpoints,
            state_dict=full_state,
        )
    if dd.world > 1:
        dist.barrier()
