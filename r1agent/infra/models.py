"""Loading causal language models and their tokenizers; device and dtype defaults.

Any Hugging Face causal LM works: a local directory (the tiny factory's output, a
checkpoint written by the trainer) or a hub id. Tokenizers are returned left-padded with a
pad token set, which is what batched generation needs. Device and dtype are chosen
automatically: CUDA with bfloat16 when a GPU is visible, otherwise CPU with float32.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1agent.infra import lora

__all__ = [
    "default_device",
    "default_dtype",
    "load_model",
    "load_tokenizer",
    "resolve_dtype",
]

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_device() -> torch.device:
    """CUDA (this process's local rank) when available, otherwise CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def default_dtype(device: torch.device | str) -> torch.dtype:
    """bfloat16 on CUDA (when supported), float32 elsewhere."""
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device | str) -> torch.dtype:
    """Turn ``None``/``"auto"``/a name/a dtype into a ``torch.dtype``.

    Raises:
        ValueError: for an unknown dtype name.
    """
    if dtype is None or dtype == "auto":
        return default_dtype(device)
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be auto or one of {sorted(_DTYPES)}, dtype: {dtype!r}")
    return _DTYPES[dtype]


def load_tokenizer(name_or_path: str) -> Any:
    """Load a tokenizer, left-padded, with a pad token (the eos token if it has none)."""

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if tokenizer.eos_token is None:
        raise ValueError(f"tokenizer of {name_or_path!r} has no eos_token; set one before training")
    return tokenizer


def load_model(
    name_or_path: str,
    *,
    dtype: str | torch.dtype | None = None,
    device: str | torch.device | None = None,
    quantization_config: Any = None,
) -> tuple[Any, Any]:
    """Load a causal LM and its tokenizer.

    A directory holding a LoRA adapter (``adapter_config.json``, as LoRA runs save) loads
    as its base model with the adapter merged in: a plain model, whatever reads it.

    Args:
        name_or_path: local directory or hub id.
        dtype: ``None``/``"auto"`` (bf16 on GPU, fp32 on CPU), a name or a ``torch.dtype``.
        device: ``None`` picks CUDA when available, else CPU.
        quantization_config: a transformers quantization config (QLoRA's frozen base),
            placed on ``device`` by transformers.

    Returns:
        ``(model, tokenizer)``: the model in eval mode on ``device``; the tokenizer
        left-padded with a pad token set.
    """

    dev = torch.device(device) if device is not None else default_device()
    tokenizer = load_tokenizer(name_or_path)
    if lora.is_adapter_dir(name_or_path):  # the base (itself possibly an adapter) + this one
        base, _ = load_model(
            lora.adapter_base(name_or_path),
            dtype=dtype,
            device=dev,
            quantization_config=quantization_config,
        )
        return lora.load_trainable(base, name_or_path).merge_and_unload().eval(), tokenizer
    source = name_or_path
    if quantization_config is not None:
        model = AutoModelForCausalLM.from_pretrained(
            source,
            dtype=resolve_dtype(dtype, dev),
            quantization_config=quantization_config,
            device_map={"": dev},
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=resolve_dtype(dtype, dev))
        model.to(dev)
    model.eval()
    gen = model.generation_config
    if gen.pad_token_id is None:
        gen.pad_token_id = tokenizer.pad_token_id
    if gen.eos_token_id is None:
        gen.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer
