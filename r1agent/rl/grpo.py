"""The math of GRPO as small pure functions (no models, no I/O).

Shapes: ``N`` episodes in a batch, ``G`` episodes per group (same problem), ``T`` response
tokens. Per-token tensors are ``(N, T)`` with a float ``mask`` (1 = a policy token that
counts in the loss, 0 = padding or environment text).

* :func:`group_advantages` — ``(r - mean_group) / (std_group + eps)`` (GRPO), or without the
  std scaling (Dr. GRPO, ``scale=False``); failed episodes are excluded from the group
  statistics and get advantage 0.
* :func:`clipped_surrogate` — PPO's clipped ratio objective with separate low/high ε
  (DAPO's clip-higher), per token.
* :func:`kl_k3` — the k3 estimator of KL(π‖π_ref), per token.
* Loss aggregation, one function each (see :data:`AGGREGATIONS`): :func:`sequence_mean`
  (DeepSeekMath: mean over a sequence's tokens, then over sequences), :func:`token_mean`
  (DAPO: mean over all tokens of the batch), :func:`constant_normalizer` (Dr. GRPO: sum over
  tokens divided by ``N × max_len``). Each takes optional global denominators so the sum
  over micro-batches equals the full-batch value.
* :func:`varied_groups` — dynamic sampling's filter (groups whose rewards are not all equal).
* :func:`truncation_mask` — zero weight for episodes cut at the length limit.
* :func:`contributing_rows` — the episodes whose loss terms are not identically zero.
* :func:`token_logprobs` / :func:`token_entropy` — log-softmax gathered in chunks.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = [
    "AGGREGATIONS",
    "clipped_surrogate",
    "constant_normalizer",
    "contributing_rows",
    "group_advantages",
    "kl_k3",
    "sequence_mean",
    "token_entropy",
    "token_logprobs",
    "token_mean",
    "truncation_mask",
    "varied_groups",
]


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    *,
    valid: torch.Tensor | None = None,
    scale: bool = True,
    eps: float = 1e-4,
) -> torch.Tensor:
    """Group-relative advantages.

    Args:
        rewards: ``(N,)`` rewards, groups contiguous (``N = groups × group_size``).
        group_size: episodes per group.
        valid: ``(N,)`` bool; invalid episodes (env failures) are left out of the group mean
            and std and get advantage 0. ``None``: all valid.
        scale: divide by the group's (population) std + ``eps`` (GRPO); ``False`` for Dr. GRPO.
        eps: added to the std.

    Returns:
        ``(N,)`` advantages.
    """
    assert rewards.numel() % group_size == 0, (
        f"rewards ({rewards.numel()}) not divisible by group_size ({group_size})"
    )
    r = rewards.reshape(-1, group_size).double()  # (B, G)
    v = torch.ones_like(r) if valid is None else valid.reshape(-1, group_size).double()
    r = torch.where(v > 0, r, torch.zeros_like(r))  # NaN rewards of failed episodes drop out
    count = v.sum(-1, keepdim=True).clamp(min=1.0)  # (B, 1)
    mean = (r * v).sum(-1, keepdim=True) / count
    adv = (r - mean) * v
    if scale:
        std = (((r - mean) ** 2 * v).sum(-1, keepdim=True) / count).sqrt()
        adv = adv / (std + eps)
    return adv.reshape(-1).to(rewards.dtype if rewards.is_floating_point() else torch.float32)


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    *,
    eps_low: float,
    eps_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token clipped policy loss ``-min(ρA, clip(ρ, 1-ε_low, 1+ε_high)A)``.

    Args:
        logp: ``(N, T)`` log-probs under the current policy (with grad).
        old_logp: ``(N, T)`` log-probs under the policy that sampled (no grad).
        advantages: ``(N,)`` one advantage per episode.
        eps_low: lower clip range (ratio floor ``1 - eps_low``).
        eps_high: upper clip range (ratio ceiling ``1 + eps_high``).

    Returns:
        ``(loss (N, T), clipped (N, T) bool)`` — ``clipped`` marks tokens whose clipped term
        was the active one (no gradient flows through them).
    """
    ratio = torch.exp(logp - old_logp)  # (N, T)
    adv = advantages[:, None]  # (N, 1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    return loss, clipped < unclipped


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(π‖π_ref) per token: ``exp(ref - logp) - (ref - logp) - 1`` (≥ 0)."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def sequence_mean(
    per_token: torch.Tensor, mask: torch.Tensor, *, num_sequences: float | None = None
) -> torch.Tensor:
    """DeepSeekMath's aggregation: mean over each sequence's tokens, then over sequences.

    Args:
        per_token: ``(N, T)`` loss terms.
        mask: ``(N, T)`` token weights.
        num_sequences: denominator over sequences (default ``N``; pass the full batch's when
            summing micro-batches).
    """
    per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)  # (N,)
    return per_seq.sum() / (per_token.shape[0] if num_sequences is None else num_sequences)


def token_mean(
    per_token: torch.Tensor, mask: torch.Tensor, *, num_tokens: float | None = None
) -> torch.Tensor:
    """DAPO's aggregation: mean over all counted tokens of the batch.

    Args:
        per_token: ``(N, T)`` loss terms.
        mask: ``(N, T)`` token weights.
        num_tokens: denominator (default ``mask.sum()``; pass the full batch's when summing
            micro-batches).
    """
    denom = mask.sum().clamp(min=1.0) if num_tokens is None else max(float(num_tokens), 1.0)
    return (per_token * mask).sum() / denom


def constant_normalizer(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    *,
    max_len: int,
    num_sequences: float | None = None,
) -> torch.Tensor:
    """Dr. GRPO's aggregation: token sum divided by the constant ``N × max_len``.

    Args:
        per_token: ``(N, T)`` loss terms.
        mask: ``(N, T)`` token weights.
        max_len: the generation budget (``max_new_tokens``), not the observed length.
        num_sequences: ``N`` (default ``per_token.shape[0]``).
    """
    n = per_token.shape[0] if num_sequences is None else num_sequences
    return (per_token * mask).sum() / (n * max_len)


#: Name → aggregation function (the config's ``loss_aggregation``).
AGGREGATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "sequence_mean": sequence_mean,
    "token_mean": token_mean,
    "constant": constant_normalizer,
}


def varied_groups(rewards: torch.Tensor, group_size: int, *, tol: float = 1e-6) -> torch.Tensor:
    """Dynamic sampling's keep mask: ``(B,)`` True where a group's rewards are not all equal.

    Groups with identical rewards have zero advantage everywhere and carry no gradient.
    """
    r = rewards.reshape(-1, group_size)
    return (r.max(-1).values - r.min(-1).values) > tol


def truncation_mask(truncated: torch.Tensor) -> torch.Tensor:
    """``(N,)`` float weights: 0 for episodes cut at the length limit, 1 otherwise."""
    return (~truncated.bool()).float()


def contributing_rows(advantages: torch.Tensor, mask: torch.Tensor, *, beta: float) -> torch.Tensor:
    """Indices of the episodes that can move the loss.

    A row with no counted token (a failed episode, weight 0) adds nothing; with ``beta == 0``
    neither does a row whose advantage is 0 (a group whose rewards are all equal): the
    clipped surrogate ``-min(r·A, clip(r)·A)`` is then 0 for any ratio, and so is its
    gradient. With global aggregation denominators the update on the other rows alone is
    the full batch's.

    Args:
        advantages: ``(N,)``.
        mask: ``(N, T)`` token weights.
        beta: the KL coefficient.

    Returns:
        ``(M,)`` long indices, ascending.
    """
    keep = (mask != 0).any(dim=-1)
    if beta == 0:
        keep &= advantages != 0
    return keep.nonzero().squeeze(-1)


def token_logprobs(
    logits: torch.Tensor, targets: torch.Tensor, *, temperature: float = 1.0, chunk: int = 16
) -> torch.Tensor:
    """``log softmax(logits / T)[target]`` per position, computed ``chunk`` rows at a time.

    Args:
        logits: ``(N, T, V)``.
        targets: ``(N, T)`` token ids.
        temperature: divides the logits (match the sampling temperature).
        chunk: rows per log-softmax call (bounds the ``(chunk, T, V)`` float32 temporary).

    Returns:
        ``(N, T)`` float32 log-probs.
    """
    out = []
    for s in range(0, logits.shape[0], chunk):
        lg = logits[s : s + chunk].float()
        if temperature != 1.0:
            lg = lg / temperature
        tgt = targets[s : s + chunk]
        # cross-entropy is -log_softmax at the target, one fused op forward and backward
        nll = F.cross_entropy(lg.flatten(0, 1), tgt.flatten(), reduction="none")
        out.append(-nll.view(tgt.shape))
    return torch.cat(out, dim=0)


@torch.no_grad()
def token_entropy(
    logits: torch.Tensor, *, temperature: float = 1.0, chunk: int = 16
) -> torch.Tensor:
    """``(N, T)`` entropy of ``softmax(logits / T)`` per position (no grad), chunked."""
    out = []
    for s in range(0, logits.shape[0], chunk):
        lg = logits[s : s + chunk].float() / temperature
        logp = torch.log_softmax(lg, dim=-1)
        out.append(-(logp.exp() * logp).sum(-1))
    return torch.cat(out, dim=0)
