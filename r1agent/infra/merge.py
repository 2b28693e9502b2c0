"""Merge a LoRA adapter into its base model: a plain Hugging Face directory, no PEFT needed.

``merge_adapter("runs/grpo-lora", "runs/merged")`` reads the adapter directory
(``adapter_config.json`` and its weights, as PEFT's ``save_pretrained`` writes them), loads
the base model its ``base_model_name_or_path`` names (or ``base=``), folds every adapter
into its layer (``merge_and_unload``) and writes model and tokenizer into the output
directory with :func:`r1agent.infra.checkpoint.atomic_save_pretrained`, followed by
:data:`MARKER`, which records what was merged.

The output directory must be new, empty, or an earlier merge output (it holds
:data:`MARKER`): any other non-empty directory is refused, so user files are never
overwritten. Files of an earlier merge that the new one does not write (say, weight shards
of a different split) are removed; nothing else is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1agent.infra.checkpoint import atomic_save_pretrained

__all__ = ["ADAPTER_CONFIG", "MARKER", "check_output_dir", "merge_adapter", "read_adapter_config"]

ADAPTER_CONFIG = "adapter_config.json"
#: Written last into a merge output: the adapter, the base and the files written.
MARKER = "r1_merged.json"


def read_adapter_config(adapter_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The adapter's ``adapter_config.json``.

    Raises:
        ValueError: naming the directory when it is missing or holds no adapter config.
    """
    path = Path(adapter_dir)
    if not path.is_dir():
        raise ValueError(f"adapter directory not found: {str(path)!r}")
    cfg = path / ADAPTER_CONFIG
    if not cfg.is_file():
        raise ValueError(
            f"{str(path)!r} is not a LoRA adapter directory: it has no {ADAPTER_CONFIG} "
            "(write one with PEFT's save_pretrained, or train with lora: {...})"
        )
    try:
        return json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{str(cfg)!r} is not valid JSON: {exc}") from exc


def check_output_dir(out_dir: str | os.PathLike[str]) -> list[str]:
    """Refuse an output directory that holds anything but an earlier merge.

    Returns:
        The files the earlier merge wrote (empty for a new or empty directory).

    Raises:
        ValueError: naming the directory when it is a file, or a non-empty directory
            without :data:`MARKER`.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output path exists and is not a directory: {str(out)!r}")
    if not out.is_dir() or not any(out.iterdir()):
        return []
    marker = out / MARKER
    if not marker.is_file():
        raise ValueError(
            f"output directory {str(out)!r} is not empty and was not written by r1agent merge "
            f"(no {MARKER}); choose a new or empty directory"
        )
    try:
        return list(json.loads(marker.read_text()).get("files", []))
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ValueError(f"cannot read {str(marker)!r}: {exc}") from exc


def _load_base(base: str) -> Any:
    try:
        return AutoModelForCausalLM.from_pretrained(base, dtype="auto")
    except Exception as exc:
        raise ValueError(
            f"cannot load the base model {base!r}: {exc} (give the base with --base PATH)"
        ) from exc


def _clock(out: Path) -> int:
    """The file system's current time in ``out`` (mtime of a fresh file), in ns."""
    out.mkdir(parents=True, exist_ok=True)
    probe = out / f".{MARKER}.clock"
    probe.write_bytes(b"")
    try:
        return probe.stat().st_mtime_ns
    finally:
        probe.unlink()


def _write_marker(out: Path, record: dict[str, Any]) -> None:
    tmp = out / f".{MARKER}.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, out / MARKER)


def merge_adapter(
    adapter_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    base: str | None = None,
) -> Path:
    """Merge a PEFT LoRA adapter into its base model and save a plain HF directory.

    Args:
        adapter_dir: directory with ``adapter_config.json`` and the adapter weights.
        out_dir: where to write the merged model and tokenizer.
        base: base model directory or hub id (default: the adapter's
            ``base_model_name_or_path``).

    Returns:
        The output directory.

    Raises:
        ValueError: for a directory without an adapter config, an unusable output
            directory, or a base model that cannot be loaded (each names the path).
    """
    adapter = Path(adapter_dir)
    cfg = read_adapter_config(adapter)
    base = base or cfg.get("base_model_name_or_path")
    if not base:
        raise ValueError(
            f"{str(adapter / ADAPTER_CONFIG)!r} names no base_model_name_or_path; "
            "give the base with --base PATH"
        )
    out = Path(out_dir)
    previous = check_output_dir(out)
    model = PeftModel.from_pretrained(_load_base(base), str(adapter))
    merged = model.merge_and_unload()
    has_tokenizer = any(
        (adapter / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")
    )
    tokenizer = AutoTokenizer.from_pretrained(str(adapter) if has_tokenizer else base)
    start = _clock(out)
    atomic_save_pretrained(out, merged, tokenizer)
    written = sorted(
        f.name for f in out.iterdir() if f.name != MARKER and f.stat().st_mtime_ns >= start
    )
    for stale in set(previous) - set(written):
        if (out / stale).is_file():
            (out / stale).unlink()
    _write_marker(out, {"adapter": str(adapter), "base": base, "files": written})
    return out
