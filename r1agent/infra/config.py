"""GRPO run configuration: one pydantic model, YAML files and ``key=value`` overrides.

``load_config("run.yaml", ["lr=1e-5", "rollout.engine=vllm"])`` reads the YAML, applies
dotted overrides (values parsed as YAML scalars), validates, and checks consistency
before any work starts: the batch must be a multiple of the group size, every env id must
be registered (``import r1envs`` registers ours; ``"module:Env-v0"`` imports ``module``
first), weights must be positive. Errors name the offending value.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium as gym
import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

import r1envs  # noqa: F401  (registers the r1 ids)

__all__ = [
    "AsyncConfig",
    "GRPOConfig",
    "ImportanceConfig",
    "LoraConfig",
    "REPORTERS",
    "GRPOSettings",
    "RolloutConfig",
    "apply_overrides",
    "check_env_id",
    "load_config",
]


class RolloutConfig(BaseModel):
    """How completions are sampled."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["hf", "vllm", "vllm-server"] = Field(
        "hf",
        description="hf: batched KV-cache sampling; vllm: in-process vLLM; vllm-server: "
        "`r1agent serve` processes at rollout.servers, weights pushed after each update",
    )
    batch_size: int = Field(64, ge=1, description="prompts decoded together (hf engine)")
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="vLLM on GPU")
    vllm_max_model_len: int = Field(2048, ge=16, description="vLLM context length")
    vllm_sleep: Literal["auto"] | bool = Field(
        "auto",
        description="vllm: sleep mode between rollouts (weights to host memory, KV cache "
        "freed, so the update gets the GPU); auto: on with CUDA, off elsewhere; true needs CUDA",
    )
    grading_workers: int | None = Field(
        None,
        ge=0,
        description="episodes graded at once (threads or processes); None: 4 threads or 1 "
        "process per CPU; 0: one after another, no time limit",
    )
    grading_timeout: float = Field(
        300.0, gt=0, description="seconds one env step may take; a slower one fails its episode"
    )
    grading_pool: Literal["auto", "thread", "process"] = Field(
        "auto", description="auto (threads), thread, or process (a fresh env per step, replayed)"
    )
    servers: list[str] = Field(
        default_factory=list, description="vllm-server: base URLs (http://host:port), >= 1"
    )
    server_model: str | None = Field(
        None,
        description="vllm-server: the model name the servers serve (default: the run's model; "
        "when it differs, the run's weights are pushed to them before sampling)",
    )
    weight_transport: Literal["auto", "nccl", "http", "file"] = Field(
        "auto",
        description="vllm-server weight push: nccl (GPU), http (safetensors chunks), file "
        "(shared filesystem, weight_dir); auto: nccl for CUDA weights, else http",
    )
    weight_dir: str | None = Field(None, description="file transport: folder the servers see")
    server_timeout: float = Field(600.0, gt=0, description="seconds per server request")
    sync_port: int = Field(51216, ge=1, le=65535, description="first NCCL group port")

    @model_validator(mode="after")
    def _servers_for_server_engine(self) -> RolloutConfig:
        if self.engine == "vllm-server" and not self.servers:
            raise ValueError("rollout.engine vllm-server needs rollout.servers: [URL, ...]")
        bad = [u for u in self.servers if not u.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"rollout.servers must be http(s):// URLs, got: {bad}")
        return self


#: Where metrics go besides ``metrics.jsonl`` (always written): ``report_to`` choices.
REPORTERS = ("tensorboard", "wandb")


class LoraConfig(BaseModel):
    """LoRA adapters (PEFT) instead of full fine-tuning; QLoRA with ``quantize``."""

    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="adapter rank")
    alpha: float = Field(32.0, gt=0, description="scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the adapter input")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="module names (or suffixes) to wrap; all-linear: every linear layer "
        "of the decoder except the LM head",
    )
    quantize: Literal["4bit", "8bit"] | None = Field(
        None, description="QLoRA: load the frozen base quantized (bitsandbytes, CUDA only)"
    )


class AsyncConfig(BaseModel):
    """Overlapped generation and update (``async: {max_staleness: k}``)."""

    model_config = ConfigDict(extra="forbid")

    max_staleness: int = Field(
        1,
        ge=1,
        description="the samples of step s come from the weights after step s - k "
        "(optimizer steps behind the weights that learn from them, at most k)",
    )


class ImportanceConfig(BaseModel):
    """Truncated importance-sampling correction of the policy-gradient loss."""

    model_config = ConfigDict(extra="forbid")

    enabled: Literal["auto"] | bool = Field(
        "auto",
        description="auto: on when the sampler is not the trainer's own forward (vLLM engine) "
        "or samples are stale (async); true; false",
    )
    cap: float = Field(2.0, gt=0, description="weights min(pi_old / pi_sampler, cap)")
    level: Literal["token", "sequence"] = Field(
        "token", description="one weight per token, or per sequence (product of token ratios)"
    )


class GRPOConfig(BaseModel):
    """Everything a GRPO run needs; derived values are properties."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    model: str = Field(..., description="HF model directory or hub id")
    output_dir: str = Field("runs/grpo", description="run directory (final model written here)")
    envs: dict[str, float] = Field(..., description="env id -> sampling weight")
    env_kwargs: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="gym.make kwargs per env id"
    )
    prompt_format: Literal["observation", "chat"] = Field(
        "observation", description="observation as is, or info['messages'] via chat template"
    )
    steps: int = Field(100, ge=1, description="optimizer steps (batches)")
    prompts_per_step: int = Field(8, ge=1, description="distinct problems per batch (per process)")
    group_size: int = Field(8, ge=2, description="episodes per problem (G)")
    batch_size: int | None = Field(
        None, description="episodes per batch; must equal prompts_per_step * group_size if set"
    )
    max_new_tokens: int = Field(128, ge=1, description="tokens per policy turn")
    min_new_tokens: int = Field(0, ge=0, description="eos forbidden before this many tokens")
    max_turns: int = Field(4, ge=1, description="policy turns per episode (multi-turn envs)")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (also in the loss)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    lr: float = Field(1e-5, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0, description="linear warm-up to lr")
    lr_scheduler: Literal["constant", "linear", "cosine"] = Field(
        "constant", description="after the warm-up: lr held, or decayed towards 0 by the last step"
    )
    max_grad_norm: float = Field(1.0, gt=0, description="gradient clipping")
    beta: float = Field(0.0, ge=0, description="KL coefficient (k3); 0 = no reference model")
    eps_low: float = Field(0.2, gt=0, description="ratio clip floor 1 - eps_low")
    eps_high: float = Field(0.28, gt=0, description="ratio clip ceiling 1 + eps_high (DAPO)")
    updates_per_batch: int = Field(1, ge=1, description="mu: optimizer steps on each batch")
    micro_batch_size: int = Field(64, ge=1, description="episodes per forward/backward")
    loss_aggregation: Literal["token_mean", "sequence_mean", "constant"] = Field(
        "token_mean", description="DAPO token mean, DeepSeekMath sequence mean, Dr. GRPO constant"
    )
    scale_rewards: bool = Field(True, description="divide advantages by group std (off: Dr. GRPO)")
    dynamic_sampling: bool = Field(False, description="drop all-equal groups and refill (DAPO)")
    max_refills: int = Field(4, ge=0, description="extra sampling rounds for dynamic sampling")
    mask_truncated: bool = Field(False, description="no loss on completions cut at the limit")
    error_rate_warn: float = Field(
        0.2,
        ge=0,
        le=1,
        description="warn when more than this share of a step's episodes failed "
        "(info['error'] set: an infrastructure fault, or an env exception)",
    )
    seed: int = Field(0, description="run seed (prompts, sampling, init)")
    seed_range: int = Field(10_000_000, ge=1, description="env seeds drawn below this")
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    fsdp: bool = Field(False, description="FSDP2 instead of DDP under torchrun")
    fsdp_offload: bool = Field(
        False, description="FSDP2: keep parameters, gradients and optimizer state on the CPU"
    )
    lora: LoraConfig | None = Field(None, description="train LoRA adapters (PEFT) only")
    gradient_checkpointing: bool | None = Field(
        None,
        description="recompute each layer's activations in backward (None: on for models "
        "over 100M parameters)",
    )
    logits_chunk: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto",
        description="positions projected through the LM head at a time in the loss (auto: "
        "blocks of about 128 MB of float32 logits)",
    )
    check_memory: bool = Field(
        True, description="estimate memory before loading weights; stop if it cannot fit"
    )
    forward: Literal["auto", "hf", "fast"] = Field(
        "auto",
        description="auto: the CPU accelerator (fastlm) on CPU in float32 for supported "
        "models, Hugging Face's forward elsewhere; hf; fast (policy and reference alike)",
    )
    threads: int = Field(0, ge=0, description="torch threads (0: auto, 1 for small CPU models)")
    save_every: int = Field(0, ge=0, description="checkpoint every N steps (0: final only)")
    keep_checkpoints: int = Field(2, ge=1, description="step checkpoints kept")
    resume: bool = Field(True, description="continue from the last checkpoint in output_dir")
    sample_every: int = Field(10, ge=0, description="log sample completions every N steps")
    tensorboard: bool = Field(True, description="shorthand: tensorboard in report_to")
    report_to: list[str] | None = Field(
        None,
        description="metrics sinks besides metrics.jsonl: tensorboard, wandb "
        "(None: tensorboard when tensorboard is true; [] for none)",
    )
    run_name: str | None = Field(None, description="run name for W&B (default: output_dir's name)")
    eval_every: int = Field(0, ge=0, description="evaluate held-out pass@1 every N steps (0: off)")
    eval_problems: int = Field(64, ge=1, description="held-out problems per evaluation")
    plots: bool = True
    progress: bool = True
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    asynchronous: AsyncConfig | None = Field(
        None,
        alias="async",
        description="overlap generation (background thread) with the update; None: off",
    )
    is_correction: ImportanceConfig = Field(
        default_factory=ImportanceConfig,
        description="truncated importance weights for off-policy samples",
    )

    @property
    def reporters(self) -> list[str]:
        """The metrics sinks in effect (``report_to``, or tensorboard per ``tensorboard``)."""
        if self.report_to is not None:
            return list(dict.fromkeys(self.report_to))
        return ["tensorboard"] if self.tensorboard else []

    @property
    def episodes_per_step(self) -> int:
        """Episodes per batch (per process): ``prompts_per_step * group_size``."""
        return self.prompts_per_step * self.group_size

    @model_validator(mode="after")
    def _consistent(self) -> GRPOConfig:
        if self.batch_size is not None:
            if self.batch_size % self.group_size:
                raise ValueError(
                    f"batch_size must be divisible by group_size, batch_size: {self.batch_size}, "
                    f"group_size: {self.group_size}"
                )
            if self.batch_size != self.episodes_per_step:
                self.prompts_per_step = self.batch_size // self.group_size
        if self.min_new_tokens > self.max_new_tokens:
            raise ValueError(
                f"min_new_tokens must be <= max_new_tokens, min_new_tokens: "
                f"{self.min_new_tokens}, max_new_tokens: {self.max_new_tokens}"
            )
        if not self.envs:
            raise ValueError("envs must name at least one env id, envs: {}")
        for env_id, w in self.envs.items():
            if not w > 0:
                raise ValueError(f"env weights must be > 0, envs[{env_id!r}]: {w}")
            check_env_id(env_id)
        bad = [r for r in self.report_to or [] if r not in REPORTERS]
        if bad:
            raise ValueError(f"report_to entries must be among {list(REPORTERS)}, report_to: {bad}")
        unknown = set(self.env_kwargs) - set(self.envs)
        if unknown:
            raise ValueError(f"env_kwargs names env ids not in envs: {sorted(unknown)}")
        return self


#: Fields a recipe sets itself when it runs GRPO as one of its stages.
STAGE_SET_FIELDS = ("model", "output_dir", "envs", "env_kwargs")


class _Settings(BaseModel):
    """Base of :data:`GRPOSettings`: also readable as a mapping (``settings["lr"]``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def overrides(self) -> dict[str, Any]:
        """The settings given explicitly, as ``load_config`` overrides."""
        return self.model_dump(exclude_unset=True)


#: The GRPO settings of a pipeline or distillation stage: every :class:`GRPOConfig` field
#: except :data:`STAGE_SET_FIELDS`, same types and defaults, unknown keys rejected — so a
#: typo in ``stage4.grpo`` is named when the config loads, before any stage runs.
GRPOSettings: type[_Settings] = create_model(  # type: ignore[call-overload]
    "GRPOSettings",
    __base__=_Settings,
    **{
        name: (f.annotation, f)
        for name, f in GRPOConfig.model_fields.items()
        if name not in STAGE_SET_FIELDS
    },
)


def check_env_id(env_id: str) -> None:
    """Raise ``ValueError`` naming ``env_id`` when Gymnasium does not know it."""

    name = env_id
    if ":" in env_id:
        module, name = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"cannot import the module of env id {env_id!r}: {exc}") from exc
    if name not in gym.registry:
        near = [
            k
            for k in gym.registry
            if k.split("/")[-1].lower()[:4] == name.split("/")[-1].lower()[:4]
        ]
        raise ValueError(
            f"unknown env id: {env_id!r}" + (f" (did you mean {near[:3]}?)" if near else "")
        )


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ValueError(f"override {key!r}: {p!r} is not a section (value: {child!r})")
        node = child
    node[parts[-1]] = value


def apply_overrides(
    data: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any] | None
) -> dict[str, Any]:
    """Return a copy of ``data`` with overrides applied.

    Args:
        data: the parsed config.
        overrides: ``["a.b=1", ...]`` (values parsed as YAML) or a mapping of dotted keys
            (or nested dicts) to values.

    Raises:
        ValueError: for an override without ``=``.
    """
    out: dict[str, Any] = yaml.safe_load(yaml.safe_dump(dict(data))) or {}
    if not overrides:
        return out
    if isinstance(overrides, Mapping):
        items = list(overrides.items())
    else:
        items = []
        for item in overrides:
            if "=" not in item:
                raise ValueError(f"override must look like key=value, got: {item!r}")
            k, v = item.split("=", 1)
            items.append((k.strip(), yaml.safe_load(v)))
    for k, v in items:
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            merged = dict(out[k])
            merged.update(v)
            v = merged
        _set_dotted(out, k, v)
    return out


def load_config(
    source: str | Path | Mapping[str, Any],
    overrides: Sequence[str] | Mapping[str, Any] | None = None,
    **fields: Any,
) -> GRPOConfig:
    """Build a validated :class:`GRPOConfig`.

    Args:
        source: a YAML file path or an in-memory mapping.
        overrides: ``key=value`` strings or a mapping (see :func:`apply_overrides`).
        **fields: more fields set last (``None`` values are ignored).

    Raises:
        FileNotFoundError: for a missing YAML file.
        pydantic.ValidationError: for invalid or inconsistent settings (names the field).
    """
    if isinstance(source, Mapping):
        data: Mapping[str, Any] = source
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {str(path)!r}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, Mapping):
            raise ValueError(
                f"config file {str(path)!r} must hold a mapping, got {type(data).__name__}"
            )
    merged = apply_overrides(data, overrides)
    for k, v in fields.items():
        if v is not None:
            merged[k] = v
    return GRPOConfig.model_validate(merged)
