"""Code tasks (``r1/Code-v0``): LeetCode-style problems whose tests run in a sandbox.

Problem schema (:class:`~r1envs.verifiers.code.CodeProblem`)::

    {"question": str, "tests": [...], "test_style": "assert" | "stdio",
     "entry_point": str | None, "time_limit_s": float, "memory_limit_mb": int}

The graded code is the last fenced code block of the completion (the whole text if none).
Reward ``accuracy`` is 1 only when every test passes; ``pass_rate`` is its own component.
With ``gym.make("r1/Code-v0", max_turns=3)`` a failed attempt returns the failing tests'
feedback as the next observation. ``sandbox=`` takes ``"local"`` (default), ``"docker"`` or
a :class:`~r1envs.sandbox.Sandbox`.

Loaders accept the common layouts besides the native schema (:func:`normalize_record`):

* stdio lists: ``{"question", "inputs": [...], "outputs": [...]}``, or an ``input_output``
  field holding that JSON (APPS style);
* assert tests: ``{"prompt"|"text"|"question", "test": str | [str], "entry_point"}``, where a
  string ``test`` may define ``def check(candidate): assert candidate(...) == ...``
  (HumanEval style) and ``test_list`` is a list of asserts (MBPP style).
"""

from __future__ import annotations

import ast
import json
import logging
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from r1envs.core import Grade, Task, validation_message
from r1envs.loaders import read_records
from r1envs.resources import data_root
from r1envs.sandbox import Sandbox, get_sandbox
from r1envs.verifiers.code import CodeProblem, extract_code, run_tests

log = logging.getLogger(__name__)
_QUESTION_KEYS = ("question", "prompt", "text", "problem", "description")


def _asserts_from_test(test: str, entry_point: str | None) -> list[str]:
    """The assert statements of a test script (top level or inside ``def check``)."""
    tree = ast.parse(test)
    body: list[ast.stmt] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            body.extend(node.body)
        elif not isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.Expr)):
            body.append(node)  # top-level asserts (and anything unsupported, reported below)
    asserts = []
    for node in body:
        if isinstance(node, ast.Assert):
            if entry_point:
                for name in ast.walk(node):
                    if isinstance(name, ast.Name) and name.id == "candidate":
                        name.id = entry_point
            asserts.append(ast.unparse(node))
        elif not isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr, ast.Pass)):
            raise ValueError(
                f"test script has a {type(node).__name__} statement; only asserts are "
                f"supported, line {node.lineno}"
            )
    return asserts


def normalize_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Map a record of a common layout onto the ``CodeProblem`` schema (see module doc)."""
    rec = dict(record)
    if "test_style" in rec:
        return rec
    question = next((rec.pop(k) for k in _QUESTION_KEYS if k in rec), None)
    out: dict[str, Any] = {"question": question}
    io = rec.pop("input_output", None)
    if isinstance(io, str) and io.strip():
        io = json.loads(io)
    if isinstance(io, Mapping):
        rec.setdefault("inputs", io.get("inputs"))
        rec.setdefault("outputs", io.get("outputs"))
        if io.get("fn_name"):
            raise ValueError("function-call input_output layouts are not supported; use asserts")
    if "inputs" in rec or "outputs" in rec:
        inputs, outputs = rec.pop("inputs", None) or [], rec.pop("outputs", None) or []
        if len(inputs) != len(outputs):
            raise ValueError(f"inputs/outputs differ in length: {len(inputs)} vs {len(outputs)}")
        out["test_style"] = "stdio"
        out["tests"] = [
            {"input": _text(i), "output": _text(o)} for i, o in zip(inputs, outputs, strict=False)
        ]
    else:
        entry = rec.pop("entry_point", None)
        test = rec.pop("test", None) or rec.pop("test_list", None)
        tests = _asserts_from_test(test, entry) if isinstance(test, str) else list(test or [])
        out.update(test_style="assert", tests=tests, entry_point=entry)
    for key in ("time_limit_s", "memory_limit_mb", "id"):
        if key in rec:
            out[key] = rec.pop(key)
    out["metadata"] = {k: v for k, v in rec.items() if isinstance(v, (str, int, float, bool))}
    return out


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return str(value)


def load_code_problems(
    source: str | Path | Iterable[Mapping[str, Any]], *, skip_invalid: bool = False
) -> list[CodeProblem]:
    """Load code problems from a file (JSONL/JSON/Parquet/``hf:``) or records.

    Args:
        source: a path or ``hf:`` name (see :func:`r1envs.loaders.read_records`) or records.
        skip_invalid: log and skip malformed records instead of raising.

    Raises:
        ValueError: naming the record and field of a bad problem, or an empty source.
    """
    records = read_records(source) if isinstance(source, (str, Path)) else list(source)
    problems = []
    for i, record in enumerate(records):
        try:
            problems.append(CodeProblem.model_validate(normalize_record(record)))
        except (ValidationError, ValueError, SyntaxError, TypeError) as err:
            msg = validation_message(err) if isinstance(err, ValidationError) else str(err)
            if not skip_invalid:
                raise ValueError(f"{source if isinstance(source, (str, Path)) else '<records>'}: "
                                 f"record {i}: {msg}") from None  # fmt: skip
            log.warning("skipping code problem %d: %s", i, msg)
    if not problems:
        raise ValueError(f"no code problems found in {source!r:.80}")
    return problems


def shipped_files() -> list[Path]:
    """The shipped problem files (``tasks/code/*.jsonl``)."""
    return sorted((data_root() / "code").glob("*.jsonl"))


class CodeTask(Task[CodeProblem]):
    """Programming problems graded by running their tests in a sandbox.

    Args:
        data_files: one path or several; defaults to the shipped problems.
        problems: problems (models or dicts) given in memory instead of files.
        sandbox: ``"local"`` (default), ``"docker"`` or a :class:`~r1envs.sandbox.Sandbox`.
        test_style: keep only problems of this style (``"assert"`` or ``"stdio"``).
        feedback_tests: failing tests shown in multi-turn feedback.
        reveal_expected: show the failing tests' expected values in that feedback. Off by
            default: a policy shown the hidden answers learns to hard-code them next turn.
    """

    Problem = CodeProblem
    extra_rewards = ("pass_rate",)

    def __init__(
        self,
        data_files: str | Path | Sequence[str | Path] | None = None,
        *,
        problems: Iterable[CodeProblem | Mapping[str, Any]] | None = None,
        sandbox: str | Sandbox | None = None,
        test_style: str | None = None,
        feedback_tests: int = 3,
        reveal_expected: bool = False,
    ):
        if sandbox is not None and not isinstance(sandbox, (str, Sandbox)):
            raise ValueError(
                f"sandbox must be 'local', 'docker' or a Sandbox, sandbox: {sandbox!r}"
            )
        if isinstance(sandbox, str) and sandbox not in ("local", "docker"):
            raise ValueError(
                f"sandbox must be 'local', 'docker' or a Sandbox, sandbox: {sandbox!r}"
            )
        if problems is not None:
            loaded = [self.validate(p) for p in problems]
        else:
            files = shipped_files() if data_files is None else data_files
            if isinstance(files, (str, Path)):
                files = [files]
            loaded = [p for f in files for p in load_code_problems(f)]
        if test_style is not None:
            loaded = [p for p in loaded if p.test_style == test_style]
        if not loaded:
            raise ValueError(f"no code problems (test_style: {test_style!r})")
        self.problems = loaded
        self.feedback_tests = feedback_tests
        self.reveal_expected = reveal_expected
        self._sandbox_spec = sandbox
        self._sandbox: Sandbox | None = None

    def __len__(self) -> int:
        return len(self.problems)

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox the tests run in (started on first use)."""
        if self._sandbox is None:
            self._sandbox = get_sandbox(self._sandbox_spec)
        return self._sandbox

    def sample(self, rng: random.Random) -> CodeProblem:
        """A problem drawn uniformly."""
        return self.problems[rng.randrange(len(self.problems))]

    def prompt(self, problem: CodeProblem) -> str:
        """The statement plus what the answer must look like."""
        if problem.test_style == "stdio":
            how = "Write a Python 3 program that reads standard input and writes standard output."
        else:
            name = f"`{problem.entry_point}`" if problem.entry_point else "the function"
            how = f"Write {name} in Python 3."
        return f"{problem.question.strip()}\n\n{how} Give the complete code in one ```python block"

    def grade(self, completion: str, problem: CodeProblem, answer_text: str | None = None) -> Grade:
        """Run the last code block of ``completion`` against every test."""
        code = extract_code(completion)
        result = run_tests(code, problem, self.sandbox)
        return Grade(
            correct=result.passed,
            extracted_answer=code,
            score=1.0 if result.passed else 0.0,
            extra={"pass_rate": result.pass_rate},
            error=result.error,
            feedback=None
            if result.passed
            else result.feedback(self.feedback_tests, self.reveal_expected),
        )
