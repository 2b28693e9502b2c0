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

import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

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


class RewardModelConfig(BaseModel):
    """Configuration of ``r1agent reward-model`` (YAML + ``key=value`` overrides)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="causal LM (directory or hub id) to put a reward head on")
    data: list[str] = Field(default_factory=list, description="preference JSONL files")
    output_dir: str = Field(description="where the reward model goes")
    epochs: int = Field(3, ge=1, description="passes over the training pairs")
    lr: float = Field(5e-4, gt=0, description="AdamW learning rate")
    batch_size: int = Field(16, ge=1, description="pairs per step")
    max_len: int = Field(256, ge=8, description="tokens per scored text")
    eval_share: float = Field(0.2, ge=0, lt=1, description="held-out share of the pairs")
    seed: int = Field(0, description="split and shuffling seed")


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
    from transformers import AutoModelForSequenceClassification

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


def train_reward_model(config: RewardModelConfig) -> dict[str, Any]:
    """Train a Bradley–Terry reward model and save it to ``config.output_dir``.

    Returns:
        A summary with held-out pairwise accuracy before and after training.

    Raises:
        ValueError: if no data file is given or a file is malformed.
    """
    from transformers import AutoTokenizer

    if not config.data:
        from r1envs.resources import data_path

        config = config.model_copy(update={"data": [str(data_path("general/preferences.jsonl"))]})
    pairs = [p for f in config.data for p in read_preferences(f)]
    rng = random.Random(config.seed)
    rng.shuffle(pairs)
    n_eval = int(len(pairs) * config.eval_share)
    held, train = pairs[:n_eval], pairs[n_eval:]
    if not train:
        raise ValueError(f"no training pairs left after the eval split, pairs: {len(pairs)}")
    torch.manual_seed(config.seed)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = load_reward_head(config.model, tokenizer)
    before = pairwise_accuracy(model.eval(), tokenizer, held, config.max_len)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
    model.train()
    t0, step, metrics_path = time.time(), 0, Path(config.output_dir) / "rm_metrics.jsonl"
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    from r1agent.models import cpu_threads, small_model_threads

    with cpu_threads(small_model_threads(model)), metrics_path.open("w", encoding="utf-8") as mf:
        for _ in range(config.epochs):
            rng.shuffle(train)
            for s in range(0, len(train), config.batch_size):
                chunk = train[s : s + config.batch_size]
                rc = score_texts(
                    model, tokenizer, [rm_text(p.prompt, p.chosen) for p in chunk], config.max_len
                )
                rr = score_texts(
                    model, tokenizer, [rm_text(p.prompt, p.rejected) for p in chunk], config.max_len
                )
                loss, stats = bradley_terry_loss(rc, rr)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                mf.write(
                    json.dumps({"step": step, "rm/loss": float(loss.detach()), **stats}) + "\n"
                )
    model.eval()
    after = pairwise_accuracy(model, tokenizer, held, config.max_len)
    train_acc = pairwise_accuracy(model, tokenizer, train, config.max_len)
    out = Path(config.output_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    summary = {
        "pairs_train": len(train),
        "pairs_heldout": len(held),
        "heldout_accuracy_before": before,
        "heldout_accuracy_after": after,
        "train_accuracy": train_acc,
        "steps": step,
        "seconds": round(time.time() - t0, 2),
    }
    (out / "rm_summary.json").write_text(json.dumps(summary, indent=2))
    log.info("reward model: %s", summary)
    return summary
