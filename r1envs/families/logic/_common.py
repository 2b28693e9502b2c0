"""Pieces shared by the logic families: solution rendering and answer-text limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from r1envs import formats
from r1envs.core import P, Task

#: Answers longer than this (characters) are not parsed: a real answer is short.
MAX_ANSWER_CHARS = 4000

NEGATIONS = frozenset(
    {"not", "no", "isn't", "aren't", "isn’t", "aren’t", "never", "neither", "nor"}
)


def render_solution(
    steps: Sequence[str], answer: str, output_format: str = "r1-zero", lead: str = "Answer:"
) -> str:
    """A complete completion: reasoning ``steps`` then ``answer`` in ``output_format``.

    Args:
        steps: the reasoning, one line each (the last ones should verify the answer).
        answer: the final answer, as the task's grader reads it.
        output_format: ``"r1-zero"`` (think/answer tags) or ``"r1"`` (reasoning delimiters,
            then a summary whose last lines hold the answer).
        lead: the summary line before the answer (``"r1"`` only).

    Raises:
        ValueError: if ``output_format`` is unknown.
    """
    fmt = formats.check_format_name(output_format)
    reasoning = "\n".join(steps)
    if fmt == "r1":
        return f"{formats.REASONING_START}\n{reasoning}\n{formats.REASONING_END}\n{lead}\n{answer}"
    return (
        f"{formats.THINK_START}\n{reasoning}\n{formats.THINK_END}\n"
        f"{formats.ANSWER_START}\n{answer}\n{formats.ANSWER_END}"
    )


def final_text(completion: str) -> str | None:
    """The final answer text of ``completion`` (see :func:`r1envs.formats.final_answer_text`;
    a ``\\boxed{}`` inside an answer block is unwrapped), or ``None`` when there is none or
    it is too long to be an answer."""
    text = formats.final_answer_text(completion)
    if text is None or not text or len(text) > MAX_ANSWER_CHARS:
        return None
    boxed = formats.last_boxed(text)
    return (boxed.strip() or None) if boxed is not None else text


def answer_region(completion: str) -> str | None:
    """The final answer section, possibly several lines (for grid answers).

    After the reasoning (the last ``</think>`` or r1 reasoning delimiter, when text follows
    it): the last ``<answer>`` block, else the end of the remaining text; within that, the
    last ``\\boxed{}`` if there is one. ``None`` when empty or longer than :data:`MAX_ANSWER_CHARS`.
    """
    text = completion
    for end_tag in (formats.REASONING_END, formats.THINK_END):
        k = text.rfind(end_tag)
        if k >= 0 and text[k + len(end_tag) :].strip():
            text = text[k + len(end_tag) :]
            break
    i = text.rfind(formats.ANSWER_START)
    j = text.find(formats.ANSWER_END, i) if i >= 0 else -1
    if i >= 0 and j >= 0:
        text = text[i + len(formats.ANSWER_START) : j]
    boxed = formats.last_boxed(text[-4 * MAX_ANSWER_CHARS :])
    text = boxed if boxed is not None else text[-MAX_ANSWER_CHARS:]
    text = text.strip()
    if not text or len(text) > MAX_ANSWER_CHARS:
        return None
    return text


MAX_NESTING = 12


def too_deep(data: Any, limit: int = MAX_NESTING) -> str | None:
    """The path of the first list/dict nested deeper than ``limit`` in ``data``, or ``None``.

    Iterative, so hostile inputs nested thousands deep cannot exhaust the stack (pydantic
    error messages print the offending input, which recurses).
    """
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    while stack:
        obj, path, depth = stack.pop()
        if isinstance(obj, Mapping):
            items = [(str(k), v) for k, v in obj.items()]
        elif isinstance(obj, (list, tuple)):
            items = [(str(i), v) for i, v in enumerate(obj)]
        else:
            continue
        if depth >= limit:
            return path or "<root>"
        stack.extend((v, f"{path}.{k}" if path else k, depth + 1) for k, v in items)
    return None


class LogicTaskBase(Task[P]):
    """A logic family: rejects absurdly nested problem dicts before pydantic sees them."""

    def validate(self, data: Mapping[str, Any] | BaseModel) -> P:
        """Validate a plain dict as this family's problem.

        Raises:
            ValueError: naming each bad field.
        """
        if isinstance(data, Mapping):
            path = too_deep(data)
            if path is not None:
                raise ValueError(
                    f"invalid {type(self).__name__} problem: {path}: nested deeper than "
                    f"{MAX_NESTING} levels"
                )
        return super().validate(data)
