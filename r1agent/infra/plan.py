"""Will a GRPO run fit? A memory plan from the run config and the model's config alone.

:func:`plan` reads only the model's ``config.json`` (``AutoConfig.from_pretrained``, no
weights), resolves the settings the way the trainer does, and asks
:func:`r1agent.infra.memory.estimate` for the peak of one training step:

- dtypes: activations in bfloat16 on CUDA (``dtype: auto`` runs under bf16 autocast),
  float32 on CPU; parameters (the frozen LoRA base too), gradients and AdamW moments in
  float32, or bfloat16 with ``dtype: bfloat16``; LoRA adapters and their optimizer state
  in float32; ``lora.quantize`` stores the base's linear layers in 4 or 8 bits;
- LoRA: ``lora.r`` on ``lora.target_modules`` (``all-linear``: every decoder projection);
- gradient checkpointing: :func:`resolve_gradient_checkpointing` (``None``: on above 100M
  parameters), the same function the trainer calls;
- a reference model only when ``beta > 0`` and no LoRA;
- ``seq_len = prompt_tokens + max_new_tokens * max_turns`` (``prompt_tokens``: an argument,
  :data:`PROMPT_TOKENS` by default, an allowance for the prompt and the env's replies);
- FSDP2 under ``torchrun`` (``fsdp: true``, ``WORLD_SIZE`` > 1): weights, gradients and
  optimizer state divided by the number of processes; with ``fsdp_offload`` they sit in host
  memory instead. Generation gathers the full weights on every process
  (:func:`r1agent.infra.distributed.fsdp_gathered`), so that peak is planned as well.

The device's memory is the CUDA device's total memory, or on CPU the memory the machine
has available (``MemAvailable``). :func:`memory_check` is what the trainer calls before
loading weights when ``check_memory`` is true: it logs the table and raises when the run
cannot fit, naming what to try. ``r1agent plan CONFIG`` prints the same table.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import AutoConfig

from r1agent.infra import lora
from r1agent.infra.config import GRPOConfig
from r1agent.infra.memory import DEFAULT_LORA_TARGETS, GIB, Estimate, Shape, estimate
from r1agent.infra.models import default_device

__all__ = [
    "BIG_MODEL_PARAMS",
    "PROMPT_TOKENS",
    "Plan",
    "check_fits",
    "device_memory",
    "host_available_memory",
    "memory_check",
    "plan",
    "read_model_config",
    "resolve_gradient_checkpointing",
]

logger = logging.getLogger(__name__)

#: Tokens allowed for the prompt (and, in multi-turn envs, the env's replies) per episode.
PROMPT_TOKENS = 512
#: Gradient checkpointing is on by default above this many parameters.
BIG_MODEL_PARAMS = 100_000_000
#: Parts FSDP2 shards over processes (and ``fsdp_offload`` moves to host memory).
SHARDED_PARTS = ("weights", "gradients", "optimizer (AdamW)")


@dataclass
class Plan:
    """The memory plan of one process of a run.

    Attributes:
        model: the model name or directory from the config.
        device: where the process trains (``"cuda:0"``, ``"cpu"``).
        device_memory: bytes the device has (CUDA total memory; available RAM on CPU).
        estimate: the training step's parts on the device, per process.
        seq_len: tokens per episode planned for.
        world: processes sharing the sharded parts (1 without FSDP).
        gradient_checkpointing: as resolved for this model.
        offloaded: parts held in host memory instead (``fsdp_offload``), bytes per process.
        generation_peak: FSDP: bytes on the device while generating with the full weights
            gathered (``None`` without FSDP).
        suggestions: settings that would lower the estimate.
    """

    model: str
    device: str
    device_memory: int
    estimate: Estimate
    seq_len: int
    world: int = 1
    gradient_checkpointing: bool = False
    offloaded: dict[str, int] = field(default_factory=dict)
    generation_peak: int | None = None
    suggestions: list[str] = field(default_factory=list)

    @property
    def peak(self) -> int:
        """The larger of the training step's total and the generation peak, in bytes."""
        return max(self.estimate.total, self.generation_peak or 0)

    @property
    def fits(self) -> bool:
        """Whether the peak is within the device's memory."""
        return self.peak <= self.device_memory

    def table(self) -> str:
        """The estimate as lines a user reads: parts, peak, device memory and the verdict."""
        lines = [
            f"model {self.model}: seq_len {self.seq_len}, gradient checkpointing "
            f"{'on' if self.gradient_checkpointing else 'off'}"
            + (f", FSDP over {self.world} processes" if self.world > 1 else ""),
            self.estimate.table(),
        ]
        for name, size in self.offloaded.items():
            label = name.split()[0] + " on host"
            lines.append(f"  {label:<22}{size / GIB:8.2f} GiB")
        if self.generation_peak is not None:
            lines.append(f"  {'generation (gathered)':<22}{self.generation_peak / GIB:8.2f} GiB")
        verdict = "fits" if self.fits else "does not fit"
        lines.append(
            f"peak {self.peak / GIB:.2f} GiB on {self.device} "
            f"({self.device_memory / GIB:.2f} GiB): {verdict}"
        )
        return "\n".join(lines)


def read_model_config(model: str) -> Any:
    """The model's ``PretrainedConfig`` (its ``config.json`` only; no weights are read).

    Raises:
        ValueError: naming ``model`` when its config cannot be read (missing directory,
            unknown hub id offline, no ``config.json``).
    """
    if model.startswith(("/", ".", "~")) and not os.path.isdir(os.path.expanduser(model)):
        raise ValueError(f"cannot read the config of model {model!r}: no such directory")
    try:  # a LoRA adapter directory: the config of the model under it
        return AutoConfig.from_pretrained(lora.root_base(os.path.expanduser(model)))
    except Exception as exc:  # OSError, HF validation and connection errors alike
        raise ValueError(f"cannot read the config of model {model!r}: {exc}") from exc


def resolve_gradient_checkpointing(config: GRPOConfig | Any, n_params: int) -> bool:
    """Whether to checkpoint activations: the setting, or (``None``) on above 100M params.

    Args:
        config: anything with a ``gradient_checkpointing`` attribute (``bool | None``).
        n_params: the model's parameter count.
    """
    setting = getattr(config, "gradient_checkpointing", None)
    if setting is None:
        return n_params > BIG_MODEL_PARAMS
    return bool(setting)


def host_available_memory() -> int:
    """Bytes of memory the machine has available (``MemAvailable``, else free pages)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def device_memory(device: torch.device) -> int:
    """Total memory of a CUDA device, or the host's available memory for the CPU.

    Raises:
        ValueError: for a CUDA device when CUDA is not available here.
    """
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device} is not available here; give the device's memory "
                "(r1agent plan --memory-gib N) to plan for it"
            )
        return int(torch.cuda.get_device_properties(device).total_memory)
    return host_available_memory()


def _lora_targets(targets: list[str] | str) -> tuple[str, ...]:
    """The decoder projections a LoRA ``target_modules`` setting wraps (names or suffixes)."""
    if targets == "all-linear":
        return DEFAULT_LORA_TARGETS
    return tuple(n for n in DEFAULT_LORA_TARGETS if any(t.split(".")[-1] == n for t in targets))


def _compute_bytes(config: GRPOConfig, device: torch.device) -> int:
    """Bytes per activation element: 2 under bf16 (autocast on CUDA, or ``dtype: bfloat16``)."""
    if config.dtype == "bfloat16":
        return 2
    if config.dtype == "float32" or device.type != "cuda":
        return 4
    return 2 if not torch.cuda.is_available() or torch.cuda.is_bf16_supported() else 4


def _storage(est: Estimate, shape: Shape, config: GRPOConfig) -> None:
    """Set the stored parts to the dtypes the trainer keeps them in.

    The trainer stores parameters in float32 unless ``dtype: bfloat16`` (under LoRA the
    frozen base too; ``lora.quantize`` stores its linear layers in 4 or 8 bits), the
    gradients and AdamW moments of full fine-tuning in the parameters' dtype, those of LoRA
    adapters in float32, and the reference model in the parameters' dtype.
    """
    n, trainable = est.parameters, est.trainable
    param_bytes = 2 if config.dtype == "bfloat16" else 4
    if config.lora is None:
        est.parts["weights"] = n * param_bytes
        est.parts["gradients"] = trainable * param_bytes
        est.parts["optimizer (AdamW)"] = trainable * 2 * param_bytes
    else:
        base = n * param_bytes
        if config.lora.quantize:
            linear = shape.layers * sum(a * b for a, b in shape.linear_shapes().values())
            bits = 8 if config.lora.quantize == "8bit" else 4
            base = (n - linear) * param_bytes + linear * bits // 8
        est.parts["weights"] = base + trainable * 4
    if "reference model" in est.parts:
        est.parts["reference model"] = n * param_bytes


def _suggestions(config: GRPOConfig, checkpointing: bool) -> list[str]:
    """Settings that lower the estimate, most effective first."""
    out = []
    if config.lora is None:
        out.append("lora={r: 16} (train adapters only: no full gradients or optimizer state)")
    elif config.lora.quantize is None:
        out.append("lora.quantize=4bit (QLoRA: the frozen base in 4 bits, CUDA only)")
    if not checkpointing:
        out.append("gradient_checkpointing=true")
    if config.micro_batch_size > 1:
        out.append(f"micro_batch_size={max(1, config.micro_batch_size // 2)} (or smaller)")
    if config.beta > 0 and config.lora is None:
        out.append("beta=0 (no reference model)")
    if config.dtype != "bfloat16":
        out.append("dtype=bfloat16 (parameters in bf16 instead of float32)")
    if not config.fsdp_offload:
        out.append(
            "fsdp=true fsdp_offload=true under torchrun with several processes "
            "(weights, gradients and optimizer state in host memory)"
        )
    return out


def _shard(est: Estimate, world: int, offload: bool) -> dict[str, int]:
    """Divide the sharded parts by ``world`` in place; move them out when offloading.

    Returns:
        The parts held in host memory (empty without offload).
    """
    host = {}
    for name in SHARDED_PARTS:
        if name in est.parts:
            share = est.parts[name] // world
            if offload:
                host[name] = share
                est.parts[name] = 0
            else:
                est.parts[name] = share
    return host


def plan(
    config: GRPOConfig,
    *,
    prompt_tokens: int = PROMPT_TOKENS,
    memory_bytes: int | None = None,
    world: int | None = None,
) -> Plan:
    """Plan the memory of one process of the run ``config`` describes.

    Args:
        config: the run config.
        prompt_tokens: tokens allowed for the prompt per episode.
        memory_bytes: the device's memory (default: measured on this machine).
        world: processes under FSDP (default: ``WORLD_SIZE``; ignored without ``fsdp``).

    Raises:
        ValueError: naming the model when its config cannot be read, or the device when
            its memory cannot be measured here.
    """
    shape = Shape.from_config(read_model_config(config.model))
    device = default_device() if config.device == "auto" else torch.device(config.device)
    checkpointing = resolve_gradient_checkpointing(config, shape.parameters())
    lora = config.lora
    est = estimate(
        shape,
        micro_batch_size=config.micro_batch_size,
        seq_len=prompt_tokens + config.max_new_tokens * config.max_turns,
        dtype_bytes=_compute_bytes(config, device),
        lora_r=lora.r if lora else None,
        lora_targets=_lora_targets(lora.target_modules) if lora else DEFAULT_LORA_TARGETS,
        gradient_checkpointing=checkpointing,
        reference=config.beta > 0 and lora is None,
        logits_chunk=config.logits_chunk,
    )
    _storage(est, shape, config)
    world = (world or int(os.environ.get("WORLD_SIZE", "1"))) if config.fsdp else 1
    full_weights = est.parts["weights"]
    host: dict[str, int] = {}
    generation_peak = None
    if world > 1:
        host = _shard(est, world, config.fsdp_offload)
        persistent = sum(v for k, v in est.parts.items() if k in SHARDED_PARTS)
        reference = est.parts.get("reference model", 0)
        generation_peak = persistent - est.parts["weights"] + full_weights + reference
    return Plan(
        model=config.model,
        device=str(device),
        device_memory=memory_bytes if memory_bytes is not None else device_memory(device),
        estimate=est,
        seq_len=prompt_tokens + config.max_new_tokens * config.max_turns,
        world=world,
        gradient_checkpointing=checkpointing,
        offloaded=host,
        generation_peak=generation_peak,
        suggestions=_suggestions(config, checkpointing),
    )


def check_fits(p: Plan) -> None:
    """Raise when the plan's peak exceeds the device's memory.

    Raises:
        ValueError: naming the model, each part in GiB, the device's memory and what to try.
    """
    if p.fits:
        return
    parts = ", ".join(f"{k} {v / GIB:.2f} GiB" for k, v in p.estimate.parts.items())
    if p.generation_peak is not None:
        parts += f"; generation with gathered weights {p.generation_peak / GIB:.2f} GiB"
    try_ = "".join(f"\n  - {s}" for s in p.suggestions) or "\n  - a device with more memory"
    raise ValueError(
        f"model {p.model!r} does not fit on {p.device}: estimated peak {p.peak / GIB:.2f} GiB "
        f"({parts}) > {p.device_memory / GIB:.2f} GiB of device memory. Try:{try_}\n"
        "(check_memory=false skips this check; the estimate is rough, within ~20%)"
    )


def memory_check(
    config: GRPOConfig, log: Callable[[str], Any] = logger.info, **kwargs: Any
) -> Plan:
    """Log the memory plan of ``config`` and raise when it cannot fit (before any weights load).

    Args:
        config: the run config.
        log: where the table goes (``logging.info`` of this module by default).
        **kwargs: passed to :func:`plan` (``prompt_tokens``, ``memory_bytes``, ``world``).

    Raises:
        ValueError: see :func:`check_fits` and :func:`plan`.
    """
    p = plan(config, **kwargs)
    log("memory plan\n" + p.table())
    check_fits(p)
    return p
