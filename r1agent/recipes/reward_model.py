"""Reward-model recipe: train a Bradley–Terry scalar head on preference pairs.

``r1agent reward-model CONFIG.yaml`` reads ``{"prompt", "chosen", "rejected"}`` JSONL (the
project ships ``general/preferences.jsonl``) and minimises
``-log sigmoid(r(chosen) - r(rejected))``; the pieces (pairs, loss, scoring) are in
:mod:`r1agent.rewards.reward_model`. A held-out share of the pairs measures pairwise
accuracy before and after training.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoTokenizer

from r1agent.accel.cpu import cpu_threads, small_model_threads
from r1agent.rewards.reward_model import (
    bradley_terry_loss,
    load_reward_head,
    pairwise_accuracy,
    read_preferences,
    rm_text,
    score_texts,
)
from r1envs.resources import data_path

log = logging.getLogger(__name__)

__all__ = ["RewardModelConfig", "train_reward_model"]


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


def train_reward_model(config: RewardModelConfig) -> dict[str, Any]:
    """Train a Bradley–Terry reward model and save it to ``config.output_dir``.

    Returns:
        A summary with held-out pairwise accuracy before and after training.

    Raises:
        ValueError: if no data file is given or a file is malformed.
    """

    if not config.data:
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
