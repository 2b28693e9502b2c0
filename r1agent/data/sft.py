"""SFT examples: reading and writing them, tokenization, packing and shared prefixes.

An example is a ``(prompt, response)`` pair. The prompt is tokenized exactly as a user of
plain transformers would (``tokenizer(prompt)``, default special tokens), the response
separately (no special tokens) and followed by ``eos_token``, so the model learns to stop
where ``generate`` stops and train/inference tokenization agree at the boundary.

Packing: short examples are packed first-fit-decreasing into rows of ``max_len`` tokens;
each keeps its own position ids and a block-diagonal causal mask (a 4D attention mask), so
a packed row computes exactly what the examples would alone. :func:`shared_prefix` finds
the prompt prefix most examples share (the SFT recipe runs it once per step). The
training loop is :func:`r1agent.recipes.sft.train_sft`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from r1envs.loaders import iter_jsonl

log = logging.getLogger(__name__)

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Example:
    """One SFT example: the prompt as fed to the model and the target response."""

    prompt: str
    response: str


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
