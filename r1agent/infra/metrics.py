"""Run metrics: one JSONL row per step, TensorBoard scalars, PNG plots at the end.

Metric names are namespaced (``charts/reward``, ``rewards/accuracy``, ``losses/kl``,
``perf/tokens_per_s`` ...). Non-scalar values (sample completions under ``samples/...``)
go to the JSONL row and to TensorBoard as text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

__all__ = ["MetricsLogger", "plot_metrics", "read_jsonl"]

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
    for line in p.read_text(encoding="utf-8").splitlines():
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
    rows = list(rows)
    present = [k for k in keys if any(isinstance(r.get(k), (int, float)) for r in rows)]
    if not present:
        return None
    cols = 3
    nrows = math.ceil(len(present) / cols)
    fig = Figure(figsize=(4 * cols, 3 * nrows))
    axes = fig.subplots(nrows, cols, squeeze=False)
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
    return path
