"""One place that turns a ``rollout:`` setting into a generate function.

Every command that samples (GRPO's rollouts, stage-3 rejection sampling, distillation's
teacher, evaluation) calls :func:`make_generate` with its
:class:`~r1agent.infra.config.RolloutConfig` and the checkpoint it samples from:

* ``hf`` — :func:`r1agent.rollout.generate` on the caller's loaded model;
* ``vllm`` — an in-process :class:`~r1agent.rollout.vllm_engine.VLLMEngine` on the checkpoint;
* ``vllm-server`` — a :class:`~r1agent.rollout.vllm_server.VLLMServerClient` on
  ``rollout.servers``. The servers must serve ``rollout.server_model`` (default: the
  checkpoint itself); when that is another model (say, the base every stage starts from), the
  checkpoint's weights are read from its safetensors files and pushed to the servers first.

:func:`needs_model` tells a caller whether it must load the model itself (only ``hf``
samples from the caller's copy; the other engines need the tokenizer alone).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from r1agent.infra.config import RolloutConfig
from r1agent.infra.models import load_tokenizer
from r1agent.rollout.engine import GenerateFn
from r1agent.rollout.transformers_engine import generate
from r1agent.rollout.vllm_engine import VLLMEngine
from r1agent.rollout.vllm_server import VLLMServerClient, same_model

__all__ = ["checkpoint_weights", "make_generate", "needs_model", "server_client"]


def needs_model(rollout: RolloutConfig | None) -> bool:
    """Whether the engine samples from the caller's loaded model (``hf``)."""
    return rollout is None or rollout.engine == "hf"


def server_client(
    rollout: RolloutConfig, model: str, *, tokenizer: Any = None, rank: int = 0, world: int = 1
) -> VLLMServerClient:
    """A client for ``rollout.servers`` serving ``rollout.server_model`` (default ``model``).

    Raises:
        ValueError: for no servers or a bad URL.
        VLLMServerError: a server unreachable or serving another model (naming its URL).
    """
    return VLLMServerClient(
        rollout.servers,
        rollout.server_model or str(model),
        tokenizer=tokenizer,
        transport=rollout.weight_transport,
        weight_dir=rollout.weight_dir,
        timeout=rollout.server_timeout,
        sync_port=rollout.sync_port,
        rank=rank,
        world=world,
    )


def checkpoint_weights(path: str | Path) -> list[tuple[str, Any]]:
    """``(name, tensor)`` pairs from a Hugging Face directory's ``*.safetensors`` files.

    Raises:
        FileNotFoundError: when the directory holds no safetensors file.
    """
    files = sorted(Path(path).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors weights in {path} to push to the vLLM servers")
    return [kv for f in files for kv in load_file(str(f)).items()]


def make_generate(
    rollout: RolloutConfig | None,
    model_path: str | Path,
    *,
    tokenizer: Any = None,
    seed: int = 0,
    dtype: Any = "auto",
) -> GenerateFn:
    """The generate function ``rollout`` asks for, sampling from ``model_path``.

    Args:
        rollout: the engine setting (``None``: ``hf``).
        model_path: the checkpoint to sample from.
        tokenizer: its tokenizer (``vllm-server``; loaded from ``model_path`` when ``None``).
        seed: the in-process vLLM engine's seed.
        dtype: the in-process vLLM engine's dtype (``auto``: bf16 on GPU, fp32 on CPU).

    Returns:
        A ``GenerateFn``: ``fn(model, tokenizer, prompts, **sampling) -> [Completion]``.

    Raises:
        VLLMServerError: ``vllm-server`` with a server unreachable, serving another model,
            or failing the weight push (the message names its URL).
    """
    if rollout is None or rollout.engine == "hf":
        return (
            generate
            if rollout is None
            else functools.partial(generate, batch_size=rollout.batch_size)
        )
    if rollout.engine == "vllm":
        return VLLMEngine(
            str(model_path),
            dtype=dtype,
            gpu_memory_utilization=rollout.vllm_gpu_memory_utilization,
            max_model_len=rollout.vllm_max_model_len,
            seed=seed,
            sleep=rollout.vllm_sleep,
        )
    client = server_client(
        rollout, str(model_path), tokenizer=tokenizer or load_tokenizer(str(model_path))
    )
    if not same_model(client.model, str(model_path)):
        client.sync_weights(checkpoint_weights(model_path))
    return client
