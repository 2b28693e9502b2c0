"""Supervised fine-tuning: response-only loss, packing of short examples.

Used by stage 1 (cold start), stage 3 (SFT of the base model on rejection-sampled data),
distillation and stage-0 language-model pretraining (``loss_on="all"``).

Design decisions:

* An example is a ``(prompt, response)`` pair. The prompt is tokenized exactly as a user
  of plain transformers would (``tokenizer(prompt)``, default special tokens), the response
  separately (no special tokens) and followed by ``eos_token``, so the model learns to stop
  where ``generate`` stops and train/inference tokenization agree at the boundary.
* The loss covers response tokens only (``loss_on="response"``), averaged over all response
  tokens of the batch (token-level mean).
* Packing: short examples are packed first-fit-decreasing into rows of ``max_len`` tokens;
  each keeps its own position ids and a block-diagonal causal mask (a 4D attention mask), so a
  packed row computes exactly what the examples would alone.
* Shared prompt prefix (``share_prefix``): when most prompts start with the same tokens (a
  system template such as R1-Zero's), each step runs that prefix once, repeats its key/value
  cache over the batch and runs only the rest of each example on top of it. The loss and its
  gradient are the same as the packed computation's (to float rounding); the work is not: on
  the demo's arithmetic prompts (92 prompt tokens, 82 of them the template, ~51 response
  tokens) a step processes well under half the tokens.

Run: ``r1agent sft CONFIG.yaml key=value ...`` (see :class:`SFTConfig`).
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from r1agent.checkpoint import atomic_save_pretrained
from r1agent.models import cpu_threads, retain_freed_memory, small_model_threads
from r1envs.loaders import iter_jsonl

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One SFT example: the prompt as fed to the model and the target response."""

    prompt: str
    response: str


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


# --------------------------------------------------------------------------- data


def read_examples(path: str | Path) -> list[Example]:
    """Read ``{"prompt", "response"}`` JSONL (``answer`` is accepted for ``response``).

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: naming the file and line of a malformed record.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SFT data file not found, path: {str(path)!r}")
    examples = []
    for lineno, rec in iter_jsonl(path):
        response = rec.get("response", rec.get("answer"))
        prompt = rec.get("prompt")
        if not isinstance(prompt, str) or not isinstance(response, str) or not response:
            raise ValueError(
                f"{path}:{lineno}: need string 'prompt' and non-empty 'response', "
                f"keys: {sorted(rec)}"
            )
        examples.append(Example(prompt, response))
    if not examples:
        raise ValueError(f"SFT data file has no examples, path: {str(path)!r}")
    return examples


def write_examples(path: str | Path, examples: Iterable[Example]) -> int:
    """Write examples as ``{"prompt", "response"}`` JSONL; returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps({"prompt": ex.prompt, "response": ex.response}) + "\n")
            n += 1
    return n


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Prompt token ids exactly as ``tokenizer(prompt)`` gives them (what ``generate`` sees)."""
    return list(tokenizer(prompt)["input_ids"])


def tokenize_example(
    tokenizer: Any, example: Example, max_len: int, loss_on: str = "response"
) -> tuple[list[int], list[int]]:
    """Token ids and labels of one example (response + eos; prompt labels ignored).

    Returns:
        ``(input_ids, labels)`` of equal length, cut to ``max_len``.
    """
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos_token; SFT targets must end with one")
    p = encode_prompt(tokenizer, example.prompt) if example.prompt else []
    r = list(tokenizer(example.response, add_special_tokens=False)["input_ids"])
    r.append(tokenizer.eos_token_id)
    ids = p + r
    labels = (list(p) if loss_on == "all" else [IGNORE_INDEX] * len(p)) + r
    return ids[:max_len], labels[:max_len]


def pack(lengths: Sequence[int], max_len: int) -> list[list[int]]:
    """First-fit-decreasing packing of sequence lengths into rows of ``max_len``.

    Returns:
        Rows as lists of example indices; every index appears exactly once.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    rows: list[list[int]] = []
    free: list[int] = []
    for i in order:
        n = min(lengths[i], max_len)
        for r, space in enumerate(free):
            if n <= space:
                rows[r].append(i)
                free[r] -= n
                break
        else:
            rows.append([i])
            free.append(max_len - n)
    return rows


def collate(
    rows: Sequence[Sequence[tuple[list[int], list[int]]]], pad_id: int
) -> dict[str, torch.Tensor]:
    """Batch packed rows: ids, labels, position ids and a block-diagonal causal 4D mask.

    Args:
        rows: each row is a list of ``(input_ids, labels)`` segments.
        pad_id: the padding token id.

    Returns:
        ``input_ids``, ``labels``, ``position_ids`` of shape ``(B, T)`` and a boolean
        ``attention_mask`` of shape ``(B, 1, T, T)``.
    """
    width = max(sum(len(ids) for ids, _ in row) for row in rows)
    b = len(rows)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    labels = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
    position_ids = torch.zeros((b, width), dtype=torch.long)
    segment = torch.full((b, width), -1, dtype=torch.long)  # (B, T); -1 = padding
    for r, row in enumerate(rows):
        at = 0
        for s, (ids, lab) in enumerate(row):
            n = len(ids)
            input_ids[r, at : at + n] = torch.tensor(ids)
            labels[r, at : at + n] = torch.tensor(lab)
            position_ids[r, at : at + n] = torch.arange(n)
            segment[r, at : at + n] = s
            at += n
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool))  # (T, T)
    same = segment[:, :, None] == segment[:, None, :]  # (B, T, T)
    mask = same & causal & (segment[:, :, None] >= 0)
    mask |= torch.eye(width, dtype=torch.bool)  # padding attends to itself (no NaN rows)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": position_ids,
        "attention_mask": mask[:, None],  # (B, 1, T, T)
    }


def build_rows(
    encoded: Sequence[tuple[list[int], list[int]]], max_len: int, packing: bool
) -> list[list[tuple[list[int], list[int]]]]:
    """Group encoded examples into rows (packed, or one example per row)."""
    if not packing:
        return [[e] for e in encoded]
    return [[encoded[i] for i in row] for row in pack([len(e[0]) for e in encoded], max_len)]


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


def prompt_length(labels: Sequence[int]) -> int:
    """Leading positions without a loss (the prompt, when the loss is on the response)."""
    n = 0
    while n < len(labels) and labels[n] == IGNORE_INDEX:
        n += 1
    return n


def shared_prefix(encoded: Sequence[tuple[list[int], list[int]]], min_len: int = 8) -> list[int]:
    """The longest prompt prefix shared by the largest group of examples (``[]`` if none).

    Examples are grouped by their first ``min_len`` prompt tokens; the biggest group (at
    least two examples) gives the prefix: its members' common prompt tokens, kept at least one
    token short of every member's prompt, so that every loss position lies after it.
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ids, labels) in enumerate(encoded):
        if prompt_length(labels) > min_len:
            groups.setdefault(tuple(ids[:min_len]), []).append(i)
    if not groups:
        return []
    members = max(groups.values(), key=len)
    if len(members) < 2:
        return []
    first = encoded[members[0]][0]
    limit = min(prompt_length(encoded[i][1]) for i in members) - 1
    n = min_len
    while n < limit and all(encoded[i][0][n] == first[n] for i in members):
        n += 1
    return list(first[:n])


def split_by_prefix(
    segments: Sequence[tuple[list[int], list[int]]], prefix: Sequence[int]
) -> tuple[list[tuple[list[int], list[int]]], list[tuple[list[int], list[int]]]]:
    """``(with the prefix, without)``; a member's prompt is longer than the prefix."""
    n = len(prefix)
    prefix = list(prefix)
    members, others = [], []
    for seg in segments:
        ids, labels = seg
        is_member = n > 0 and ids[:n] == prefix and prompt_length(labels) > n
        (members if is_member else others).append(seg)
    return members, others


def prefix_shared_loss(
    model: Any,
    prefix: Sequence[int],
    segments: Sequence[tuple[list[int], list[int]]],
    pad_id: int,
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
    out = model(input_ids=torch.tensor([list(prefix)], device=device), use_cache=True)
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
    logits = model(
        input_ids=input_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=positions.to(device),
        past_key_values=past,
        use_cache=True,
    ).logits  # (B, width, V); position 0 predicts a prompt token (no loss)
    loss, count = response_loss(logits, labels.to(device))
    return loss * count, count


def batch_loss(
    model: Any,
    rows: Sequence[Sequence[tuple[list[int], list[int]]]],
    pad_id: int,
    prefix: Sequence[int] = (),
) -> tuple[torch.Tensor, int]:
    """Token-mean response loss of a batch of rows; segments with ``prefix`` share its run."""
    device = next(model.parameters()).device
    if prefix:
        members, others = split_by_prefix([seg for row in rows for seg in row], prefix)
    else:
        members, others = [], []
    total, count = None, 0
    shared = prefix_shared_loss(model, prefix, members, pad_id) if members else None
    if shared is not None:
        total, count = shared
        rows = [[seg] for seg in others]
    if rows:
        batch = {k: v.to(device) for k, v in collate(rows, pad_id).items()}
        logits = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
        ).logits
        loss, n = response_loss(logits, batch["labels"])
        total = loss * n if total is None else total + loss * n
        count += n
    assert total is not None
    if count == 0:
        return total * 0.0, 0
    return total / count, count


# --------------------------------------------------------------------------- training


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
    rng = random.Random(config.seed)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = [tokenize_example(tokenizer, ex, config.max_len, config.loss_on) for ex in examples]
    rows = build_rows(encoded, config.max_len, config.packing)
    prefix = shared_prefix(encoded) if config.share_prefix else []
    steps_per_epoch = max(1, math.ceil(len(rows) / config.batch_size))
    total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    model.train()
    if next(model.parameters()).device.type == "cpu":
        retain_freed_memory()
    t0, loss_val, tokens, order = time.time(), float("nan"), 0, []
    # small models train faster single-threaded on CPU (OpenMP barriers cost more than they save)
    with cpu_threads(small_model_threads(model)), metrics_file.open("a", encoding="utf-8") as mf:
        for step in range(total):
            if len(order) < config.batch_size:
                fresh = list(range(len(rows)))
                rng.shuffle(fresh)
                order += fresh
            batch_idx, order = order[: config.batch_size], order[config.batch_size :]
            for g in opt.param_groups:
                g["lr"] = config.lr * lr_at(step, total, config.warmup_steps, config.min_lr_ratio)
            loss, n = batch_loss(model, [rows[i] for i in batch_idx], pad_id, prefix)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            loss_val, tokens = float(loss.detach()), tokens + n
            record = {
                "step": step + 1,
                "sft/loss": loss_val,
                "sft/grad_norm": float(grad_norm),
                "sft/lr": opt.param_groups[0]["lr"],
                "sft/tokens": tokens,
                "sft/seconds": round(time.time() - t0, 3),
            }
            mf.write(json.dumps(record) + "\n")
            mf.flush()
            if (step + 1) % config.log_every == 0 or step + 1 == total:
                log.info("sft step %d/%d loss %.4f", step + 1, total, loss_val)
            if step + 1 in config.save_steps and step + 1 < total:
                path = atomic_save_pretrained(out / f"checkpoint-{step + 1}", model, tokenizer)
                if on_save is not None:
                    model.eval()
                    stop = on_save(step + 1, path)
                    model.train()
                    if stop:
                        total = step + 1
                        break
    model.eval()
    _set_eos(model, tokenizer)
    atomic_save_pretrained(out, model, tokenizer)
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


def _set_eos(model: Any, tokenizer: Any) -> None:
    """Make plain ``generate`` stop at the tokenizer's eos."""
    gc = getattr(model, "generation_config", None)
    if gc is not None and tokenizer.eos_token_id is not None:
        gc.eos_token_id = tokenizer.eos_token_id
        if tokenizer.pad_token_id is not None:
            gc.pad_token_id = tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        model.config.eos_token_id = tokenizer.eos_token_id
