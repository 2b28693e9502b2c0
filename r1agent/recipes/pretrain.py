"""Stage 0: short language-model pretraining of the tiny model on synthetic text.

The tiny factory's model starts from random weights; the R1 recipe starts from a pretrained
base model. Stage 0 gives the tiny model a base: next-token prediction (loss on every token)
on a synthetic corpus of

* arithmetic facts written as running text (``47 + 18 = 65. 65 - 25 = 40.``),
* env prompts (observation strings of the training envs, no answers),
* the shipped general answers (``r1envs`` ``general/general.jsonl``).

It reuses :func:`r1agent.sft.train_sft` with ``loss_on="all"``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from r1agent.data.sft import Example
from r1agent.recipes.sft import SFTConfig, train_sft
from r1agent.rollout.episodes import make_env
from r1envs.resources import data_path

#: Env seeds used for stage-0 prompts (below the held-out range, apart from stage 1's).
PRETRAIN_SEED = 5_000_000


def arithmetic_sentence(rng: random.Random, max_value: int = 99, length: int = 4) -> str:
    """A line of chained arithmetic facts, e.g. ``47 + 18 = 65. 65 - 25 = 40.``."""
    a = rng.randint(1, max_value)
    parts = []
    for _ in range(length):
        b = rng.randint(1, max_value)
        op = rng.choice("+-")
        c = a + b if op == "+" else a - b
        parts.append(f"{a} {op} {b} = {c}.")
        a = c if rng.random() < 0.7 else rng.randint(1, max_value)
    return " ".join(parts)


def synthetic_corpus(
    n: int,
    *,
    env_ids: Sequence[str] = ("r1/Arithmetic-v0",),
    seed: int = 0,
    general_path: str | Path | None = None,
    prompt_share: float = 0.3,
    max_value: int = 99,
) -> list[str]:
    """``n`` synthetic documents: arithmetic text, env prompts and general answers.

    Args:
        n: number of documents.
        env_ids: envs whose observation strings are mixed in.
        seed: RNG seed.
        general_path: ``{"prompt", "answer"}`` JSONL (default: the shipped general set).
        prompt_share: share of documents that are env prompts.
        max_value: largest operand drawn in the arithmetic text.
    """

    rng = random.Random(seed)
    general: list[str] = []
    if general_path is None:
        try:
            general_path = data_path("general/general.jsonl")
        except FileNotFoundError:
            general_path = None
    if general_path is not None:
        for line in Path(general_path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                general.append(f"{rec['prompt']} {rec['answer']}")
    envs = [make_env(e) for e in env_ids]
    docs = []
    for i in range(n):
        r = rng.random()
        if r < prompt_share and envs:
            obs, _ = envs[i % len(envs)].reset(seed=PRETRAIN_SEED + seed * 100_000 + i)
            docs.append(obs)
        elif r < prompt_share + 0.1 and general:
            docs.append(rng.choice(general))
        else:
            docs.append(arithmetic_sentence(rng, max_value))
    for env in envs:
        env.close()
    return docs


def pretrain(
    model: Any,
    tokenizer: Any,
    output_dir: str | Path,
    *,
    documents: int = 4000,
    steps: int = 200,
    lr: float = 2e-3,
    batch_size: int = 8,
    max_len: int = 256,
    env_ids: Sequence[str] = ("r1/Arithmetic-v0",),
    seed: int = 0,
    max_value: int = 99,
    extra_documents: Sequence[str] = (),
) -> dict[str, Any]:
    """Pretrain ``model`` in place on :func:`synthetic_corpus` (plus ``extra_documents``,
    shuffled in) and save it to ``output_dir``."""
    docs = synthetic_corpus(documents, env_ids=env_ids, seed=seed, max_value=max_value)
    if extra_documents:
        docs += list(extra_documents)
        random.Random(seed).shuffle(docs)
    config = SFTConfig(
        model="<in memory>",
        output_dir=str(output_dir),
        max_steps=steps,
        lr=lr,
        batch_size=batch_size,
        max_len=max_len,
        loss_on="all",
        packing=True,
        seed=seed,
        warmup_steps=min(20, steps // 5),
    )
    return train_sft(model, tokenizer, [Example("", d) for d in docs], config)
