"""General (non-reasoning) prompts with answers: stage 3's non-reasoning SFT data.

The shipped set is ``general/general.jsonl`` (``{"prompt", "answer"}`` rows); prompts are
rendered with :data:`GENERAL_TEMPLATE`, the template stage 4's chat env uses too.
"""

from __future__ import annotations

from pathlib import Path

from r1agent.data.sft import Example, read_examples
from r1envs.resources import data_path

__all__ = ["GENERAL_TEMPLATE", "general_examples"]

GENERAL_TEMPLATE = "User: {prompt}\nAssistant:"


def general_examples(path: str | Path | None, limit: int | None = None) -> list[Example]:
    """General (non-reasoning) prompts with answers as SFT examples.

    Args:
        path: ``{"prompt", "answer"}`` JSONL; ``None`` means the shipped set.
        limit: keep at most this many.

    Raises:
        FileNotFoundError, ValueError: for a missing or malformed file (named).
    """
    if path is None:
        path = data_path("general/general.jsonl")
    examples = [
        Example(GENERAL_TEMPLATE.format(prompt=e.prompt), " " + e.response.strip())
        for e in read_examples(path)
    ]
    return examples[:limit] if limit is not None else examples
