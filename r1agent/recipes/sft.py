"""Supervised fine-tuning recipe: response-only loss over packed rows, saved as a checkpoint.

Used by stage 1 (cold start), stage 3 (SFT of the base model on rejection-sampled data),
distillation and stage-0 language-model pretraining (``loss_on="all"``). The examples,
their tokenization and packing live in :mod:`r1agent.data.sft`; this module holds the
configuration, the losses and :func:`train_sft`, the loop.

* The loss covers response tokens only (``loss_on="response"``), averaged over all response
  tokens of the batch (token-level mean).
* The loss projects only the positions that have a label through the LM head, a chunk at a
  time (:mod:`r1agent.rl.chunked`): ``(rows, tokens, vocab)`` logits never exist.
* Mixed precision (``dtype: auto``): on a GPU the weights and AdamW's state stay in float32
  (master weights; a bfloat16 model passed in is upcast for training and saved back in
  bfloat16) and the forward and backward run under bfloat16 autocast. ``dtype: bfloat16``
  trains the bfloat16 weights directly (half the memory; AdamW updates smaller than a
  bfloat16 step of the weight are lost). On a CPU training is in float32.
* ``lora``: train PEFT LoRA adapters only; the output directory then holds the adapter
  (:func:`r1agent.infra.models.load_model` reads it as the merged model; ``r1agent merge``
  writes a plain one). ``gradient_checkpointing`` as in GRPO (on above 100M parameters).
* Shared prompt prefix (``share_prefix``): when most prompts start with the same tokens (a
  system template such as R1-Zero's), each step runs that prefix once, repeats its key/value
  cache over the batch and runs only the rest of each example on top of it. The loss and its
  gradient are the same as the packed computation's (to float rounding); the work is not: on
  the demo's arithmetic prompts (92 prompt tokens, 82 of them the template, ~51 response
  tokens) a step processes well under half the tokens.

Run: ``r1agent sft CONFIG.yaml key=value ...`` (see :class:`SFTConfig`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from r1agent.accel.cpu import cpu_threads, small_model_threads
from r1agent.data.sft import (
    IGNORE_INDEX,
    Example,
    build_rows,
    collate,
    shared_prefix,
    split_by_prefix,
    tokenize_example,
)
from r1agent.infra import lora as lora_lib
from r1agent.infra.checkpoint import atomic_save_pretrained
from r1agent.infra.config import LoraConfig
from r1agent.infra.plan import resolve_gradient_checkpointing
from r1agent.rl.batch import output_head
from r1agent.rl.chunked import DEFAULT_CHUNK, chunked_logprobs

log = logging.getLogger(__name__)

__all__ = ["SFTConfig", "batch_loss", "lr_at", "response_loss", "train_sft"]


class SFTConfig(BaseModel):
    """Configuration of an SFT run (YAML + ``key=value`` overrides)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field("", description="model directory or hub id to start from")
    data: list[str] = Field(
        default_factory=list, description="JSONL files of {prompt, response} examples"
    )
    output_dir: str = Field("", description="where the checkpoint(s) go")
    epochs: float = Field(2.0, gt=0, description="passes over the data (fractions allowed)")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    lr: float = Field(1e-3, gt=0, description="peak learning rate (AdamW)")
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine floor as a share of lr")
    warmup_steps: int = Field(10, ge=0, description="linear warm-up steps")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    batch_size: int = Field(16, ge=1, description="rows per optimizer step")
    max_len: int = Field(512, ge=8, description="tokens per row (examples are cut to this)")
    packing: bool = Field(True, description="pack short examples into shared rows")
    share_prefix: bool = Field(
        True, description="run a prompt prefix most examples share once per step (same loss)"
    )
    loss_on: Literal["response", "all"] = Field("response", description="which tokens count")
    grad_clip: float = Field(1.0, gt=0, description="max gradient norm")
    save_steps: list[int] = Field(
        default_factory=list, description="also save checkpoint-<step> at these steps"
    )
    seed: int = Field(0, description="shuffling and init seed")
    log_every: int = Field(10, ge=1, description="log a metrics line every N steps")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto",
        description="auto: float32 master weights with bfloat16 autocast on a GPU, float32 "
        "on a CPU; bfloat16: train bfloat16 weights directly",
    )
    lora: LoraConfig | None = Field(None, description="train LoRA adapters (PEFT) only")
    gradient_checkpointing: bool | None = Field(
        None, description="recompute activations in backward (None: on above 100M parameters)"
    )
    logits_chunk: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        DEFAULT_CHUNK,
        description="labelled positions projected through the LM head at a time (auto: "
        "blocks of about 128 MB of float32 logits)",
    )


def response_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Token-mean cross-entropy of next-token predictions where labels are set.

    Args:
        logits: ``(B, T, V)``.
        labels: ``(B, T)`` with :data:`IGNORE_INDEX` where no loss applies.

    Returns:
        ``(loss, number of target tokens)``.
    """
    shift_logits = logits[:, :-1].reshape(-1, logits.size(-1))  # (B*(T-1), V)
    shift_labels = labels[:, 1:].reshape(-1)  # (B*(T-1),)
    n = int((shift_labels != IGNORE_INDEX).sum())
    if n == 0:
        return logits.sum() * 0.0, 0
    loss = torch.nn.functional.cross_entropy(
        shift_logits.float(), shift_labels, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return loss / n, n


def hidden_loss(
    model: Any, hidden: torch.Tensor, labels: torch.Tensor, chunk: int | str = DEFAULT_CHUNK
) -> tuple[torch.Tensor, int]:
    """Summed next-token cross-entropy where labels are set, from final hidden states
    ``(B, T, H)``: only labelled positions go through the LM head, ``chunk`` at a time.

    Returns:
        ``(summed loss, number of target tokens)``.
    """
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    n = int(keep.sum())
    if n == 0:
        return hidden.sum() * 0.0, 0
    logp = chunked_logprobs(hidden[:, :-1][keep], output_head(model), targets[keep], chunk=chunk)
    return -logp.sum(), n


def _hidden(model: Any, **inputs: Any) -> tuple[torch.Tensor, Any]:
    """Final hidden states (after the last norm) and the returned cache of a forward that
    computes the logits of one position only."""
    out = model(**inputs, output_hidden_states=True, logits_to_keep=1)
    return out.hidden_states[-1], getattr(out, "past_key_values", None)


def prefix_shared_loss(
    model: Any,
    prefix: Sequence[int],
    segments: Sequence[tuple[list[int], list[int]]],
    pad_id: int,
    chunk: int | str = DEFAULT_CHUNK,
) -> tuple[torch.Tensor, int] | None:
    """Summed response loss of ``segments`` that all start with ``prefix``, prefix run once.

    The prefix's key/value cache (batch 1) is repeated over the segments; their remaining
    tokens run on top of it (right-padded, 2D mask, positions continuing after the prefix).

    Returns:
        ``(summed loss, number of target tokens)``, or ``None`` when the model returns no
        cache that can be repeated over a batch.
    """
    device = next(model.parameters()).device
    n = len(prefix)
    out = model(
        input_ids=torch.tensor([list(prefix)], device=device), use_cache=True, logits_to_keep=1
    )
    past = getattr(out, "past_key_values", None)
    if not hasattr(past, "batch_repeat_interleave"):
        return None  # the model keeps no repeatable cache: the caller runs the plain forward
    past.batch_repeat_interleave(len(segments))
    width = max(len(ids) - n for ids, _ in segments)
    b = len(segments)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    labels = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((b, n + width), dtype=torch.long)
    mask[:, :n] = 1
    for r, (ids, lab) in enumerate(segments):
        k = len(ids) - n
        input_ids[r, :k] = torch.tensor(ids[n:])
        labels[r, :k] = torch.tensor(lab[n:])
        mask[r, n : n + k] = 1
    positions = torch.arange(n, n + width).expand(b, width)
    hidden, _ = _hidden(
        model,
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        past_key_values=past,
        use_cache=True,
    )  # (B, width, H); position 0 predicts a prompt token (no loss)
    return hidden_loss(model, hidden, labels.to(device), chunk)


def batch_loss(
    model: Any,
    rows: Sequence[Sequence[tuple[list[int], list[int]]]],
    pad_id: int,
    prefix: Sequence[int] = (),
    chunk: int | str = DEFAULT_CHUNK,
) -> tuple[torch.Tensor, int]:
    """Token-mean response loss of a batch of rows; segments with ``prefix`` share its run;
    the LM head projects ``chunk`` labelled positions at a time."""
    device = next(model.parameters()).device
    if prefix:
        members, others = split_by_prefix([seg for row in rows for seg in row], prefix)
    else:
        members, others = [], []
    total, count = None, 0
    shared = prefix_shared_loss(model, prefix, members, pad_id, chunk) if members else None
    if shared is not None:
        total, count = shared
        rows = [[seg] for seg in others]
    if rows:
        batch = {k: v.to(device) for k, v in collate(rows, pad_id).items()}
        hidden, _ = _hidden(
            model,
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        )
        loss, n = hidden_loss(model, hidden, batch["labels"], chunk)
        total = loss if total is None else total + loss
        count += n
    assert total is not None
    if count == 0:
        return total * 0.0, 0
    return total / count, count


def lr_at(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Warm-up then cosine decay multiplier (1.0 at the peak) for a 0-based step."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def train_sft(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    config: SFTConfig,
    *,
    on_save: Callable[[int, Path], bool | None] | None = None,
    metrics_path: str | Path | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` in place on ``examples`` and save it to ``config.output_dir``.

    Args:
        model: a causal LM (trained in place).
        tokenizer: its tokenizer (saved with every checkpoint).
        examples: the training examples.
        config: the run's configuration.
        on_save: called with ``(step, path)`` after each intermediate checkpoint (model in
            eval mode); returning ``True`` stops training there (the final save is that model).
        metrics_path: JSONL file for per-step metrics (default ``output_dir/sft_metrics.jsonl``).

    Returns:
        A summary: steps, final loss, tokens seen, seconds.

    Raises:
        ValueError: if there are no examples.
    """
    if not examples:
        raise ValueError("SFT needs at least one example, examples: []")
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics_file = Path(metrics_path) if metrics_path else out / "sft_metrics.jsonl"
    torch.manual_seed(config.seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [tokenize_example(tokenizer, ex, config.max_len, config.loss_on) for ex in examples]
    rows = build_rows(encoded, config.max_len, config.packing)
    prefix = shared_prefix(encoded) if config.share_prefix else []
    steps_per_epoch = max(1, math.ceil(len(rows) / config.batch_size))
    total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    trained, precision = prepare_model(model, config)
    params = [p for p in trained.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    trained.train()
    t0, loss_val, tokens = time.time(), float("nan"), 0
    batches = _shuffled_batches(len(rows), config.batch_size, random.Random(config.seed))
    step_fn = functools.partial(
        _step,
        trained,
        opt,
        pad_id=pad_id,
        prefix=prefix,
        grad_clip=config.grad_clip,
        chunk=config.logits_chunk,
        autocast=precision.autocast,
    )
    # small models train faster single-threaded on CPU (OpenMP barriers cost more than they save)
    with cpu_threads(small_model_threads(model)), metrics_file.open("a", encoding="utf-8") as mf:
        for step, batch_idx in zip(range(total), batches, strict=False):
            lr = config.lr * lr_at(step, total, config.warmup_steps, config.min_lr_ratio)
            loss_val, n, grad_norm = step_fn([rows[i] for i in batch_idx], lr=lr)
            tokens += n
            _log_step(mf, step + 1, total, config.log_every, loss_val, grad_norm, lr, tokens, t0)
            if step + 1 in config.save_steps and step + 1 < total:
                if _save_intermediate(out, step + 1, trained, tokenizer, on_save):
                    total = step + 1
                    break
    trained.eval()
    precision.restore()
    _set_eos(model, tokenizer)
    atomic_save_pretrained(out, trained, tokenizer)
    summary = {
        "steps": total,
        "final_loss": loss_val,
        "tokens": tokens,
        "examples": len(examples),
        "rows": len(rows),
        "shared_prefix_tokens": len(prefix),
        "seconds": round(time.time() - t0, 2),
    }
    (out / "sft_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


@dataclass
class Precision:
    """How a run computes: ``autocast`` is the forward's mixed-precision context;
    ``restore`` puts a bfloat16 model that was upcast for training back in bfloat16."""

    autocast: Callable[[], Any]
    restore: Callable[[], None]


def prepare_model(model: Any, config: SFTConfig) -> tuple[Any, Precision]:
    """The module to train (``model``, or ``model`` with LoRA adapters) and its precision.

    On a GPU with ``dtype: auto`` a bfloat16 model is upcast to float32 master weights (only
    the trainable ones under LoRA) and the forward runs under bfloat16 autocast; gradient
    checkpointing is switched on as configured (``None``: above 100M parameters).

    Raises:
        ValueError: for a LoRA target that matches no linear layer.
    """
    device = next(model.parameters()).device
    n_params = sum(p.numel() for p in model.parameters())
    restore: Callable[[], None] = lambda: None  # noqa: E731
    autocast: Callable[[], Any] = contextlib.nullcontext
    if config.dtype == "auto" and device.type == "cuda":
        if config.lora is None and next(model.parameters()).dtype != torch.float32:
            model.float()
            restore = lambda: model.to(torch.bfloat16) and None  # noqa: E731
        autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    checkpointing = resolve_gradient_checkpointing(config, n_params)  # None: on above 100M
    if checkpointing and hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    trained = model
    if config.lora is not None and not lora_lib.is_peft(model):
        trained = lora_lib.apply_lora(model, config.lora)
        if config.dtype == "auto" and device.type == "cuda":
            for p in trained.parameters():
                if p.requires_grad:
                    p.data = p.data.float()  # adapters train in float32 under autocast
    return trained, Precision(autocast, restore)


def _log_step(
    mf: Any,
    step: int,
    total: int,
    log_every: int,
    loss: float,
    grad_norm: float,
    lr: float,
    tokens: int,
    t0: float,
) -> None:
    """Append step ``step``'s metrics to the JSONL file; a log line every ``log_every``."""
    record = {
        "step": step,
        "sft/loss": loss,
        "sft/grad_norm": grad_norm,
        "sft/lr": lr,
        "sft/tokens": tokens,
        "sft/seconds": round(time.time() - t0, 3),
    }
    mf.write(json.dumps(record) + "\n")
    mf.flush()
    if step % log_every == 0 or step == total:
        log.info("sft step %d/%d loss %.4f", step, total, loss)


def _shuffled_batches(n: int, batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Row indices in batches: epochs shuffled by ``rng``, a batch may span two epochs."""
    order: list[int] = []
    while True:
        if len(order) < batch_size:
            fresh = list(range(n))
            rng.shuffle(fresh)
            order += fresh
        yield order[:batch_size]
        order = order[batch_size:]


def _step(
    model: Any,
    opt: torch.optim.Optimizer,
    batch: list[Any],
    *,
    pad_id: int,
    prefix: Sequence[int],
    lr: float,
    grad_clip: float,
    chunk: int | str = DEFAULT_CHUNK,
    autocast: Callable[[], Any] = contextlib.nullcontext,
) -> tuple[float, int, float]:
    """One optimizer step at learning rate ``lr``; ``(loss, response tokens, grad norm)``."""
    for g in opt.param_groups:
        g["lr"] = lr
    with autocast():
        loss, n = batch_loss(model, batch, pad_id, prefix, chunk)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in opt.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
    opt.step()
    return float(loss.detach()), n, float(grad_norm)


def _save_intermediate(
    out: Path,
    step: int,
    model: Any,
    tokenizer: Any,
    on_save: Callable[[int, Path], bool | None] | None,
) -> bool:
    """Save ``out/checkpoint-STEP`` and ask ``on_save`` (model in eval mode) whether to stop."""
    path = atomic_save_pretrained(out / f"checkpoint-{step}", model, tokenizer)
    if on_save is None:
        return False
    model.eval()
    stop = on_save(step, path)
    model.train()
    return bool(stop)


def _set_eos(model: Any, tokenizer: Any) -> None:
    """Make plain ``generate`` stop at the tokenizer's eos."""
    gc = getattr(model, "generation_config", None)
    if gc is not None and tokenizer.eos_token_id is not None:
        gc.eos_token_id = tokenizer.eos_token_id
        if tokenizer.pad_token_id is not None:
            gc.pad_token_id = tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        model.config.eos_token_id = tokenizer.eos_token_id
