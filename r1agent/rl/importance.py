"""Truncated importance sampling for samples the trainer's policy did not draw itself.

The clipped surrogate assumes the completions were sampled by the policy whose log-probs
it calls "old". Two things break that: a rollout engine whose numerics differ from the
trainer's (vLLM kernels, bf16), and stale samples (generation overlapped with the update
uses weights some optimizer steps behind). The correction reweights each token's
policy-gradient term by

    w = min(exp(logp_old - logp_sampler), cap)

(truncated importance sampling: unbiased below the cap, bounded variance above it), with
``logp_old`` the trainer's log-probs under the weights before this update (the
"proximal" policy of decoupled PPO) and ``logp_sampler`` what the engine reported while
sampling (``Episode.gen_logprobs``). The weight carries no gradient. ``level="sequence"``
uses one weight per sequence, ``min(exp(sum_t (logp_old - logp_sampler)), cap)``, spread
over its tokens.

* :func:`truncated_weights` — the weights, ``(N, T)``, 0 off the mask.
* :func:`weight_sums` — sums over counted tokens for a step's metrics
  (``importance/weight_mean``, ``importance/weight_max``, ``importance/clipped_frac``,
  ``importance/logprob_diff_mean``, the sampler/trainer mismatch of
  :func:`r1agent.rollout.vllm_engine.logprob_mismatch`), added over micro-batches.
* :func:`correction_enabled` — the ``enabled: auto | true | false`` rule.
"""

from __future__ import annotations

import math

import torch

from r1agent.rollout.vllm_engine import logprob_mismatch

__all__ = ["LEVELS", "correction_enabled", "truncated_weights", "weight_sums"]

#: Where one weight applies: per token, or per sequence.
LEVELS = ("token", "sequence")


@torch.no_grad()
def truncated_weights(
    old_logp: torch.Tensor,
    sampler_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    cap: float,
    level: str = "token",
) -> torch.Tensor:
    """Truncated importance weights ``min(exp(old - sampler), cap)``.

    Args:
        old_logp: ``(N, T)`` the trainer's log-probs of the sampled tokens before the update.
        sampler_logp: ``(N, T)`` the sampler's log-probs of the same tokens.
        mask: ``(N, T)`` tokens that count (nonzero) — policy tokens of usable episodes.
        cap: the truncation (``> 0``).
        level: ``"token"`` (one weight per token) or ``"sequence"`` (one per row: the
            ratio of the sequence's probabilities, ``exp`` of the summed log-ratios).

    Returns:
        ``(N, T)`` float32 weights without gradient; 0 where ``mask`` is 0.

    Raises:
        ValueError: for a ``level`` other than token/sequence or a ``cap`` that is not > 0.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}, level: {level!r}")
    if not cap > 0:
        raise ValueError(f"cap must be > 0, cap: {cap}")
    m = (mask != 0).float()
    log_ratio = (old_logp.detach().float() - sampler_logp.float()) * m
    if level == "sequence":
        log_ratio = log_ratio.sum(-1, keepdim=True).expand_as(m)
    # min(exp(x), cap) as exp(min(x, log cap)): no overflow for large log-ratios
    return torch.exp(log_ratio.clamp(max=math.log(cap))) * m


@torch.no_grad()
def weight_sums(
    weights: torch.Tensor,
    old_logp: torch.Tensor,
    sampler_logp: torch.Tensor,
    mask: torch.Tensor,
    *,
    cap: float,
) -> dict[str, float]:
    """Sums over counted tokens, to be added over micro-batches and divided by ``tokens``.

    Returns:
        ``{"tokens", "weight" (sum), "weight_max", "clipped" (tokens at the cap),
        "logprob_diff" (sum of old - sampler), "abs_diff" (sum of |old - sampler|),
        "abs_diff_max", "kl" (sum of the k3 estimate of KL(sampler || trainer), as
        :func:`r1agent.rollout.vllm_engine.logprob_mismatch` computes it)}``.
    """
    sel = (mask != 0).to(weights.device)
    w = weights[sel].double()
    d = (old_logp.detach() - sampler_logp)[sel].double()
    at_cap = w >= cap * (1 - 1e-6)  # exp(log cap) may round a hair below cap in float32
    mm = logprob_mismatch(sampler_logp.detach(), old_logp.detach(), sel)
    return {
        "tokens": float(sel.sum()),
        "weight": float(w.sum()),
        "weight_max": float(w.max()) if w.numel() else 0.0,
        "clipped": float(at_cap.sum()),
        "logprob_diff": float(d.sum()),
        "abs_diff": mm["mean_abs"] * mm["tokens"],
        "abs_diff_max": mm["max_abs"],
        "kl": mm["kl"] * mm["tokens"],
    }


def correction_enabled(enabled: str | bool, *, engine: str, asynchronous: bool) -> bool:
    """Whether the correction applies: ``enabled`` itself when a bool; ``"auto"``: when the
    samples come from a separate engine (``vllm`` in process or ``vllm-server``) or are
    stale (async)."""
    if isinstance(enabled, bool):
        return enabled
    if enabled != "auto":
        raise ValueError(f"enabled must be auto, true or false, enabled: {enabled!r}")
    return engine in ("vllm", "vllm-server") or asynchronous
