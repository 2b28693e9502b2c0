"""LoRA and QLoRA adapters through PEFT, for GRPO, SFT and distillation.

``lora: {r, alpha, dropout, target_modules, quantize}`` in a run's config trains low-rank
adapters on the chosen linear layers and freezes everything else
(:func:`apply_lora`). What the rest of the trainer needs follows from PEFT itself:

* the reference model of the KL term is the base with its adapters disabled
  (``model.disable_adapter()``), so no second copy of the weights is held;
* checkpoints hold the adapter only (``adapter_config.json`` + ``adapter_model.safetensors``
  and the tokenizer); :func:`r1agent.infra.models.load_model` reads such a directory as the
  merged model, :func:`load_trainable` as a trainable PEFT model, and ``r1agent merge``
  writes a plain Hugging Face model from it;
* an inference engine that holds its own copy of the weights (vLLM) receives the merged
  weights after each update (:func:`merged_weights`).

QLoRA (``quantize: 4bit``/``8bit``) loads the frozen base through bitsandbytes, which needs
a CUDA device.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import peft
import torch
from transformers import BitsAndBytesConfig

__all__ = [
    "ADAPTER_CONFIG",
    "adapter_base",
    "apply_lora",
    "is_adapter_dir",
    "is_peft",
    "linear_module_names",
    "load_trainable",
    "merged_weights",
    "reference_context",
    "root_base",
]

ADAPTER_CONFIG = "adapter_config.json"


def is_peft(model: Any) -> bool:
    """Whether ``model`` (or the module a DDP wrapper holds) is a PEFT model."""
    model = getattr(model, "module", model)
    return hasattr(model, "peft_config") and hasattr(model, "disable_adapter")


def is_adapter_dir(path: str | Path) -> bool:
    """Whether ``path`` is a directory holding a PEFT adapter."""
    return (Path(path) / ADAPTER_CONFIG).is_file()


def adapter_base(path: str | Path) -> str:
    """The base model an adapter directory was trained on (``base_model_name_or_path``).

    Raises:
        ValueError: when the adapter config names no base model.
    """
    cfg = json.loads((Path(path) / ADAPTER_CONFIG).read_text())
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise ValueError(f"adapter {str(path)!r} names no base_model_name_or_path")
    return str(base)


def root_base(path: str | Path) -> str:
    """The plain model under a chain of adapter directories (``path`` itself when plain):
    what an engine that loads full weights (vLLM) starts from."""
    seen = set()
    while is_adapter_dir(path) and str(path) not in seen:
        seen.add(str(path))
        path = adapter_base(path)
    return str(path)


def linear_module_names(model: Any) -> list[str]:
    """Qualified names of the model's ``nn.Linear`` layers, the LM head excluded."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head
    ]


def _check_targets(model: Any, targets: list[str]) -> None:
    """Every requested target must match at least one linear layer (PEFT's rule: the
    module's name equals it or ends with ``.`` + it; or a regular expression)."""
    names = linear_module_names(model)
    missing = [
        t
        for t in targets
        if not any(n == t or n.endswith("." + t) or re.fullmatch(t, n) for n in names)
    ]
    if missing:
        kinds = sorted({n.rsplit(".", 1)[-1] for n in names})
        raise ValueError(
            f"lora.target_modules names no linear layer of {type(model).__name__}: "
            f"{missing}; its linear layers are {kinds} (or use all-linear)"
        )


def apply_lora(model: Any, settings: Any) -> Any:
    """Wrap ``model`` with LoRA adapters as ``settings`` (a :class:`LoraConfig`) says.

    The base weights are frozen; only the adapters train. A model loaded in 4 or 8 bits is
    prepared for training first (PEFT's ``prepare_model_for_kbit_training``).

    Raises:
        ValueError: when a target module matches no linear layer of the model.
    """
    targets = settings.target_modules
    if targets != "all-linear":
        _check_targets(model, list(targets))
    elif not linear_module_names(model):
        raise ValueError(f"lora: {type(model).__name__} has no linear layers to adapt")
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        model = peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    config = peft.LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets if targets == "all-linear" else list(targets),
        task_type="CAUSAL_LM",
    )
    return peft.get_peft_model(model, config)


def quantization_config(quantize: str | None, device: torch.device) -> Any:
    """bitsandbytes settings for QLoRA's frozen base (``None`` without ``quantize``).

    Raises:
        ValueError: ``quantize`` set without CUDA or without bitsandbytes installed.
    """
    if quantize is None:
        return None
    if device.type != "cuda":
        raise ValueError(
            f"lora.quantize: {quantize} needs a CUDA device (bitsandbytes), device: {device}"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            f"lora.quantize: {quantize} needs bitsandbytes: pip install 'r1[gpu]'"
        ) from exc
    if quantize == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )


def load_trainable(base: Any, adapter_dir: str | Path) -> Any:
    """``base`` with the adapter of ``adapter_dir`` loaded, its adapters trainable."""
    return peft.PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=True)


def reference_context(model: Any) -> contextlib.AbstractContextManager[Any]:
    """A context in which ``model`` computes as its base (adapters disabled): the reference
    model of the KL term under LoRA. A no-op context for a model without adapters."""
    inner = getattr(model, "module", model)
    return inner.disable_adapter() if is_peft(inner) else contextlib.nullcontext()


@contextlib.contextmanager
def merged_weights(model: Any) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """The weights of ``model`` with its adapters merged in, named as in the base model's
    checkpoint (for an inference engine that holds its own copy, e.g. vLLM).

    The adapters are merged into the base weights for the block and unmerged after it, so
    no copy of the model is made; use the tensors only inside the block.
    """
    inner = getattr(model, "module", model)
    if not is_peft(inner):
        yield [(n, t.detach()) for n, t in inner.state_dict().items()]
        return
    inner.merge_adapter()
    try:
        base = inner.get_base_model()
        out = []
        for name, tensor in base.state_dict().items():
            if "lora_" in name:
                continue
            out.append((name.replace(".base_layer.", "."), tensor.detach()))
        yield out
    finally:
        inner.unmerge_adapter()
