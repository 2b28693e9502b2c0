"""The server side of the weight sync: a vLLM worker extension (``--worker-extension-cls``).

``r1agent serve MODEL`` starts ``vllm serve`` with
``--worker-extension-cls r1agent.rollout.vllm_worker_ext.WeightSyncExtension`` and
``VLLM_SERVER_DEV_MODE=1``, so the trainer (:class:`r1agent.rollout.vllm_server.VLLMServerClient`)
can call these methods on every worker of the server through vLLM's ``POST /collective_rpc``
endpoint. vLLM passes only JSON-serialisable arguments through that endpoint, so every method
takes one JSON string and returns a dict.

Three transports bring the trainer's weights in; each ends by recording the weights'
*version* (a string the trainer chose), which the trainer reads back with :meth:`r1_version`
before its next rollouts, so generation never runs on weights older than the trainer's:

* ``http`` — safetensors bytes, base64 in the request, in chunks (:meth:`r1_load_chunk`);
  the chunks are buffered and loaded together with the last one. Works anywhere (CPU too).
* ``file`` — a safetensors file on a filesystem both sides see (:meth:`r1_load_file`).
* ``nccl`` — as TRL's ``vllm-serve`` does it: the workers and the trainer join a
  ``StatelessProcessGroup`` with a ``PyNcclCommunicator`` (:meth:`r1_init_nccl`, the trainer
  is the last rank), then every tensor is broadcast from the trainer
  (:meth:`r1_receive_nccl`) and loaded as it arrives. CUDA only.

:meth:`r1_reload_files` goes back to the model's own files (version ``"initial"``).

Loading uses the worker's ``reload_weights(weights_iterator=...)`` when vLLM has it (it
re-applies kernel-format processing, e.g. the CPU backend's repacking), else the model's
``load_weights``. A partly received update is never marked as loaded: the version changes
only once every tensor of an update is in.
"""

from __future__ import annotations

import base64
import importlib
import json
from collections.abc import Iterable
from typing import Any

import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file

__all__ = ["WeightSyncExtension"]


def nccl_classes() -> tuple[Any, Any]:
    """vLLM's ``PyNcclCommunicator`` and ``StatelessProcessGroup`` (imported when used)."""
    pynccl = importlib.import_module("vllm.distributed.device_communicators.pynccl")
    utils = importlib.import_module("vllm.distributed.utils")
    return pynccl.PyNcclCommunicator, utils.StatelessProcessGroup


class WeightSyncExtension:
    """Methods mixed into each vLLM worker; the trainer calls them by name via ``collective_rpc``.

    State kept on the worker: ``_r1_version`` (the loaded weights' version, ``"initial"``
    before the first update), ``_r1_chunks`` (``http`` chunks received so far) and
    ``_r1_comm`` (the NCCL communicator, once set up).
    """

    # ------------------------------------------------------------------ state

    def _r1_state(self) -> dict[str, Any]:
        if not hasattr(self, "_r1"):
            self._r1 = {"version": "initial", "chunks": [], "comm": None, "src": None}
        return self._r1

    def r1_version(self, request: str = "{}") -> dict[str, Any]:
        """The version of the weights this worker holds: ``{"version": str, "rank": int}``."""
        del request
        return {"version": self._r1_state()["version"], "rank": int(getattr(self, "rank", 0))}

    def _r1_load(self, weights: Iterable[tuple[str, torch.Tensor]]) -> int:
        """Load ``(name, tensor)`` pairs into the model; returns how many were loaded."""
        pairs = list(weights)
        reload = getattr(self, "reload_weights", None)
        runner = getattr(self, "model_runner", None)
        if reload is not None and hasattr(runner, "reload_weights"):
            reload(weights_iterator=iter(pairs))
        else:
            self.model_runner.model.load_weights(weights=iter(pairs))
        return len(pairs)

    # ------------------------------------------------------------------ http / file

    def r1_load_chunk(self, request: str) -> dict[str, Any]:
        """Receive one chunk of an ``http`` update.

        ``request``: JSON ``{"data": base64 safetensors, "index": i, "final": bool,
        "version": str}``. Chunk 0 starts a new update (dropping any unfinished one); the
        final chunk loads them all and records ``version``.
        """
        req = json.loads(request)
        state = self._r1_state()
        if int(req["index"]) == 0:
            state["chunks"] = []
        elif len(state["chunks"]) != int(req["index"]):
            raise ValueError(
                f"weight chunk {req['index']} arrived after {len(state['chunks'])} chunks"
            )
        state["chunks"].append(base64.b64decode(req["data"]))
        if not req.get("final"):
            return {"received": len(state["chunks"]), "version": state["version"]}
        chunks, state["chunks"] = state["chunks"], []
        tensors = [kv for blob in chunks for kv in load_safetensors(blob).items()]
        loaded = self._r1_load(tensors)
        state["version"] = str(req["version"])
        return {"loaded": loaded, "version": state["version"]}

    def r1_load_file(self, request: str) -> dict[str, Any]:
        """Load a safetensors file: JSON ``{"path": str, "version": str}``."""
        req = json.loads(request)
        state = self._r1_state()
        loaded = self._r1_load(load_file(req["path"]).items())
        state["version"] = str(req["version"])
        return {"loaded": loaded, "version": state["version"]}

    def r1_reload_files(self, request: str = "{}") -> dict[str, Any]:
        """Reload the served model's own files (version ``"initial"`` again)."""
        del request
        state = self._r1_state()
        self.reload_weights()
        state["version"] = "initial"
        return {"version": state["version"]}

    # ------------------------------------------------------------------ nccl

    def r1_init_nccl(self, request: str) -> dict[str, Any]:
        """Join the trainer's NCCL group: JSON ``{"host", "port", "world_size"}`` (worker 0
        serves the group's store on ``host``, e.g. ``0.0.0.0``; the others connect to it).

        This worker's rank in the group is its rank in vLLM; the trainer is the last rank.
        Blocks until every member (the trainer included) has joined.
        """
        PyNcclCommunicator, StatelessProcessGroup = nccl_classes()

        req = json.loads(request)
        world = int(req["world_size"])
        rank = int(getattr(self, "rank", 0))
        group = StatelessProcessGroup.create(
            host=req["host"], port=int(req["port"]), rank=rank, world_size=world
        )
        state = self._r1_state()
        state["comm"] = PyNcclCommunicator(group, device=self.device)
        state["src"] = world - 1
        return {"rank": rank, "world_size": world}

    def r1_receive_nccl(self, request: str) -> dict[str, Any]:
        """Receive broadcast tensors: JSON ``{"params": [[name, dtype, shape], ...],
        "version": str}``; each is loaded as it arrives, then ``version`` is recorded."""
        req = json.loads(request)
        state = self._r1_state()
        comm = state["comm"]
        if comm is None:
            raise RuntimeError("r1_receive_nccl before r1_init_nccl: no NCCL group")
        state["version"] = "partial"  # until the last tensor is in
        for name, dtype, shape in req["params"]:
            tensor = torch.empty(shape, dtype=getattr(torch, dtype), device=self.device)
            comm.broadcast(tensor, src=state["src"])
            comm.group.barrier()
            self.model_runner.model.load_weights(weights=[(name, tensor)])
        state["version"] = str(req["version"])
        return {"loaded": len(req["params"]), "version": state["version"]}

    def r1_close_nccl(self, request: str = "{}") -> dict[str, Any]:
        """Drop the NCCL communicator (the trainer is going away)."""
        del request
        state = self._r1_state()
        state["comm"] = None
        return {"closed": True}
