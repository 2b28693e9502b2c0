"""The interface every rollout engine shares: prompts in, :class:`Completion` objects out.

An engine is a callable ``engine(model, tokenizer, prompts, *, max_new_tokens,
temperature, top_p, min_new_tokens, seed, batch_size) -> list[Completion]``
(:data:`GenerateFn`): :func:`r1agent.rollout.transformers_engine.generate` (the default,
batched KV-cache sampling) and :class:`r1agent.rollout.vllm_engine.VLLMEngine` are two.
This module holds what they share: the completion record, prompt encoding and the ids
that end a completion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["Completion", "GenerateFn", "encode_prompts", "eos_token_ids"]


@dataclass
class Completion:
    """One sampled completion.

    Attributes:
        prompt_ids: the prompt's token ids (unpadded).
        completion_ids: generated ids, including the final eos token when one was produced.
        text: the completion decoded without eos/pad tokens (other added tokens kept).
        logprobs: per ``completion_ids`` token, log-probability under the sampling
            distribution (temperature applied, before top-p), or ``None``.
        truncated: ``True`` when ``max_new_tokens`` was reached without an eos token.
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    logprobs: list[float] | None
    truncated: bool


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """All ids that end a completion: the tokenizer's eos plus the generation config's."""
    ids = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos is not None:
        ids.update(gen_eos)
    return sorted(i for i in ids if i is not None)


def encode_prompts(
    tokenizer: Any, prompts: Sequence[str] | Sequence[Sequence[int]]
) -> list[list[int]]:
    """Token ids of each prompt (lists of ids pass through).

    A string already starting with the tokenizer's bos token (a rendered chat template) is
    encoded without adding special tokens again.
    """
    out: list[list[int]] = []
    bos = tokenizer.bos_token
    for p in prompts:
        if isinstance(p, str):
            add = not (bos and p.startswith(bos))
            out.append(list(tokenizer(p, add_special_tokens=add)["input_ids"]))
        else:
            out.append([int(t) for t in p])
    return out


#: ``engine(model, tokenizer, prompts, *, max_new_tokens, temperature=1.0, top_p=1.0,
#: min_new_tokens=0, seed=None, batch_size=64) -> list[Completion]``.
GenerateFn = Callable[..., list[Completion]]
