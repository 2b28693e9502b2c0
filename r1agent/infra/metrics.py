"""Run metrics: one JSONL row per step, plus TensorBoard and/or Weights & Biases, PNG plots.

Metric names are namespaced (``charts/reward``, ``rewards/accuracy``, ``losses/kl``,
``perf/tokens_per_s`` ...). Every row goes to ``metrics.jsonl``; ``report_to`` names the
other sinks:

* ``tensorboard``: events under ``run_dir/tb``; scalars as scalars, text and sample
  completions (``samples/...``) as text.
* ``wandb``: a Weights & Biases run (the optional ``wandb`` package). The usual W&B
  environment variables apply (``WANDB_MODE=offline`` writes locally, ``WANDB_PROJECT``,
  ``WANDB_ENTITY``, ``WANDB_DIR`` ...); the project defaults to ``r1``, the directory to the
  run directory, the name to the run directory's name. Scalars are logged as scalars, lists
  of strings (sample completions) as a one-column table.

Resuming (``resume_step > 0``) drops the JSONL rows after ``resume_step``, purges later
TensorBoard events, and continues the same W&B run: its id is kept in ``run_dir/wandb_id``,
and steps that run already logged before the restart are not sent again (W&B keeps a
run's steps increasing; the values of those steps stay as first logged).
"""

from __future__ import annotations

import json
import math
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from torch.utils.tensorboard import SummaryWriter

from r1agent.infra.config import REPORTERS

__all__ = ["MetricsLogger", "plot_metrics", "read_jsonl", "resolve_sinks"]

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
    "eval/pass@1",
)

#: File in the run directory holding the W&B run id (so a resumed run continues it).
WANDB_ID_FILE = "wandb_id"


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


def resolve_sinks(report_to: Sequence[str] | None, tensorboard: bool | None) -> list[str]:
    """The sinks in effect: ``report_to`` when given, else tensorboard unless it is ``False``.

    Raises:
        ValueError: for a sink not in :data:`r1agent.infra.config.REPORTERS`.
    """
    if isinstance(report_to, str):
        report_to = [report_to]
    if report_to is None:
        return [] if tensorboard is False else ["tensorboard"]
    bad = [s for s in report_to if s not in REPORTERS]
    if bad:
        raise ValueError(f"report_to entries must be among {list(REPORTERS)}, report_to: {bad}")
    return list(dict.fromkeys(report_to))


def _is_scalar(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_text_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, str) for x in v)


class _TensorBoardSink:
    """TensorBoard events under ``run_dir/tb`` (events after ``resume_step`` purged)."""

    def __init__(self, run_dir: Path, resume_step: int) -> None:
        self._w = SummaryWriter(str(run_dir / "tb"), purge_step=resume_step + 1)

    def log(self, step: int, row: Mapping[str, Any]) -> None:
        for k, v in row.items():
            if _is_scalar(v):
                self._w.add_scalar(k, v, step)
            elif isinstance(v, str):
                self._w.add_text(k, v, step)
            elif _is_text_list(v):
                self._w.add_text(k, "\n\n---\n\n".join(v), step)

    def close(self) -> None:
        self._w.close()


class _WandbSink:
    """A W&B run; resumed (same id) when ``resume_step > 0`` and the run directory has one.

    ``skip_through``: steps up to this one were already sent by the run being resumed.
    """

    def __init__(
        self,
        run_dir: Path,
        *,
        run_name: str | None,
        config: Mapping[str, Any] | None,
        resume_step: int,
        skip_through: int,
    ) -> None:
        try:
            import wandb
        except ImportError as e:
            raise ImportError(
                "report_to: wandb needs the wandb package: pip install wandb "
                "(or pip install 'r1[wandb]')"
            ) from e
        self._wandb = wandb
        id_file = run_dir / WANDB_ID_FILE
        stored = id_file.read_text().strip() if id_file.is_file() else ""
        resuming = resume_step > 0 and bool(stored)
        run_id = stored if resuming else os.environ.get("WANDB_RUN_ID") or secrets.token_hex(4)
        id_file.write_text(run_id + "\n")
        self.skip_through = skip_through if resuming else 0
        wandb_dir = Path(os.environ.get("WANDB_DIR") or run_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "r1",
            name=run_name or os.environ.get("WANDB_NAME") or run_dir.resolve().name,
            dir=str(wandb_dir),
            config=dict(config or {}),
            id=run_id,
            resume="allow",
        )

    def log(self, step: int, row: Mapping[str, Any]) -> None:
        if step <= self.skip_through:
            return
        data: dict[str, Any] = {}
        for k, v in row.items():
            if _is_scalar(v) or isinstance(v, str):
                data[k] = v
            elif _is_text_list(v):
                data[k] = self._wandb.Table(columns=["text"], data=[[x] for x in v])
        self.run.log(data, step=step)

    def close(self) -> None:
        self.run.finish()


class MetricsLogger:
    """Writes ``metrics.jsonl`` under a run directory and each row to every sink.

    Args:
        run_dir: the run directory.
        report_to: sinks besides the JSONL file, among ``tensorboard`` and ``wandb``
            (default: tensorboard, unless ``tensorboard=False``).
        tensorboard: shorthand kept for callers without ``report_to``: ``False`` means no
            TensorBoard (ignored when ``report_to`` is given).
        resume_step: when resuming, rows with ``step > resume_step`` are dropped first.
        run_name: the W&B run name (default: the run directory's name).
        config: the run's settings, shown as the W&B run config.

    Raises:
        ValueError: for an unknown sink in ``report_to``.
        ImportError: for ``wandb`` without the wandb package installed.
    """

    def __init__(
        self,
        run_dir: str | Path,
        *,
        report_to: Sequence[str] | None = None,
        tensorboard: bool | None = None,
        resume_step: int = 0,
        run_name: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.report_to = resolve_sinks(report_to, tensorboard)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        previous = read_jsonl(self.path)
        rows = [r for r in previous if r.get("step", 0) <= resume_step]
        self.history: list[dict[str, Any]] = rows
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        self._fh = self.path.open("a")
        self._sinks: list[_TensorBoardSink | _WandbSink] = []
        try:
            if "tensorboard" in self.report_to:
                self._sinks.append(_TensorBoardSink(self.run_dir, resume_step))
            if "wandb" in self.report_to:
                logged = max((r.get("step", 0) for r in previous), default=0)
                self._sinks.append(
                    _WandbSink(
                        self.run_dir,
                        run_name=run_name,
                        config=config,
                        resume_step=resume_step,
                        skip_through=logged,
                    )
                )
        except BaseException:
            self.close()
            raise

    def log(self, step: int, row: Mapping[str, Any]) -> None:
        """Append one step's metrics (scalars and ``samples/*`` text) to every sink."""
        clean = {"step": step}
        for k, v in row.items():
            clean[k] = None if isinstance(v, float) and not math.isfinite(v) else v
        self._fh.write(json.dumps(clean, default=str) + "\n")
        self._fh.flush()
        self.history.append(clean)
        for sink in self._sinks:
            sink.log(step, row)

    def close(self) -> None:
        """Flush and close the files and the sinks (finishes the W&B run)."""
        self._fh.close()
        for sink in self._sinks:
            sink.close()
        self._sinks = []

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
