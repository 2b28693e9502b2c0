"""Log-probabilities and entropy from hidden states without full-vocabulary logits.

``(rows, tokens, vocab)`` logits dominate memory at real vocabularies: 8 rows of 1,024
tokens over Qwen's 151,936-token vocabulary are 5 GB in float32. The functions here project
``chunk`` positions at a time through the LM head and keep only what backward needs (the
hidden states, the head's weight and two floats per position); backward projects each chunk
again. Peak extra memory is two ``(chunk, vocab)`` blocks instead of ``(rows * tokens, vocab)``;
``chunk="auto"`` sizes a block to :data:`CHUNK_BYTES` whatever the vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_CHUNK = "auto"
"""Positions projected at a time by default: as many as fit :data:`CHUNK_BYTES`."""

CHUNK_BYTES = 128 * 2**20
"""Size of one float32 ``(chunk, vocab)`` block under ``chunk="auto"``: 220 positions of
Qwen's 151,936-token vocabulary (a fixed 1,024 would be 0.6 GB per block there)."""


def auto_chunk(vocab: int) -> int:
    """Positions per block so that one float32 ``(chunk, vocab)`` block is about
    :data:`CHUNK_BYTES` (at least 16)."""
    return max(16, CHUNK_BYTES // (4 * max(1, vocab)))


def resolve_chunk(chunk: int | str, vocab: int) -> int:
    """``chunk`` as a number of positions (``"auto"``: :func:`auto_chunk`); rejects others."""
    if chunk == "auto":
        return auto_chunk(vocab)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be at least 1 or 'auto', got {chunk!r}")
    return chunk


def _chunk_logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, inv_t: float):
    logits = F.linear(h, weight, bias).float()
    return logits.mul_(inv_t) if inv_t != 1.0 else logits


class _ChunkedLogProbs(torch.autograd.Function):
    """``log softmax(h W^T / T)[target]`` per position, recomputing logits in backward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, inv_t: float, chunk: int):  # noqa: D102
        n = hidden.shape[0]
        logp = torch.empty(n, device=hidden.device, dtype=torch.float32)
        entropy = torch.empty(n, device=hidden.device, dtype=torch.float32)
        for s in range(0, n, chunk):  # at most two (chunk, vocab) blocks alive at a time
            full = torch.log_softmax(_chunk_logits(hidden[s : s + chunk], weight, bias, inv_t), -1)
            logp[s : s + chunk] = full.gather(-1, targets[s : s + chunk, None])[:, 0]
            entropy[s : s + chunk] = -full.exp().mul_(full).sum(-1)
            del full
        ctx.save_for_backward(hidden, weight, bias, targets)
        ctx.inv_t, ctx.chunk = inv_t, chunk
        ctx.mark_non_differentiable(entropy)
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, _grad_entropy):  # noqa: D102
        hidden, weight, bias, targets = ctx.saved_tensors
        inv_t, chunk = ctx.inv_t, ctx.chunk
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        if grad_logp is None:
            grad_logp = torch.zeros(hidden.shape[0], device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None
        grad_w = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        )
        grad_b = (
            torch.zeros(bias.shape, dtype=torch.float32, device=bias.device)
            if need_b and bias is not None
            else None
        )
        for s in range(0, hidden.shape[0], chunk):
            h = hidden[s : s + chunk]
            g = grad_logp[s : s + chunk].float()
            # d logp / d logits = onehot(target) - softmax, times 1/T through the scaling
            dlogits = torch.softmax(_chunk_logits(h, weight, bias, inv_t), dim=-1)
            dlogits.mul_(-g[:, None])
            dlogits[torch.arange(h.shape[0], device=h.device), targets[s : s + chunk]] += g
            if inv_t != 1.0:
                dlogits.mul_(inv_t)
            dlogits = dlogits.to(weight.dtype)
            if need_h:
                grad_h[s : s + chunk] = dlogits @ weight
            if need_w:
                grad_w.addmm_(dlogits.t().float(), h.float())
            if grad_b is not None:
                grad_b += dlogits.float().sum(0)
        grad_w = grad_w.to(weight.dtype) if grad_w is not None else None
        grad_b = grad_b.to(bias.dtype) if grad_b is not None else None
        return grad_h, grad_w, grad_b, None, None, None


def chunked_logprobs(
    hidden: torch.Tensor,
    lm_head: torch.nn.Module,
    targets: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk: int | str = DEFAULT_CHUNK,
    return_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``log softmax(lm_head(hidden) / T)[target]`` per position, differentiable.

    Args:
        hidden: ``(..., H)`` final hidden states (after the model's last norm).
        lm_head: the output projection (an ``nn.Linear``; its weight may be tied).
        targets: ``(...)`` token ids, the shape of ``hidden`` without its last dimension.
        temperature: divides the logits (match the sampling temperature).
        chunk: positions projected at a time (``"auto"``: blocks of about
            :data:`CHUNK_BYTES`).
        return_entropy: also return the entropy of each position's distribution (no
            gradient; computed from the same chunk of logits, so it costs no extra projection).

    Returns:
        float32 log-probs shaped like ``targets`` (and the entropies, same shape).
    """
    chunk = resolve_chunk(chunk, lm_head.weight.shape[0])
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    shape = targets.shape
    flat = hidden.reshape(-1, hidden.shape[-1])
    logp, entropy = _ChunkedLogProbs.apply(
        flat, lm_head.weight, lm_head.bias, targets.reshape(-1), 1.0 / temperature, chunk
    )
    if return_entropy:
        return logp.view(shape), entropy.view(shape)
    return logp.view(shape)


@torch.no_grad()
def chunked_entropy(
    hidden: torch.Tensor,
    lm_head: torch.nn.Module,
    *,
    temperature: float = 1.0,
    chunk: int | str = DEFAULT_CHUNK,
) -> torch.Tensor:
    """``(...)`` entropy of ``softmax(lm_head(hidden) / T)`` per position (no grad), chunked."""
    chunk = resolve_chunk(chunk, lm_head.weight.shape[0])
    flat = hidden.reshape(-1, hidden.shape[-1])
    out = torch.empty(flat.shape[0], device=flat.device, dtype=torch.float32)
    for s in range(0, flat.shape[0], chunk):
        logits = _chunk_logits(flat[s : s + chunk], lm_head.weight, lm_head.bias, 1.0 / temperature)
        logp = torch.log_softmax(logits, dim=-1)
        del logits
        out[s : s + chunk] = -logp.exp().mul_(logp).sum(-1)
    return out.view(hidden.shape[:-1])
