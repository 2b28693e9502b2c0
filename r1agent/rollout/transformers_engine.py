"""Batched sampling from a causal LM with a KV cache (the default rollout engine).

:func:`generate` is the one entry point used by the trainer, evaluation, rejection
sampling and distillation. It left-pads a batch of prompts, pre-fills the KV cache once,
then decodes one token per step for the whole batch, tracking end-of-sequence per row
(finished rows get the pad token and stop counting). Prompts are sorted by length and
batched in chunks of ``batch_size`` so padding stays small; results come back in the
order given. Sampling uses a seeded ``torch.Generator`` when ``seed`` is set, so runs are
reproducible; the log-probability of each sampled token under the temperature-scaled
distribution is returned (the trainer compares it with its own to measure engine/trainer
mismatch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import DynamicCache

from r1agent.accel import fastlm
from r1agent.accel.cpu import cpu_threads, small_model_threads
from r1agent.rollout.engine import Completion, encode_prompts, eos_token_ids

__all__ = ["generate", "sample_tokens"]


def sample_tokens(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row; returns ``(tokens (B,), logprobs (B,))``.

    ``temperature == 0`` is greedy. Log-probs are under ``softmax(logits / temperature)``.
    """
    if temperature == 0:
        logp = torch.log_softmax(logits, dim=-1)  # (B, V)
        tokens = logits.argmax(dim=-1)
        return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)
    scaled = logits if temperature == 1.0 else logits / temperature
    logp = torch.log_softmax(scaled, dim=-1)  # (B, V)
    probs = logp.exp()
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        cum = sorted_p.cumsum(dim=-1)
        sorted_p = sorted_p.masked_fill(cum - sorted_p > top_p, 0.0)  # keep the nucleus
        probs = torch.zeros_like(probs).scatter_(-1, idx, sorted_p)
    # inverse-CDF sampling: one uniform per row (torch.multinomial draws one per vocab entry).
    # The first index whose cumulative sum exceeds x has p > 0 (a zero adds nothing), and x
    # stays below the total: u < 1 and the total is shrunk by more than a rounding step.
    cdf = probs.double().cumsum(dim=-1)  # (B, V)
    u = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device, dtype=cdf.dtype)
    x = u * (cdf[:, -1:] * (1.0 - 2.0**-50))
    tokens = torch.searchsorted(cdf, x, right=True)  # (B, 1)
    return tokens.squeeze(-1), logp.gather(-1, tokens).squeeze(-1)


@torch.inference_mode()
def _decode_batch(
    model: Any,
    batch: list[list[int]],
    *,
    pad_id: int,
    eos: torch.Tensor,
    max_new_tokens: int,
    min_new_tokens: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    fast: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode one batch; returns ``(tokens (B,N), logprobs (B,N), lengths (B,))``.

    With ``fast`` (default: ``forward: auto``) on :mod:`r1agent.accel.fastlm` (static KV
    cache, shared prompts pre-filled once); otherwise through the Hugging Face forward.
    """
    if fast is None:
        fast = fastlm.use_fast(model)
    if fast:
        tokens, logps, lengths = fastlm.decode(
            model,
            batch,
            pad_id=pad_id,
            eos=eos,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            sample=lambda x: sample_tokens(
                x, temperature=temperature, top_p=top_p, generator=generator
            ),
        )
        return tokens.cpu(), logps.cpu(), lengths.cpu()

    device = next(model.parameters()).device
    b, p = len(batch), max(len(x) for x in batch)
    input_ids = torch.full((b, p), pad_id, dtype=torch.long)
    attn = torch.zeros((b, p + max_new_tokens), dtype=torch.long)
    for i, ids in enumerate(batch):
        input_ids[i, p - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attn[i, p - len(ids) : p] = 1
    input_ids, attn = input_ids.to(device), attn.to(device)
    positions = (attn[:, :p].cumsum(-1) - 1).clamp(min=0)  # (B, P)
    cache = DynamicCache(config=model.config)
    out = model(
        input_ids=input_ids,
        attention_mask=attn[:, :p],
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    logits = out.logits[:, -1, :].float()  # (B, V)
    next_pos = positions[:, -1:] + 1  # (B, 1)
    tokens = torch.full((b, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((b, max_new_tokens), dtype=torch.float32, device=device)
    lengths = torch.full((b,), max_new_tokens, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        if t < min_new_tokens:
            logits[:, eos] = float("-inf")
        tok, lp = sample_tokens(logits, temperature=temperature, top_p=top_p, generator=generator)
        tok = tok.masked_fill(done, pad_id)
        tokens[:, t], logps[:, t] = tok, lp.masked_fill(done, 0.0)
        ended = torch.isin(tok, eos) & ~done
        lengths = torch.where(ended, t + 1, lengths)
        done |= ended
        if t + 1 == max_new_tokens or bool(done.all()):
            break
        attn[:, p + t] = 1
        out = model(
            input_ids=tok[:, None],
            attention_mask=attn[:, : p + t + 1],
            position_ids=next_pos,
            past_key_values=cache,
            use_cache=True,
        )
        logits = out.logits[:, -1, :].float()
        next_pos = next_pos + 1
    return tokens.cpu(), logps.cpu(), lengths.cpu()


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    min_new_tokens: int = 0,
    seed: int | None = None,
    batch_size: int = 64,
    forward: str = "auto",
) -> list[Completion]:
    """Sample one completion per prompt (repeat a prompt to get several).

    Args:
        model: a Hugging Face causal LM (put in eval mode by the caller when it matters).
        tokenizer: its tokenizer (pad and eos tokens set).
        prompts: strings (encoded with the tokenizer) or lists of token ids.
        max_new_tokens: completion cap in tokens.
        temperature: sampling temperature; 0 means greedy.
        top_p: nucleus sampling mass (1.0 disables it).
        min_new_tokens: eos is forbidden before this many tokens.
        seed: seeds the sampler (``None``: torch's global RNG).
        batch_size: prompts decoded together.
        forward: ``auto``, ``hf`` or ``fast``: the forward that decodes
            (:func:`r1agent.accel.fastlm.use_fast`).

    Returns:
        One :class:`Completion` per prompt, in order.

    Raises:
        ValueError: for non-positive ``max_new_tokens``/``batch_size`` or ``top_p`` outside
            ``(0, 1]``, or an unknown ``forward``.
    """
    fast = fastlm.use_fast(model, forward)
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(
            f"max_new_tokens and batch_size must be >= 1, max_new_tokens: {max_new_tokens}, "
            f"batch_size: {batch_size}"
        )
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], top_p: {top_p}")
    ids = encode_prompts(tokenizer, prompts)
    if any(len(x) == 0 for x in ids):
        raise ValueError("every prompt needs at least one token (got an empty prompt)")
    device = next(model.parameters()).device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed))
    eos_list = eos_token_ids(model, tokenizer)
    eos = torch.tensor(eos_list, dtype=torch.long, device=device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_list[0]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    results: list[Completion | None] = [None] * len(ids)
    with cpu_threads(small_model_threads(model)):
        _generate_sorted(
            model,
            tokenizer,
            ids,
            order,
            results,
            batch_size,
            eos_list,
            eos,
            pad_id,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            temperature=temperature,
            top_p=top_p,
            generator=generator,
            fast=fast,
        )
    return results  # type: ignore[return-value]


def _generate_sorted(
    model: Any,
    tokenizer: Any,
    ids: list[list[int]],
    order: list[int],
    results: list[Completion | None],
    batch_size: int,
    eos_list: list[int],
    eos: torch.Tensor,
    pad_id: int,
    **sampling: Any,
) -> None:
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        tokens, logps, lengths = _decode_batch(
            model, [ids[i] for i in chunk], pad_id=pad_id, eos=eos, **sampling
        )
        texts_ids = []
        for row, i in enumerate(chunk):
            n = int(lengths[row])
            comp = tokens[row, :n].tolist()
            truncated = not (n and comp[-1] in eos_list)
            results[i] = Completion(ids[i], comp, "", logps[row, :n].tolist(), truncated)
            texts_ids.append(comp if truncated else comp[:-1])
        for row, text in enumerate(tokenizer.batch_decode(texts_ids, skip_special_tokens=False)):
            results[chunk[row]].text = text  # type: ignore[union-attr]
