"""A GRPO batch: episodes padded into tensors, and the policy's log-probs on it.

:func:`build_batch` pads episodes into a :class:`Batch` whose distinct prompts are kept
once (``prompt_index`` maps rows to prompts). :func:`response_logprobs` runs the chosen
forward over a micro-batch up to the final hidden states and projects them through the LM
head a chunk of positions at a time (:mod:`r1agent.rl.chunked`), so ``(rows, tokens,
vocab)`` logits never exist; :func:`batch_logprobs` gives the response tokens' log-probs
without gradients (old and reference log-probs). :func:`response_logits` is the plain
projection (for callers that want the logits themselves).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from r1agent.accel import fastlm
from r1agent.rl import grpo
from r1agent.rl.chunked import DEFAULT_CHUNK, chunked_logprobs
from r1agent.rollout.episodes import Episode

__all__ = [
    "Batch",
    "batch_logprobs",
    "build_batch",
    "output_head",
    "response_hidden",
    "response_logits",
    "response_logprobs",
]


@dataclass
class Batch:
    """Padded tensors of a batch of episodes.

    Per row: ``response_ids``, ``response_valid`` (real tokens, policy or env), ``mask``
    (policy tokens × episode weight) and ``gen_logprobs``, each ``(N, R)`` and right-padded;
    ``advantages (N,)``. The distinct prompts: ``prompt_ids``/``prompt_valid`` ``(U, P)``
    (left-padded) and ``prompt_index (N,)`` (row -> its prompt); :meth:`full_rows` joins
    them into ``[prompt | response]`` rows for a forward that cannot share prompts.
    """

    response_ids: torch.Tensor
    response_valid: torch.Tensor
    mask: torch.Tensor
    gen_logprobs: torch.Tensor
    advantages: torch.Tensor
    prompt_ids: torch.Tensor
    prompt_valid: torch.Tensor
    prompt_index: torch.Tensor
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None

    def rows(self, s: slice | torch.Tensor) -> Batch:
        """A micro-batch (rows ``s``: a slice or indices), keeping only the prompts it uses
        and the response columns up to its longest response."""
        lengths = self.response_valid[s].sum(-1)
        width = max(int(lengths.max()) if len(lengths) else 0, 1)
        per_row = {
            k: (v[s][:, :width] if v.dim() == 2 else v[s]) if isinstance(v, torch.Tensor) else v
            for k, v in vars(self).items()
            if k not in ("prompt_ids", "prompt_valid", "prompt_index")
        }
        used, index = self.prompt_index[s].unique(return_inverse=True)
        return Batch(
            **per_row,
            prompt_ids=self.prompt_ids[used],
            prompt_valid=self.prompt_valid[used],
            prompt_index=index,
        )

    def to(self, device: torch.device) -> Batch:
        """The batch with every tensor on ``device``."""
        return Batch(
            **{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in vars(self).items()}
        )

    def full_rows(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``input_ids``, ``attention_mask`` and ``position_ids``, each ``(N, P + R)``."""
        ids = torch.cat((self.prompt_ids[self.prompt_index], self.response_ids), dim=1)
        valid = torch.cat((self.prompt_valid[self.prompt_index], self.response_valid), dim=1)
        attn = valid.long()
        return ids, attn, (attn.cumsum(-1) - 1).clamp(min=0)


def build_batch(
    episodes: Sequence[Episode], advantages: torch.Tensor, weights: torch.Tensor, pad_id: int
) -> Batch:
    """Pad episodes into a :class:`Batch` (responses padded to the batch max, not the cap)."""
    n = len(episodes)
    r = max(max(len(e.response_ids) for e in episodes), 1)
    response = torch.full((n, r), pad_id, dtype=torch.long)
    mask = torch.zeros((n, r))
    gen_lp = torch.zeros((n, r))
    for i, e in enumerate(episodes):
        k = len(e.response_ids)
        response[i, :k] = torch.tensor(e.response_ids, dtype=torch.long)
        mask[i, :k] = torch.tensor(e.loss_mask) * weights[i]
        gen_lp[i, :k] = torch.tensor(e.gen_logprobs)
    lengths = torch.tensor([len(e.response_ids) for e in episodes])
    distinct, index = fastlm.unique_prompts([e.prompt_ids for e in episodes])
    prompt_ids, prompt_valid, _ = fastlm.left_pad(distinct, pad_id, torch.device("cpu"))
    return Batch(
        response,
        torch.arange(r) < lengths[:, None],
        mask,
        gen_lp,
        advantages.float(),
        prompt_ids,
        prompt_valid,
        torch.tensor(index),
    )


def response_logits(model: Any, b: Batch, *, fast: bool | None = None) -> torch.Tensor:
    """``(n, R, V)`` logits predicting each response token (only the response is projected).

    With ``fast`` (default: :func:`r1agent.accel.fastlm.use_fast` with ``forward: auto``),
    :func:`r1agent.accel.fastlm.prefix_shared_logits` (each distinct prompt computed once
    per micro-batch); otherwise the Hugging Face forward over ``[prompt | response]``.
    """
    if fast is None:
        fast = fastlm.use_fast(model)
    if fast:
        return fastlm.prefix_shared_logits(
            model, b.prompt_ids, b.prompt_valid, b.prompt_index, b.response_ids
        )
    ids, attn, positions = b.full_rows()
    out = model(
        input_ids=ids,
        attention_mask=attn,
        position_ids=positions,
        logits_to_keep=b.response_ids.shape[1] + 1,
        use_cache=False,
    )
    return out.logits[:, :-1]


def output_head(model: Any) -> torch.nn.Module:
    """The LM head of ``model`` (through DDP and PEFT wrappers)."""
    inner = getattr(model, "module", model)  # DDP
    return inner.get_output_embeddings()


def response_hidden(
    model: Any, b: Batch, *, fast: bool | None = None, checkpoint: bool = False
) -> torch.Tensor:
    """``(n, R, hidden)`` final hidden states (after the last norm) predicting each response
    token; ``fast`` as in :func:`response_logits`. ``checkpoint`` recomputes each layer in
    backward on the accelerator's forward (Hugging Face models use their own setting,
    ``gradient_checkpointing_enable``)."""
    if fast is None:
        fast = fastlm.use_fast(model)
    if fast:
        return fastlm.prefix_shared_hidden(
            model,
            b.prompt_ids,
            b.prompt_valid,
            b.prompt_index,
            b.response_ids,
            checkpoint=checkpoint,
        )
    ids, attn, positions = b.full_rows()
    out = model(
        input_ids=ids,
        attention_mask=attn,
        position_ids=positions,
        logits_to_keep=1,  # the head runs chunk by chunk outside; keep the model's share tiny
        output_hidden_states=True,
        use_cache=False,
    )
    r = b.response_ids.shape[1]
    return out.hidden_states[-1][:, -(r + 1) : -1]


def response_logprobs(
    model: Any,
    b: Batch,
    *,
    temperature: float,
    chunk: int | str | None = DEFAULT_CHUNK,
    fast: bool | None = None,
    checkpoint: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(n, R)`` log-probs of the response tokens (differentiable) and the entropy of each
    position's distribution (no gradient), both at ``temperature``, projecting ``chunk``
    positions through the LM head at a time; see :func:`response_hidden`.

    ``chunk=None`` runs the model's own forward to full logits instead: FSDP2 across
    processes, where the LM head's weight is only gathered inside the wrapped forward.
    """
    if chunk is None:
        logits = response_logits(model, b, fast=fast)
        logp = grpo.token_logprobs(logits, b.response_ids, temperature=temperature)
        return logp, grpo.token_entropy(logits.detach(), temperature=temperature)
    h = response_hidden(model, b, fast=fast, checkpoint=checkpoint)
    return chunked_logprobs(  # type: ignore[return-value]
        h,
        output_head(model),
        b.response_ids,
        temperature=temperature,
        chunk=chunk,
        return_entropy=True,
    )


@torch.no_grad()
def batch_logprobs(
    model: Any,
    b: Batch,
    micro: int,
    temperature: float,
    *,
    fast: bool | None = None,
    chunk: int | str | None = DEFAULT_CHUNK,
) -> torch.Tensor:
    """``(N, R)`` log-probs of the response tokens under ``model`` (no grad; 0 on padding);
    ``fast`` as in :func:`response_logits`, ``chunk`` as in :func:`response_logprobs`."""
    out = torch.zeros(b.response_ids.shape, device=b.response_ids.device)
    for s in range(0, b.response_ids.shape[0], micro):
        mb = b.rows(slice(s, s + micro))
        lp, _ = response_logprobs(model, mb, temperature=temperature, chunk=chunk, fast=fast)
        out[s : s + micro, : lp.shape[1]] = lp
    return out
