"""Math tasks: problems with a final answer checked for mathematical equivalence.

* :class:`MathTask` (``r1/Math-v0``) draws from a problem set: the shipped self-written set
  by default, or the user's files (``gym.make("r1/Math-v0", data_files="gsm.jsonl",
  fields={...}, transforms={"answer": "gsm8k"})``).
* :class:`ArithmeticTask` (``r1/Arithmetic-v0``) generates integer expressions such as
  ``47 + 18 - 25`` with adjustable size (operands, digits, operators);
  ``r1/ArithmeticEasy-v0`` is its one-digit rung (``7 + 5 - 3``).

Both grade with :func:`r1envs.verifiers.math.check`. ``strict=True`` (the default for
training) requires an explicit final-answer marker: ``<answer>``, ``\\boxed{}``, "the answer
is". Problem schema: ``{"question": str, "answer": str}`` plus optional ``id`` and
``metadata``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from r1envs.core import Grade, Task
from r1envs.loaders import load_problems
from r1envs.resources import data_path

DEFAULT_MATH_DATA = "math/problems.jsonl"


class MathProblem(BaseModel):
    """A math problem with a gold final answer (LaTeX or plain text)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("answer", mode="before")
    @classmethod
    def _answer_to_str(cls, v: Any) -> Any:
        return str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v


class _MathGrading:
    """Grading shared by the math tasks: equivalence of the final answer with the gold."""

    strict: bool = True
    timeout: float = 5.0

    def grade(self, completion: str, problem: MathProblem, answer_text: str | None = None) -> Grade:
        """Check the completion's final answer against the gold answer."""
        from r1envs.verifiers.math import check

        result = check(completion, problem.answer, strict=self.strict, timeout=self.timeout)
        return Grade(correct=result.correct, extracted_answer=result.extracted, error=result.error)


class MathTask(_MathGrading, Task[MathProblem]):
    """Math word problems from a problem set.

    Args:
        data_files: one path or several (JSONL/JSON/Parquet, or ``hf:NAME``); defaults to the
            shipped set.
        fields: field mapping from the files' layout to ``question``/``answer``.
        transforms: value transforms, e.g. ``{"answer": "gsm8k"}`` or ``{"answer": "boxed"}``.
        problems: problems given in memory instead of files.
        strict: require an explicit final-answer marker.
        timeout: verifier time budget per completion, seconds.
    """

    Problem = MathProblem

    def __init__(
        self,
        data_files: str | Path | Sequence[str | Path] | None = None,
        *,
        fields: Mapping[str, str] | None = None,
        transforms: Mapping[str, str | Callable[[Any], Any]] | None = None,
        problems: Sequence[Mapping[str, Any] | MathProblem] | None = None,
        strict: bool = True,
        timeout: float = 5.0,
    ) -> None:
        if problems is not None:
            self.problems = [self.validate(p) for p in problems]
        else:
            if data_files is None:
                data_files = [data_path(DEFAULT_MATH_DATA)]
            elif isinstance(data_files, (str, Path)):
                data_files = [data_files]
            self.problems = [
                p
                for f in data_files
                for p in load_problems(f, MathProblem, fields=fields, transforms=transforms)
            ]
        if not self.problems:
            raise ValueError("MathTask needs at least one problem, problems: []")
        self.strict = strict
        self.timeout = timeout

    def __len__(self) -> int:
        return len(self.problems)

    def sample(self, rng: random.Random) -> MathProblem:
        """A problem chosen uniformly."""
        return self.problems[rng.randrange(len(self.problems))]

    def prompt(self, problem: MathProblem) -> str:
        """The question as stated."""
        return problem.question


class ArithmeticTask(_MathGrading, Task[MathProblem]):
    """Integer arithmetic expressions, e.g. ``What is 47 + 18 - 25?``.

    Args:
        num_operands: how many numbers per expression (>= 2).
        max_value: the largest operand (operands are drawn from ``[min_value, max_value]``).
        min_value: the smallest operand.
        operators: which of ``+ - *`` may appear.
        strict: require an explicit final-answer marker.
        question_language: ``"en"`` (``What is 7 + 5 - 1?``) or ``"zh"`` (``7 + 5 - 1 等于多少？``).
    """

    Problem = MathProblem
    _QUESTIONS: dict[str, str] = {"en": "What is {expr}?", "zh": "{expr} 等于多少？"}
    _OPS: dict[str, Callable[[int, int], int]] = {
        "+": lambda a, b: a + b,
        "-": lambda a, b: a - b,
        "*": lambda a, b: a * b,
    }

    def __init__(
        self,
        num_operands: int = 3,
        max_value: int = 99,
        min_value: int = 1,
        operators: str = "+-",
        strict: bool = True,
        timeout: float = 5.0,
        question_language: str = "en",
    ) -> None:
        if question_language not in self._QUESTIONS:
            raise ValueError(
                f"question_language must be one of {sorted(self._QUESTIONS)}, "
                f"question_language: {question_language!r}"
            )
        self.question_language = question_language
        if num_operands < 2:
            raise ValueError(f"num_operands must be >= 2, num_operands: {num_operands}")
        if not 0 <= min_value <= max_value:
            raise ValueError(
                f"need 0 <= min_value <= max_value, min_value: {min_value}, max_value: {max_value}"
            )
        bad = set(operators) - set(self._OPS)
        if not operators or bad:
            raise ValueError(
                f"operators must be a non-empty subset of '+-*', operators: {operators!r}"
            )
        self.num_operands, self.min_value, self.max_value = num_operands, min_value, max_value
        self.operators = operators
        self.strict, self.timeout = strict, timeout

    def sample(self, rng: random.Random) -> MathProblem:
        """A random expression and its value (``*`` binds tighter, as usual)."""
        nums = [rng.randint(self.min_value, self.max_value) for _ in range(self.num_operands)]
        ops = [rng.choice(self.operators) for _ in range(self.num_operands - 1)]
        expr = " ".join(
            [str(nums[0])] + [f"{op} {n}" for op, n in zip(ops, nums[1:], strict=False)]
        )
        question = self._QUESTIONS[self.question_language].format(expr=expr)
        return MathProblem(question=question, answer=str(_evaluate(nums, ops)))

    def prompt(self, problem: MathProblem) -> str:
        """The question as stated."""
        return problem.question


def easy_arithmetic(**kwargs: Any) -> ArithmeticTask:
    """``r1/ArithmeticEasy-v0``: one-digit operands (1..9), three of them, ``+`` and ``-``.

    The first rung of the arithmetic curriculum (small models learn it within minutes on a
    CPU); every :class:`ArithmeticTask` kwarg can still be overridden.
    """
    return ArithmeticTask(**{"num_operands": 3, "min_value": 1, "max_value": 9, **kwargs})


def easy_arithmetic_zh(**kwargs: Any) -> ArithmeticTask:
    """``r1/ArithmeticEasyZh-v0``: :func:`easy_arithmetic` asked in Chinese.

    The id's defaults also make the env Chinese: the prompt template (``prompt_language``)
    and the target of the language-consistency reward (``language``) are ``"zh"``.
    """
    return easy_arithmetic(**{"question_language": "zh", **kwargs})


def _evaluate(nums: list[int], ops: list[str]) -> int:
    """Evaluate with ``*`` before ``+``/``-``, without ``eval``."""
    terms, signs = [nums[0]], []
    for op, n in zip(ops, nums[1:], strict=False):
        if op == "*":
            terms[-1] *= n
        else:
            terms.append(n)
            signs.append(op)
    total = terms[0]
    for sign, t in zip(signs, terms[1:], strict=False):
        total = total + t if sign == "+" else total - t
    return total
