"""Log-probabilities and entropy from hidden states without full-vocabulary logits.

``(rows, tokens, vocab)`` logits dominate memory at real vocabularies: 8 rows of 1,024
tokens over Qwen's 151,936-token vocabulary are 5 GB in float32. The functions here project
``chunk`` positions at a time through the LM head and keep only what backward needs (the
hidden states, the head's weight and two floats per position); backward projects each chunk
again. Peak extra memory is one ``(chunk, vocab)`` block instead of ``(rows * tokens, vocab)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

DEFAULT_CHUNK = 1024
"""Positions projected at a time: a ``(1024, 151936)`` float32 block is 0.6 GB."""


def _chunk_logits(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, inv_t: float):
    logits = F.linear(h, weight, bias).float()
    return logits * inv_t if inv_t != 1.0 else logits


class _ChunkedLogProbs(torch.autograd.Function):
    """``log softmax(h W^T / T)[target]`` per position, recomputing logits in backward."""

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, inv_t: float, chunk: int):  # noqa: D102
        n = hidden.shape[0]
        logp = torch.empty(n, device=hidden.device, dtype=torch.float32)
        entropy = torch.empty(n, device=hidden.device, dtype=torch.float32)
        for s in range(0, n, chunk):
            logits = _chunk_logits(hidden[s : s + chunk], weight, bias, inv_t)
            full = torch.log_softmax(logits, dim=-1)
            logp[s : s + chunk] = full.gather(-1, targets[s : s + chunk, None])[:, 0]
            entropy[s : s + chunk] = -(full.exp() * full).sum(-1)
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
    chunk: int = DEFAULT_CHUNK,
    return_entropy: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``log softmax(lm_head(hidden) / T)[target]`` per position, differentiable.

    Args:
        hidden: ``(..., H)`` final hidden states (after the model's last norm).
        lm_head: the output projection (an ``nn.Linear``; its weight may be tied).
        targets: ``(...)`` token ids, the shape of ``hidden`` without its last dimension.
        temperature: divides the logits (match the sampling temperature).
        chunk: positions projected at a time.
        return_entropy: also return the entropy of each position's distribution (no
            gradient; computed from the same chunk of logits, so it costs no extra projection).

    Returns:
        float32 log-probs shaped like ``targets`` (and the entropies, same shape).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be at least 1, got {chunk}")
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
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """``(...)`` entropy of ``softmax(lm_head(hidden) / T)`` per position (no grad), chunked."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    out = torch.empty(flat.shape[0], device=flat.device, dtype=torch.float32)
    for s in range(0, flat.shape[0], chunk):
        logits = _chunk_logits(flat[s : s + chunk], lm_head.weight, lm_head.bias, 1.0 / temperature)
        logp = torch.log_softmax(logits, dim=-1)
        out[s : s + chunk] = -(logp.exp() * logp).sum(-1)
    return out.view(hidden.shape[:-1])
