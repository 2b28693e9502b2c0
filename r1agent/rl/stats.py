"""Per-step statistics of a GRPO update and the step's namespaced metrics row.

:class:`StepStats` sums per-token statistics over micro-batches (clip fractions, entropy,
KL, engine/trainer log-prob mismatch, importance weights); :func:`step_metrics` turns them
and the step's episodes into ``charts/*``, ``rewards/*``, ``losses/*`` and ``perf/*``
values, plus ``importance/*`` when the importance-sampling correction is on and
``async/*`` (staleness of the samples) when generation overlaps the update.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from r1agent.rl.batch import Batch
from r1agent.rollout.episodes import Episode

__all__ = ["StepStats", "step_metrics"]


class StepStats:
    """Running sums of per-token statistics over micro-batches."""

    def __init__(self) -> None:
        self.tokens = 0.0
        self.kl = self.clip_low = self.clip_high = self.entropy = self.mismatch = 0.0
        self.loss = self.grad_norm = 0.0
        self.mismatch_tokens = 0.0
        self.updates = 0
        #: sums of :func:`r1agent.rl.importance.weight_sums` (``None``: correction off)
        self.importance: dict[str, float] | None = None

    @torch.no_grad()
    def add(
        self,
        mb: Batch,
        entropy: torch.Tensor,
        logp: torch.Tensor,
        clipped: torch.Tensor,
        kl: torch.Tensor | None,
        *,
        first: bool = True,
    ) -> None:
        """Accumulate one micro-batch (``entropy``: per token, at the sampling temperature);
        the engine mismatch counts on the first update only."""
        m = (mb.mask > 0).float()
        self.tokens += float(m.sum())
        adv_pos = (mb.advantages > 0)[:, None].float()
        self.clip_high += float((clipped.float() * adv_pos * m).sum())
        self.clip_low += float((clipped.float() * (1 - adv_pos) * m).sum())
        self.entropy += float((entropy.detach() * m).sum())
        if first:
            self.mismatch_tokens += float(m.sum())
            self.mismatch += float(((logp.detach() - mb.gen_logprobs).abs() * m).sum())
        if kl is not None:
            self.kl += float((kl.detach() * m).sum())
        self.updates += 1

    def add_importance(self, sums: dict[str, float]) -> None:
        """Accumulate one micro-batch's importance-weight sums (the maximum as a maximum)."""
        if self.importance is None:
            self.importance = dict.fromkeys(sums, 0.0)
        for k, v in sums.items():
            acc = self.importance
            acc[k] = max(acc[k], v) if k.endswith("_max") else acc[k] + v

    def importance_metrics(self) -> dict[str, float]:
        """``importance/*`` means over the counted tokens (empty when the correction is off)."""
        s = self.importance
        if s is None:
            return {}
        n = max(s["tokens"], 1.0)
        return {
            "importance/weight_mean": s["weight"] / n,
            "importance/weight_max": s["weight_max"],
            "importance/clipped_frac": s["clipped"] / n,
            "importance/logprob_diff_mean": s["logprob_diff"] / n,
            "importance/logprob_abs_diff_mean": s["abs_diff"] / n,
            "importance/logprob_abs_diff_max": s["abs_diff_max"],
            "importance/kl": s["kl"] / n,
        }

    def per_token(self, x: float) -> float:
        """``x`` divided by the counted tokens."""
        return x / max(self.tokens, 1.0)


def step_metrics(
    c: Any,
    episodes: Sequence[Episode],
    st: StepStats,
    n_dropped: int,
    skipped: int,
    dt: float,
    t_gen: float,
    lr: float,
    step: int,
) -> dict[str, Any]:
    """One step's namespaced metrics: ``charts/*``, ``rewards/*``, ``losses/*``, ``perf/*``
    (and ``importance/*``, ``async/*`` when those features are on)."""
    ok = [e for e in episodes if e.error is None]
    lengths = [sum(1 for m in e.loss_mask if m > 0) for e in episodes]
    comp_tokens = sum(lengths)
    done_updates = max(c.updates_per_batch - skipped, 1)
    row: dict[str, Any] = {
        "charts/reward": float(np.mean([e.reward for e in ok])) if ok else float("nan"),
        "charts/reward_std": float(np.std([e.reward for e in ok])) if ok else float("nan"),
        "charts/accuracy": float(np.mean([e.correct for e in ok])) if ok else float("nan"),
        "charts/response_length_mean": float(np.mean(lengths)),
        "charts/response_length_max": float(max(lengths)),
        "charts/truncated_fraction": float(np.mean([e.truncated for e in episodes])),
        "charts/env_failures": float(len(episodes) - len(ok)),
        "charts/error_rate": (len(episodes) - len(ok)) / max(len(episodes), 1),
        "charts/groups_dropped": float(n_dropped),
        "charts/lr": lr,
        "losses/policy": st.loss / done_updates,
        "losses/kl": st.per_token(st.kl),
        "losses/clip_fraction": st.per_token(st.clip_low + st.clip_high),
        "losses/clip_low_fraction": st.per_token(st.clip_low),
        "losses/clip_high_fraction": st.per_token(st.clip_high),
        "losses/entropy": st.per_token(st.entropy),
        "losses/grad_norm": st.grad_norm / done_updates,
        "losses/logprob_mismatch": st.mismatch / max(st.mismatch_tokens, 1.0),
        "losses/skipped_updates": float(skipped),
        "perf/step_time_s": dt,
        "perf/generation_time_s": t_gen,
        "perf/completion_tokens": float(comp_tokens),
        "perf/tokens_per_s": comp_tokens / dt,
    }
    for k in sorted({k for e in ok for k in e.components}):
        row[f"rewards/{k}"] = float(np.mean([e.components.get(k, 0.0) for e in ok]))
    row.update(st.importance_metrics())
    if getattr(c, "asynchronous", None) is not None:  # the update ran on weights `step - 1`
        staleness = [step - 1 - e.policy_version for e in episodes]
        row["async/staleness_mean"] = float(np.mean(staleness))
        row["async/staleness_max"] = float(max(staleness))
        row["async/policy_version_min"] = float(min(e.policy_version for e in episodes))
    return row
