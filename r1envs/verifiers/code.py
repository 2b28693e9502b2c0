"""The code judge: runs a candidate program against a problem's tests in a sandbox.

``run_tests(code, problem, sandbox=None)`` returns a :class:`CodeResult` (``passed``,
``passed_tests``, ``total_tests``, ``error``, per-test outcomes and feedback).

How the verdict stays unforgeable
---------------------------------
The candidate runs in a sandbox process (see :mod:`r1envs.sandbox`) that never receives an
expected value, and the verdict is computed here, in the judge's process:

* ``assert`` tests are parsed here (``ast``) and split: every call into the candidate's code
  (``f(3)``, ``Solution().solve([1, 2])``) becomes an expression the sandbox evaluates; the
  rest of the assert (``== 9``, ``abs(... - 1.5) < 1e-6``, ``is None``) is evaluated here over
  the returned values. Values come back as plain JSON with *exact* types (``bool``, ``int``,
  ``float``, ``str``, ``list``, ``tuple``, ``dict``, ``set``, ``bytes``, ``None``); an
  object of any other type, including ``str``/``int`` subclasses and always-equal objects,
  arrives as an opaque token that equals nothing. ``==`` is replaced by a strict comparison
  (same type; an int and a float only when exactly equal — ``1000001.0`` is not
  ``1000000``; floats within tolerance of floats; containers element-wise).
  The sandbox could be made to report any plain value — but that is the same as returning it,
  and without the expected value it cannot know which one passes.
* ``stdio`` tests: the sandbox returns the captured output; the comparison is here, over the
  whole output, line by line (the line counts must match: no ``zip`` prefix passes),
  trailing whitespace ignored, an integer answer exactly, other numbers with tolerance.
  A program killed by a signal fails, whatever it printed first (``os.abort()``).
* ``script`` tests (test scripts as data sets write them: a HumanEval ``check``, MBPP
  asserts with setup code, pytest-style functions, call-based APPS/LiveCodeBench cases)
  run in a *judge process* of their own, a sibling of the program in the same sandbox with
  the same limits (data sets are data, not trusted code). In the judge every name of the
  solution module is a proxy: calling it calls into the program's process over a socket.
  Only plain data crosses (the exact types above); any other object stays in the program
  and the judge holds a handle that equals nothing (its methods, ``len``, iteration and
  indexing still ask the program). Exceptions of builtin types keep their type; an exit of
  the program (``sys.exit``, ``os._exit``, a signal) ends the test as a failure no
  ``except`` can catch. The program cannot shadow the judge's builtins, nor the helpers
  of ``test_setup`` (the judge runs its own copy); the judge is not dumpable, so a program
  under the same uid cannot reach its verdict pipe. A script passes when it runs to its
  end, the program alive, having called the program at least once.
* Exit codes, printed markers, ``atexit``/signal handlers and exceptions hooks decide
  nothing: a test passes only on returned values (or output) that compare equal here.
* A problem with zero tests fails validation; an infrastructure failure (sandbox cannot
  start, died) is ``result.error``, never a silent failure.

``assert`` tests must call the solution outside comprehensions and lambdas (write one
assert per case, or use a ``script`` test); their expressions are trusted problem data,
evaluated here with a small set of builtins and ``math``.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from r1envs.sandbox import Sandbox, SandboxError, get_sandbox
from r1envs.verifiers._code_judge import (
    ABS_TOL,
    REL_TOL,
    CompiledAssert,
    compare_output,
    compile_assert,
    decode_value,
    judge_assert,
    strict_equal,
)

__all__ = [
    "ABS_TOL",
    "REL_TOL",
    "CodeProblem",
    "CodeResult",
    "CompiledAssert",
    "StdioTest",
    "TestOutcome",
    "build_request",
    "compare_output",
    "compile_assert",
    "decode_value",
    "extract_code",
    "judge_assert",
    "run_tests",
    "strict_equal",
]


# -- problems ---------------------------------------------------------------------------


class StdioTest(BaseModel):
    """One input/output pair."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: str
    output: str


class CodeProblem(BaseModel):
    """A programming problem with tests (the ``r1/Code-v0`` schema).

    ``assert`` tests are Python assert statements run against the solution (``entry_point``
    names the function under test); ``stdio`` tests are input/output pairs; ``script`` tests
    are test scripts as data sets write them (a HumanEval ``check``, MBPP asserts with setup
    code, pytest-style functions), each run by a judge process of its own in which the
    solution's names are proxies (see the module doc). ``test_setup`` is problem code the
    judge runs before each script (helpers the tests call, e.g. HumanEval's prompt); with
    an ``entry_point`` that name is always the solution's. ``program_setup`` runs in the
    program's process before the solution (MBPP's ``test_setup_code``: classes and data the
    tests build their inputs with, which must live where the solution runs).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    question: str = Field(min_length=1)
    tests: list[str] | list[StdioTest] = Field(min_length=1)
    test_style: Literal["assert", "stdio", "script"]
    entry_point: str | None = None
    test_setup: str = ""
    program_setup: str = ""
    time_limit_s: float = Field(default=2.0, gt=0, le=60)
    memory_limit_mb: int = Field(default=256, ge=32, le=8192)
    id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shape_tests(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("test_style") == "stdio":
            tests = data.get("tests")
            if isinstance(tests, list) and any(isinstance(t, str) for t in tests):
                raise ValueError("tests: stdio tests must be {'input', 'output'} objects")
        return data

    @model_validator(mode="after")
    def _check_tests(self) -> CodeProblem:
        if self.test_style in ("assert", "script"):
            if not all(isinstance(t, str) for t in self.tests):
                raise ValueError(f"tests: {self.test_style} tests must be strings")
            for i, test in enumerate(self.tests):
                try:
                    if self.test_style == "assert":
                        compile_assert(test, self.entry_point)
                    else:
                        _check_script(test, f"tests.{i}")
                except ValueError as err:
                    raise ValueError(f"tests.{i}: {err}") from None
            for name in ("test_setup", "program_setup"):
                if getattr(self, name):
                    _check_script(getattr(self, name), name)
        elif not all(isinstance(t, StdioTest) for t in self.tests):
            raise ValueError("tests: stdio tests must be {'input', 'output'} objects")
        return self


def _check_script(source: str, where: str) -> None:
    try:
        ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"{where} is not valid Python ({err.msg}, line {err.lineno})") from None
    except (ValueError, RecursionError, MemoryError) as err:  # NUL bytes, deep nesting
        raise ValueError(f"{where} is not valid Python ({type(err).__name__})") from None


# -- running ------------------------------------------------------------------------------


@dataclass
class TestOutcome:
    """The verdict on one test."""

    passed: bool
    status: str
    feedback: str = ""
    #: the same without the expected value (what the program did, not what it should do)
    hint: str = ""


@dataclass
class CodeResult:
    """The verdict on a program: ``passed`` only when every test passes."""

    passed: bool
    passed_tests: int
    total_tests: int
    error: str | None = None
    tests: list[TestOutcome] = field(default_factory=list)

    @property
    def pass_rate(self) -> float:
        """Fraction of tests passed."""
        return self.passed_tests / self.total_tests if self.total_tests else 0.0

    def feedback(self, max_tests: int = 3, reveal_expected: bool = True) -> str:
        """What failed, for a next attempt (the first ``max_tests`` failing tests).

        With ``reveal_expected=False`` the expected values are left out (the policy learns
        what its program did, and cannot hard-code the hidden answers on the next turn).
        """
        if self.error:
            return f"The tests could not be run: {self.error}"
        failed = [t.feedback if reveal_expected else t.hint for t in self.tests if not t.passed]
        lines = [f"{self.passed_tests}/{self.total_tests} tests passed."]
        lines += [f"- {text}" for text in failed[:max_tests]]
        if len(failed) > max_tests:
            lines.append(f"- ... and {len(failed) - max_tests} more failing tests")
        return "\n".join(lines)


def extract_code(completion: str) -> str:
    """The last fenced code block of ``completion`` (the whole text if there is none).

    A block opens at a fence (three backticks; the rest of that line is its info string)
    and closes at the next fence. One left-to-right scan with ``str.find``: linear in the
    length of the text, whatever it holds (200 000 backticks included).
    """
    last, pos = None, 0
    while True:
        start = completion.find("```", pos)
        if start < 0:
            break
        newline = completion.find("\n", start + 3)
        if newline < 0:
            break
        end = completion.find("```", newline + 1)
        if end < 0:
            break
        last, pos = (newline + 1, end), end + 3
    return completion if last is None else completion[last[0] : last[1]]


def _runtime_problem(outcome: dict[str, Any]) -> str | None:
    status = outcome.get("status")
    if status == "timeout":
        return "time limit exceeded"
    if status == "output_limit":
        return "output limit exceeded"
    if status == "skipped":
        return "not run (an earlier test exceeded the time limit)"
    if status != "ok":
        return f"killed ({status}, signal {outcome.get('signal')})"
    if outcome.get("signal"):  # died of a signal (os.abort() after printing): a failure
        return f"killed by signal {outcome['signal']}"
    if "MemoryError" in outcome.get("stderr", ""):
        return "memory limit exceeded"
    return None


def _parse_frames(outcome: dict[str, Any]) -> list[Any]:
    """The program's result frames (raw JSON text from the runner), parsed here."""
    frames = []
    for text in outcome.get("frames") or []:
        try:
            frames.append(json.loads(text) if isinstance(text, str) else None)
        except (ValueError, RecursionError):
            frames.append({"raised": "malformed result frame"})
    return frames


def _judge_script(index: int, outcome: dict[str, Any], problem_text: str | None) -> TestOutcome:
    label = f"test {index + 1}"
    status = outcome.get("status", "?")
    if problem_text:
        return TestOutcome(False, status, f"{label}: {problem_text}", f"{label}: {problem_text}")
    verdict = outcome.get("verdict")
    if not isinstance(verdict, dict):
        tail = (outcome.get("stderr", "").strip().splitlines() or [""])[-1][:200]
        text = f"{label}: the test ended without a verdict" + (f" ({tail})" if tail else "")
        return TestOutcome(False, "error", text, text)
    if verdict.get("passed") is True:
        return TestOutcome(True, "ok")
    why, where, last = (str(verdict.get(k) or "")[:300] for k in ("why", "where", "last"))
    if why == "the program exited":
        tail = (outcome.get("stderr", "").strip().splitlines() or [""])[-1][:200]
        why += f" ({tail})" if tail else ""
    feedback = "; ".join(x for x in (where, why, last and f"last call: {last}") if x)
    hint = "; ".join(x for x in (why if not where else "", last and f"last call: {last}") if x)
    return TestOutcome(False, "wrong", f"{label}: {feedback}", f"{label}: {hint or 'failed'}")


def _judge_one(problem: CodeProblem, index: int, outcome: dict[str, Any]) -> TestOutcome:
    stderr_tail = outcome.get("stderr", "").strip().splitlines()[-1:] or [""]
    problem_text = _runtime_problem(outcome)
    status = outcome.get("status", "?")
    if problem.test_style == "script":
        return _judge_script(index, outcome, problem_text)
    if problem.test_style == "assert":
        compiled = compile_assert(problem.tests[index], problem.entry_point)  # type: ignore[arg-type]
        call = ", ".join(compiled.exprs)
        if problem_text:
            return TestOutcome(
                False, status, f"{compiled.source}: {problem_text}", f"{call}: {problem_text}"
            )
        values = _parse_frames(outcome)
        ok, message = judge_assert(compiled, values)
        if ok:
            return TestOutcome(True, "ok")
        if not values and stderr_tail[0]:
            message = f"error: {stderr_tail[0][:200]}"
        hint = (
            message
            if message.startswith(("error", "the program")) or " raised " in message
            else (f"{message.removeprefix('got ')} is wrong")
        )
        return TestOutcome(False, "wrong", f"{compiled.source}: {message}", hint)
    test = problem.tests[index]
    label = f"input {test.input[:100]!r}"  # type: ignore[union-attr]
    if problem_text:
        return TestOutcome(False, status, f"{label}: {problem_text}", f"{label}: {problem_text}")
    if outcome.get("exit_code", 0) != 0:
        tail = f": {stderr_tail[0][:200]}" if stderr_tail[0] else ""
        text = f"{label}: exit code {outcome['exit_code']}{tail}"
        return TestOutcome(False, "error", text, text)
    diff = compare_output(test.output, outcome.get("stdout", ""))  # type: ignore[union-attr]
    if diff is None:
        return TestOutcome(True, "ok")
    shown = outcome.get("stdout", "")[:200]
    return TestOutcome(
        False, "wrong", f"{label}: {diff}", f"{label}: your output {shown!r} is wrong"
    )


def build_request(code: str, problem: CodeProblem) -> dict[str, Any]:
    """The sandbox request for ``code`` against ``problem``.

    ``assert`` and ``stdio`` requests hold no expected value; ``script`` tests carry their
    script to the judge process, which the program cannot read.
    """
    if problem.test_style == "assert":
        tests = [
            {"exprs": list(compile_assert(t, problem.entry_point).exprs)}  # type: ignore[arg-type]
            for t in problem.tests
        ]
    elif problem.test_style == "script":
        tests = [
            {
                "script": t,
                "setup": problem.test_setup,
                "entry": problem.entry_point,
                "prelude": problem.program_setup,
            }
            for t in problem.tests
        ]
    else:
        tests = [{"input": t.input} for t in problem.tests]  # type: ignore[union-attr]
    return {
        "code": code,
        "time_limit": problem.time_limit_s,
        "memory_mb": problem.memory_limit_mb,
        "output_limit": 1 << 20,
        "tests": tests,
    }


def run_tests(
    code: str, problem: CodeProblem | dict[str, Any], sandbox: Sandbox | str | None = None
) -> CodeResult:
    """Run ``code`` against every test of ``problem`` in ``sandbox`` and judge it here.

    Args:
        code: the candidate program (Python source).
        problem: a :class:`CodeProblem` or a dict of that schema.
        sandbox: a sandbox instance, ``"local"`` (default, also for ``None``) or ``"docker"``.

    Raises:
        ValueError: if ``problem`` is malformed (e.g. has no tests).
    """
    if not isinstance(problem, CodeProblem):
        from pydantic import ValidationError

        from r1envs.core import validation_message

        try:
            problem = CodeProblem.model_validate(problem)
        except ValidationError as err:
            raise ValueError(f"invalid code problem: {validation_message(err)}") from None
    total = len(problem.tests)
    try:
        outcomes = get_sandbox(sandbox).execute(build_request(code, problem))
    except (SandboxError, OSError) as err:
        return CodeResult(False, 0, total, error=f"sandbox failed: {err}")
    if len(outcomes) != total:
        return CodeResult(
            False, 0, total, error=f"sandbox returned {len(outcomes)}/{total} results"
        )
    tests = [_judge_one(problem, i, o) for i, o in enumerate(outcomes)]
    passed = sum(t.passed for t in tests)
    return CodeResult(passed == total, passed, total, None, tests)
