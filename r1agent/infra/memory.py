"""Memory estimate of a training step, from the model's config alone (no weights loaded).

The figures follow how r1 trains (see :func:`estimate`): weights in their storage dtype
(float32 master weights when training in bfloat16 with full fine-tuning on a GPU), one
gradient and AdamW's two moments per trainable parameter in float32, the reference model
only when ``beta > 0`` and no LoRA (under LoRA the reference is the base with its adapters
disabled), and activations of one micro-batch: per layer the tensors backward needs, or
only each layer's input under gradient checkpointing, plus one chunk of logits.
Estimates are rough (within ~20% of measured peaks on the models we measured); they exist
to tell a user before loading weights that a run cannot fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r1agent.rl.chunked import resolve_chunk

GIB = 1 << 30

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class Shape:
    """The dimensions of a Llama-family decoder (Qwen2, Llama, Mistral...)."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    tied: bool

    @classmethod
    def from_config(cls, config: Any) -> Shape:
        """Read a transformers ``PretrainedConfig`` (or a plain dict of the same keys)."""
        get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
        missing = [k for k in ("vocab_size", "hidden_size", "num_hidden_layers") if get(k) is None]
        if missing:
            raise ValueError(f"model config lacks {missing} needed for a memory estimate")
        heads = get("num_attention_heads") or 1
        return cls(
            vocab=int(get("vocab_size")),
            hidden=int(get("hidden_size")),
            intermediate=int(get("intermediate_size") or 4 * get("hidden_size")),
            layers=int(get("num_hidden_layers")),
            heads=int(heads),
            kv_heads=int(get("num_key_value_heads") or heads),
            tied=bool(get("tie_word_embeddings", False)),
        )

    @property
    def kv_dim(self) -> int:
        """Width of the key (and value) projection."""
        return self.hidden // self.heads * self.kv_heads

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """``(in, out)`` of each linear layer of one decoder block, by module name."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def parameters(self) -> int:
        """Total parameters (biases and norms included approximately)."""
        block = sum(a * b for a, b in self.linear_shapes().values()) + 2 * self.hidden
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return embed + self.layers * block + self.hidden

    def lora_parameters(self, r: int, targets: tuple[str, ...]) -> int:
        """Adapter parameters for rank ``r`` on the named linear layers of every block."""
        shapes = self.linear_shapes()
        return self.layers * sum(r * (a + b) for name, (a, b) in shapes.items() if name in targets)


@dataclass
class Estimate:
    """Bytes per part of a training step and their sum."""

    parts: dict[str, int] = field(default_factory=dict)
    parameters: int = 0
    trainable: int = 0

    @property
    def total(self) -> int:
        """Sum of the parts, in bytes."""
        return sum(self.parts.values())

    def fits(self, budget_bytes: int) -> bool:
        """True when the estimate is within ``budget_bytes``."""
        return self.total <= budget_bytes

    def table(self) -> str:
        """A few lines a user reads before the run starts."""
        lines = [
            f"parameters {self.parameters / 1e9:.2f}B, trainable {self.trainable / 1e6:.1f}M",
        ]
        lines += [f"  {name:<22}{size / GIB:8.2f} GiB" for name, size in self.parts.items()]
        lines.append(f"  {'total':<22}{self.total / GIB:8.2f} GiB")
        return "\n".join(lines)


def estimate(
    shape: Shape,
    *,
    micro_batch_size: int,
    seq_len: int,
    dtype_bytes: int = 2,
    master_fp32: bool = True,
    lora_r: int | None = None,
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS,
    gradient_checkpointing: bool = False,
    reference: bool = False,
    logits_chunk: int | str = "auto",
) -> Estimate:
    """Estimate the peak memory of one training step.

    Args:
        shape: the model's dimensions.
        micro_batch_size: rows per forward/backward.
        seq_len: tokens per row (prompt + completion).
        dtype_bytes: bytes per element of the compute dtype (2 for bf16, 4 for fp32).
        master_fp32: full fine-tuning keeps float32 master weights (mixed precision).
        lora_r: adapter rank; ``None`` trains every parameter.
        lora_targets: module names the adapters wrap.
        gradient_checkpointing: keep only each layer's input for backward.
        reference: a separate reference model is held (KL with ``beta > 0``, no LoRA).
        logits_chunk: positions projected through the LM head at a time (``"auto"``: as
            the trainer sizes them, :func:`~r1agent.rl.chunked.auto_chunk`).
    """
    n = shape.parameters()
    est = Estimate(parameters=n)
    if lora_r is None:
        est.trainable = n
        weight_bytes = 4 if master_fp32 else dtype_bytes
        est.parts["weights"] = n * weight_bytes
    else:
        est.trainable = shape.lora_parameters(lora_r, lora_targets)
        est.parts["weights"] = n * dtype_bytes + est.trainable * 4
    est.parts["gradients"] = est.trainable * 4
    est.parts["optimizer (AdamW)"] = est.trainable * 8
    if reference and lora_r is None:
        est.parts["reference model"] = n * dtype_bytes
    tokens = micro_batch_size * seq_len
    h, i = shape.hidden, shape.intermediate
    # what backward needs per token and layer: norms' inputs, q/k/v/o, attention output,
    # gate/up/act products (~ 10 h + 3 i values); checkpointing keeps only the layer input
    per_layer = (10 * h + 3 * i) * dtype_bytes
    if gradient_checkpointing:
        act = tokens * shape.layers * h * dtype_bytes + tokens * per_layer
    else:
        act = tokens * shape.layers * per_layer
    est.parts["activations"] = act
    chunk = resolve_chunk(logits_chunk, shape.vocab)
    # two float32 (chunk, vocab) blocks (logits and their softmax) plus the chunk's products
    est.parts["logits chunk"] = 3 * min(chunk, tokens) * shape.vocab * 4
    return est
