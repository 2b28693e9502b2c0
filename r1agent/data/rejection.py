"""Stage 3 data: rejection sampling from the stage-2 checkpoint, plus non-reasoning data.

For each training prompt the model writes ``samples`` completions. A completion is kept
when it is:

* **correct** — graded by the env (``info["correct"]``), or, for prompts no rule can check,
  by an LLM judge (:mod:`r1agent.judges`) scoring at least ``judge_threshold``;
* **readable** — single-language reasoning (``r1envs.rewards.language_consistency`` at least
  ``min_language``), no fenced code block inside the chain of thought, not truncated and
  not longer than ``max_chars``;
* **new** — duplicates (same prompt, same whitespace-normalised text) are dropped.

The kept reasoning samples plus the general (non-reasoning) examples form the stage-3 SFT
set. An empty filtered set is an error at the stage boundary, never a silent no-op.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from r1agent.data.sft import Example, read_examples, write_examples
from r1agent.rollout.episodes import make_env, render_prompt
from r1agent.rollout.transformers_engine import generate
from r1envs import formats
from r1envs.rewards import language_consistency


class EmptyDatasetError(RuntimeError):
    """Rejection sampling kept nothing: the next stage would train on an empty set."""


def reasoning_of(text: str) -> str:
    """The chain of thought of a completion (r1 block, else think block, else the text)."""
    for fmt in ("r1", "r1-zero"):
        parsed = formats.parse(text, fmt)
        if parsed.reasoning is not None:
            return parsed.reasoning
    return text


def has_code_block_in_cot(text: str) -> bool:
    """Whether the reasoning part holds a fenced code block."""
    return "```" in reasoning_of(text)


def is_mixed_language(text: str, language: str = "en", min_consistency: float = 0.95) -> bool:
    """Whether the reasoning's words are less than ``min_consistency`` in ``language``."""
    return language_consistency(reasoning_of(text), language) < min_consistency


def readable(
    text: str,
    *,
    language: str = "en",
    min_language: float = 0.95,
    max_chars: int = 20_000,
) -> bool:
    """The readability filters of stage 3 (language, code-in-CoT, length)."""
    return (
        bool(text.strip())
        and len(text) <= max_chars
        and not has_code_block_in_cot(text)
        and not is_mixed_language(text, language, min_language)
    )


def dedup(examples: Iterable[Example]) -> list[Example]:
    """Drop repeated ``(prompt, whitespace-normalised response)`` pairs, keeping order."""
    seen, out = set(), []
    for ex in examples:
        key = (ex.prompt, " ".join(ex.response.split()))
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def load_general(path: str | Path) -> list[Example]:
    """General (non-reasoning) data: ``{"prompt", "answer"}`` JSONL as SFT examples.

    Raises:
        FileNotFoundError: if the file is missing.
        ValueError: naming the file and line of a malformed record.
    """

    return read_examples(path)


def sample_and_filter(
    model: Any,
    tokenizer: Any,
    env_ids: Sequence[str],
    *,
    n_prompts: int,
    samples: int = 4,
    seed: int = 0,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    top_p: float = 1.0,
    prompt_format: str = "observation",
    language: str | None = None,
    min_language: float = 0.95,
    max_per_prompt: int = 1,
    generate_fn: Any = None,
    env_kwargs: dict[str, dict[str, Any]] | None = None,
) -> tuple[list[Example], dict[str, int]]:
    """Rejection-sample reasoning data from ``model`` on env problems ``seed .. seed+n-1``.

    ``env_kwargs`` are ``gym.make`` kwargs per env id (the output format, the prompt template).
    The readability filter drops mixed-language chains of thought against ``language``, or
    (``None``) against each env's own target language (its ``language`` kwarg).

    Returns:
        ``(kept examples, counts)`` where counts tells how many samples each filter dropped.
    """

    gen = generate_fn or generate
    envs = {e: make_env(e, (env_kwargs or {}).get(e)) for e in dict.fromkeys(env_ids)}
    items = []
    for i in range(n_prompts):
        env_id = env_ids[i % len(env_ids)]
        obs, info = envs[env_id].reset(seed=seed + i)
        items.append((env_id, seed + i, render_prompt(tokenizer, obs, info, prompt_format)))
    outs = gen(
        model,
        tokenizer,
        [p for *_, p in items for _ in range(samples)],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
    )
    counts = {"samples": len(outs), "wrong": 0, "truncated": 0, "unreadable": 0, "duplicate": 0}
    kept: list[Example] = []
    for j, (env_id, env_seed, prompt) in enumerate(items):
        per_prompt: list[Example] = []
        for out in outs[j * samples : (j + 1) * samples]:
            if out.truncated:
                counts["truncated"] += 1
                continue
            env = envs[env_id]
            env.reset(seed=env_seed)
            _, _, _, _, info = env.step(out.text)
            if not info["correct"]:
                counts["wrong"] += 1
                continue
            target = language or getattr(env.unwrapped, "language", "en")
            if not readable(out.text, language=target, min_language=min_language):
                counts["unreadable"] += 1
                continue
            per_prompt.append(Example(prompt, out.text.strip()))
        unique = dedup(per_prompt)
        counts["duplicate"] += len(per_prompt) - len(unique)
        kept += unique[:max_per_prompt]
    for env in envs.values():
        env.close()
    counts["kept"] = len(kept)
    return kept, counts


def judge_filter(examples: Sequence[Example], judge: Any, threshold: float = 0.5) -> list[Example]:
    """Keep the examples an LLM judge scores at least ``threshold`` (answers no rule checks)."""
    if not examples:
        return []
    scores = judge.score([e.prompt for e in examples], [e.response for e in examples])
    return [e for e, s in zip(examples, scores, strict=True) if s is not None and s >= threshold]


def build_stage3_set(
    reasoning: Sequence[Example], general: Sequence[Example], out_path: str | Path
) -> Path:
    """Write the union of reasoning and general examples as JSONL.

    Raises:
        EmptyDatasetError: if no reasoning sample survived the filters.
    """
    if not reasoning:
        raise EmptyDatasetError(
            "rejection sampling kept no reasoning samples (all wrong, truncated or unreadable); "
            "sample more, raise max_new_tokens, or start from a stronger checkpoint"
        )

    path = Path(out_path)
    write_examples(path, [*reasoning, *general])
    (path.with_suffix(".stats.json")).write_text(
        json.dumps({"reasoning": len(reasoning), "general": len(general)}, indent=2)
    )
    return path
