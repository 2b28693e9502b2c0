"""Atomic, resumable checkpoints.

A checkpoint is a Hugging Face directory (``save_pretrained`` of model and tokenizer) plus
``trainer_state.pt`` (optimizer, scheduler, RNG states, step). It is written into a
temporary sibling directory, every file is fsync-ed, then the directory is renamed into
place (``checkpoints/step-000010``) and the parent directory fsync-ed, so a crash at any
moment leaves either the previous checkpoints or the complete new one — never a partial
directory under a final name. Leftover ``.tmp-*`` directories are ignored and cleaned up.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_save_pretrained",
    "latest_checkpoint",
    "load_trainer_state",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def _fsync_tree(root: Path) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) RNG states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states saved by :func:`rng_state`."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _write_dir_atomically(final: Path, write: Any) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        write(tmp)
        _fsync_tree(tmp)
        if final.exists():
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: Any,
    tokenizer: Any,
    trainer_state: dict[str, Any],
    *,
    keep: int = 2,
    state_dict: dict[str, Any] | None = None,
) -> Path:
    """Write ``run_dir/checkpoints/step-{step:06d}`` atomically and prune old ones.

    Args:
        run_dir: the run directory.
        step: optimizer steps done.
        model: the (unwrapped) model to ``save_pretrained``.
        tokenizer: its tokenizer.
        trainer_state: optimizer/scheduler/RNG state and anything else to resume with.
        keep: number of step checkpoints kept (oldest removed first).
        state_dict: full weights to save instead of ``model.state_dict()`` (FSDP).

    Returns:
        The checkpoint directory.
    """
    root = Path(run_dir) / "checkpoints"

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        torch.save({**trainer_state, "step": step}, tmp / STATE_FILE)

    path = _write_dir_atomically(root / f"step-{step:06d}", write)
    for old in _step_dirs(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for junk in root.glob(".tmp-*"):
        shutil.rmtree(junk, ignore_errors=True)
    return path


def atomic_save_pretrained(
    out_dir: str | Path, model: Any, tokenizer: Any, *, state_dict: dict[str, Any] | None = None
) -> Path:
    """Save a final HF model into ``out_dir`` (files written to a temp dir, then moved in).

    ``out_dir`` may already hold other run files (metrics, plots): only the model and
    tokenizer files are replaced, each by an atomic rename.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-final-", dir=out))
    try:
        model.save_pretrained(tmp, state_dict=state_dict)
        tokenizer.save_pretrained(tmp)
        _fsync_tree(tmp)
        for f in tmp.iterdir():
            os.replace(f, out / f.name)
        _fsync_dir(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _step_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete step checkpoint of a run (``None`` when there is none)."""
    for path in reversed(_step_dirs(Path(run_dir) / "checkpoints")):
        if (path / STATE_FILE).is_file():
            return path
    return None


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """Load ``trainer_state.pt`` of a checkpoint (trusted file written by this trainer)."""
    return torch.load(Path(path) / STATE_FILE, map_location="cpu", weights_only=False)
