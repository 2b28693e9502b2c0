"""Run metrics: one JSONL row per step, TensorBoard scalars, PNG plots at the end.

Metric names are namespaced (``charts/reward``, ``rewards/accuracy``, ``losses/kl``,
``perf/tokens_per_s`` ...). Non-scalar values (sample completions under ``samples/...``)
go to the JSONL row and to TensorBoard as text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from r1agent import grpo

if TYPE_CHECKING:
    from r1agent.rollout import Episode
    from r1agent.trainer import Batch

__all__ = ["MetricsLogger", "StepStats", "plot_metrics", "read_jsonl", "step_metrics"]

#: Panels of the end-of-run figure (missing keys are skipped).
PLOT_KEYS: tuple[str, ...] = (
    "charts/reward",
    "charts/accuracy",
    "charts/response_length_mean",
    "losses/policy",
    "losses/kl",
    "losses/clip_fraction",
    "losses/entropy",
    "losses/grad_norm",
    "perf/tokens_per_s",
)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL file (missing file: no rows; unreadable lines skipped)."""
    p = Path(path)
    if not p.is_file():
        return []
    rows = []
    for line in p.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line cut by a crash
    return rows


class MetricsLogger:
    """Writes ``metrics.jsonl`` and TensorBoard events under a run directory.

    Args:
        run_dir: the run directory.
        tensorboard: also write TensorBoard events (``run_dir/tb``).
        resume_step: when resuming, rows with ``step > resume_step`` are dropped first.
    """

    def __init__(self, run_dir: str | Path, *, tensorboard: bool = True, resume_step: int = 0):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        rows = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resume_step]
        self.history: list[dict[str, Any]] = rows
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self._fh = self.path.open("a")
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.run_dir / "tb"), purge_step=resume_step + 1)

    def log(self, step: int, row: Mapping[str, Any]) -> None:
        """Append one step's metrics (scalars and ``samples/*`` text)."""
        clean = {"step": step}
        for k, v in row.items():
            clean[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        self._fh.write(json.dumps(clean, default=str) + "\n")
        self._fh.flush()
        self.history.append(clean)
        if self._tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
                elif isinstance(v, str):
                    self._tb.add_text(k, v, step)
                elif isinstance(v, list) and v and isinstance(v[0], str):
                    self._tb.add_text(k, "\n\n---\n\n".join(v), step)

    def close(self) -> None:
        """Flush and close the files."""
        self._fh.close()
        if self._tb is not None:
            self._tb.close()

    def scalars(self) -> list[dict[str, float]]:
        """History without the non-scalar entries."""
        return [
            {k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            for r in self.history
        ]


def plot_metrics(
    rows: Iterable[Mapping[str, Any]], out: str | Path, keys: Iterable[str] = PLOT_KEYS
) -> Path | None:
    """One PNG with a panel per metric over steps; ``None`` when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(rows)
    present = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in rows)]
    if not present:
        return None
    cols = 3
    nrows = math.ceil(len(present) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4 * cols, 3 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, present, strict=False):
        pts = [(r["step"], r[key]) for r in rows if isinstance(r.get(key), (int, float))]
        ax.plot([p[0] for p in pts], [p[1] for p in pts])
        ax.set_title(key)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[len(present) :]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- GRPO step metrics


class StepStats:
    """Running sums of per-token statistics over micro-batches."""

    def __init__(self) -> None:
        self.tokens = 0.0
        self.kl = self.clip_low = self.clip_high = self.entropy = self.mismatch = 0.0
        self.loss = self.grad_norm = 0.0
        self.mismatch_tokens = 0.0
        self.updates = 0

    @torch.no_grad()
    def add(
        self,
        mb: Batch,
        logits: torch.Tensor,
        logp: torch.Tensor,
        clipped: torch.Tensor,
        kl: torch.Tensor | None,
        temperature: float,
        *,
        first: bool = True,
    ) -> None:
        """Accumulate one micro-batch; the engine mismatch counts on the first update only."""
        m = (mb.mask > 0).float()
        self.tokens += float(m.sum())
        adv_pos = (mb.advantages > 0)[:, None].float()
        self.clip_high += float((clipped.float() * adv_pos * m).sum())
        self.clip_low += float((clipped.float() * (1 - adv_pos) * m).sum())
        self.entropy += float(
            (grpo.token_entropy(logits.detach(), temperature=temperature) * m).sum()
        )
        if first:
            self.mismatch_tokens += float(m.sum())
            self.mismatch += float(((logp.detach() - mb.gen_logprobs).abs() * m).sum())
        if kl is not None:
            self.kl += float((kl.detach() * m).sum())
        self.updates += 1

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
    optimizer: torch.optim.Optimizer,
    step: int,
) -> dict[str, Any]:
    """One step's namespaced metrics: ``charts/*``, ``rewards/*``, ``losses/*``, ``perf/*``."""
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
        "charts/groups_dropped": float(n_dropped),
        "charts/lr": float(optimizer.param_groups[0]["lr"]),
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
    return row
