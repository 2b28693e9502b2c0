"""Reward models trained from preference pairs (Bradley–Terry).

``r1agent reward-model CONFIG.yaml`` reads ``{"prompt", "chosen", "rejected"}`` JSONL (the
project ships ``general/preferences.jsonl``), puts a scalar head on a causal LM
(``AutoModelForSequenceClassification`` with one label) and minimises
``-log sigmoid(r(chosen) - r(rejected))``. The result is a plain Hugging Face
sequence-classification directory, loadable by :class:`r1agent.judges.RewardModelJudge`.

A held-out share of the pairs measures pairwise accuracy (how often ``r(chosen) >
r(rejected)``), before and after training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from r1envs.loaders import iter_jsonl

log = logging.getLogger(__name__)


def rm_text(prompt: str, response: str) -> str:
    """The text a reward model scores: the prompt and the response as one exchange."""
    return f"User: {prompt}\nAssistant: {response}"


@dataclass(frozen=True)
class Preference:
    """A preference pair: ``chosen`` is better than ``rejected`` as an answer to ``prompt``."""

    prompt: str
    chosen: str
    rejected: str


def read_preferences(path: str | Path) -> list[Preference]:
    """Read preference pairs from JSONL.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: naming the file and line of a malformed record.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"preference data file not found, path: {str(path)!r}")
    pairs = []
    for lineno, rec in iter_jsonl(path):
        if not all(
            isinstance(rec.get(k), str) and rec[k] for k in ("prompt", "chosen", "rejected")
        ):
            raise ValueError(
                f"{path}:{lineno}: need non-empty strings 'prompt', 'chosen', 'rejected'"
            )
        pairs.append(Preference(rec["prompt"], rec["chosen"], rec["rejected"]))
    if not pairs:
        raise ValueError(f"preference file has no pairs, path: {str(path)!r}")
    return pairs


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """``-log sigmoid(r_c - r_r)`` averaged over pairs, with its accuracy and margin.

    Args:
        r_chosen: ``(B,)`` rewards of the chosen responses.
        r_rejected: ``(B,)`` rewards of the rejected responses.
    """
    diff = r_chosen - r_rejected  # (B,)
    loss = -torch.nn.functional.logsigmoid(diff).mean()
    stats = {
        "rm/accuracy": float((diff.detach() > 0).float().mean()),
        "rm/margin": float(diff.detach().mean()),
    }
    return loss, stats


def load_reward_head(path: str, tokenizer: Any) -> Any:
    """A sequence-classification model (one label) on the weights of ``path``."""

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model


def score_texts(
    model: Any, tokenizer: Any, texts: Sequence[str], max_len: int = 256
) -> torch.Tensor:
    """Rewards of ``texts`` (``(N,)``), with gradients if the model is training."""
    tokenizer.padding_side = "right"
    batch = tokenizer(
        list(texts), return_tensors="pt", padding=True, truncation=True, max_length=max_len
    )
    device = next(model.parameters()).device
    return model(**{k: v.to(device) for k, v in batch.items()}).logits[:, 0]  # (N,)


def pairwise_accuracy(
    model: Any, tokenizer: Any, pairs: Sequence[Preference], max_len: int
) -> float:
    """Share of pairs where the model scores ``chosen`` above ``rejected``."""
    if not pairs:
        return float("nan")
    with torch.no_grad():
        rc = score_texts(model, tokenizer, [rm_text(p.prompt, p.chosen) for p in pairs], max_len)
        rr = score_texts(model, tokenizer, [rm_text(p.prompt, p.rejected) for p in pairs], max_len)
    return float((rc > rr).float().mean())
