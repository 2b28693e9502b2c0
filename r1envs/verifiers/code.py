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
  (same type, except int vs float; floats within tolerance; containers element-wise).
  The sandbox could be made to report any plain value — but that is the same as returning it,
  and without the expected value it cannot know which one passes.
* ``stdio`` tests: the sandbox returns the captured output; the comparison is here, over the
  whole output, line by line (the line counts must match: no ``zip`` prefix passes),
  trailing whitespace ignored, numbers compared with tolerance.
* Exit codes, printed markers, ``atexit``/signal handlers and exceptions hooks decide
  nothing: a test passes only on returned values (or output) that compare equal here.
* A problem with zero tests fails validation; an infrastructure failure (sandbox cannot
  start, died) is ``result.error``, never a silent failure.

Asserts must call the solution outside comprehensions and lambdas (write one assert per
case); test expressions themselves are trusted problem data, evaluated here with a small set
of builtins and ``math``.
"""

from __future__ import annotations

import ast
import builtins
import functools
import math
import operator
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from r1envs.sandbox import Sandbox, SandboxError, get_sandbox

REL_TOL = 1e-6
ABS_TOL = 1e-6
_SAFE = (
    "abs all any bool bytes chr dict divmod enumerate filter float frozenset int isinstance len "
    "list map max min ord pow range repr reversed round set sorted str sum tuple type zip"
).split()
JUDGE_GLOBALS: dict[str, Any] = {
    "__builtins__": {name: getattr(builtins, name) for name in _SAFE},
    "math": math,
}
_JUDGE_NAMES = frozenset(_SAFE) | {"math", "True", "False", "None"}
_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", re.S)


# -- problems ---------------------------------------------------------------------------


class StdioTest(BaseModel):
    """One input/output pair."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    input: str
    output: str


class CodeProblem(BaseModel):
    """A programming problem with tests (the ``r1/Code-v0`` schema).

    ``assert`` tests are Python assert statements run against the solution (``entry_point``
    names the function under test); ``stdio`` tests are input/output pairs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    question: str = Field(min_length=1)
    tests: list[str] | list[StdioTest] = Field(min_length=1)
    test_style: Literal["assert", "stdio"]
    entry_point: str | None = None
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
        if self.test_style == "assert":
            if not all(isinstance(t, str) for t in self.tests):
                raise ValueError("tests: assert tests must be strings")
            for i, test in enumerate(self.tests):
                try:
                    compile_assert(test)
                except ValueError as err:
                    raise ValueError(f"tests.{i}: {err}") from None
        elif not all(isinstance(t, StdioTest) for t in self.tests):
            raise ValueError("tests: stdio tests must be {'input', 'output'} objects")
        return self


# -- assert tests -------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledAssert:
    """An assert split into sandbox expressions and a judge-side check."""

    source: str
    exprs: tuple[str, ...]
    check: Any  # code object evaluated with ``__v`` (the values) and the judge globals


class _Opaque:
    """A value the sandbox could not send as a plain type: equal to nothing, false."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"


class _Raised(Exception):
    pass


def _free_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


class _Splitter(ast.NodeTransformer):
    def __init__(self) -> None:
        self.exprs: list[str] = []
        self.bound: list[set[str]] = []

    def _depends(self, node: ast.AST) -> bool:
        return any(name not in _JUDGE_NAMES for name in _free_names(node))

    def _extract(self, node: ast.expr) -> ast.expr:
        bound = set().union(*self.bound) if self.bound else set()
        if _free_names(node) & bound:
            raise ValueError(
                "the solution is called with a comprehension or lambda variable; "
                f"write one assert per case: {ast.unparse(node)!r}"
            )
        self.exprs.append(ast.unparse(node))
        index = ast.Constant(len(self.exprs) - 1)
        return ast.Subscript(ast.Name("__v", ast.Load()), index, ast.Load())

    def visit_Call(self, node: ast.Call) -> ast.expr:
        if self._depends(node.func):
            return self._extract(node)
        return self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> ast.expr:
        bound = set().union(*self.bound) if self.bound else set()
        if node.id in _JUDGE_NAMES or node.id in bound:
            return node
        return self._extract(node)

    def _scoped(self, node: ast.AST, names: set[str]) -> ast.AST:
        self.bound.append(names)
        try:
            return self.generic_visit(node)
        finally:
            self.bound.pop()

    def visit_Lambda(self, node: ast.Lambda) -> ast.AST:
        args = node.args
        names = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        names |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        return self._scoped(node, names)

    def _comprehension(self, node: ast.AST) -> ast.AST:
        names = set()
        for gen in node.generators:  # type: ignore[attr-defined]
            names |= _free_names(gen.target)
        return self._scoped(node, names)

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension

    def visit_Compare(self, node: ast.Compare) -> ast.expr:
        node = self.generic_visit(node)  # type: ignore[assignment]
        operands = [node.left, *node.comparators]
        checks = [
            ast.Call(
                ast.Name("__cmp", ast.Load()),
                [ast.Constant(type(op).__name__), operands[i], operands[i + 1]],
                [],
            )
            for i, op in enumerate(node.ops)
        ]
        return checks[0] if len(checks) == 1 else ast.BoolOp(ast.And(), checks)


@functools.lru_cache(maxsize=8192)
def compile_assert(test: str) -> CompiledAssert:
    """Split an ``assert`` statement into sandbox expressions and a judge-side check.

    Raises:
        ValueError: if ``test`` is not a single assert statement or calls the solution in a
            form the judge cannot split.
    """
    try:
        tree = ast.parse(test.strip())
    except SyntaxError as err:
        raise ValueError(f"test is not valid Python ({err.msg}), test: {test!r:.120}") from None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        raise ValueError(f"test must be one assert statement, test: {test!r:.120}")
    splitter = _Splitter()
    expr = splitter.visit(tree.body[0].test)
    if not splitter.exprs:
        raise ValueError(f"test never calls the solution, test: {test!r:.120}")
    body = ast.Expression(ast.fix_missing_locations(expr))
    check = compile(body, "<judge>", "eval")
    return CompiledAssert(test.strip(), tuple(splitter.exprs), check)


def strict_equal(a: Any, b: Any) -> bool:
    """Equality with exact types (``bool`` is not ``int``), int/float mixing and tolerance."""
    ta, tb = type(a), type(b)
    if ta in (int, float) and tb in (int, float) and (ta is float or tb is float):
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL) or (a == b)
    if ta is not tb:
        return False
    if ta in (list, tuple):
        return len(a) == len(b) and all(strict_equal(x, y) for x, y in zip(a, b, strict=False))
    if ta is dict:
        return a.keys() == b.keys() and all(strict_equal(a[k], b[k]) for k in a)
    if ta in (set, frozenset):
        return a == b and {type(x) for x in a} == {type(x) for x in b}
    if ta is _Opaque:
        return False
    return a == b


def _contains(container: Any, item: Any) -> bool:
    if type(container) is str:
        return type(item) is str and item in container
    if type(container) in (list, tuple, set, frozenset):
        return any(strict_equal(item, x) for x in container)
    if type(container) is dict:
        return any(strict_equal(item, k) for k in container)
    raise TypeError(f"'in' needs a str or a container, got {type(container).__name__}")


_ORDER = {"Lt": operator.lt, "LtE": operator.le, "Gt": operator.gt, "GtE": operator.ge}


def _cmp(op: str, a: Any, b: Any) -> bool:
    if op == "Eq":
        return strict_equal(a, b)
    if op == "NotEq":
        return not strict_equal(a, b) and type(a) is not _Opaque and type(b) is not _Opaque
    if op == "Is":
        return a is b
    if op == "IsNot":
        return a is not b and type(a) is not _Opaque
    if op == "In":
        return _contains(b, a)
    if op == "NotIn":
        return not _contains(b, a)
    for v in (a, b):
        if type(v) is _Opaque or type(v) is bool:
            raise TypeError(f"cannot order a {type(v).__name__} value")
    return bool(_ORDER[op](a, b))


def decode_value(data: Any, depth: int = 0) -> Any:
    """Rebuild a plain value from the sandbox's JSON (anything unexpected becomes opaque)."""
    t = type(data)
    if depth > 200:
        return _Opaque("deep")
    if data is None or t in (bool, int, str):
        return data
    if t is list:
        return [decode_value(x, depth + 1) for x in data]
    if t is not dict:
        return _Opaque(t.__name__)
    tag, v = data.get("__t"), data.get("v")
    try:
        if tag == "float":
            return float(v)
        if tag in ("tuple", "set", "frozenset"):
            items = [decode_value(x, depth + 1) for x in v]
            return {"tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        if tag == "dict":
            return {decode_value(k, depth + 1): decode_value(x, depth + 1) for k, x in v}
        if tag == "bytes":
            return bytes.fromhex(v)
    except (TypeError, ValueError):
        return _Opaque("malformed")
    return _Opaque(str(data.get("type", "object"))[:60])


def judge_assert(compiled: CompiledAssert, frames: list[Any]) -> tuple[bool, str]:
    """Evaluate the judge side of an assert over the sandbox's frames: (passed, message)."""
    if len(frames) < len(compiled.exprs):
        return False, "the program stopped before the test finished"
    values = []
    for src, frame in zip(compiled.exprs, frames, strict=False):
        if not isinstance(frame, dict):
            return False, "malformed result"
        if "raised" in frame:
            return False, f"{src} raised {str(frame['raised'])[:200]}"
        values.append(decode_value(frame.get("ok")))
    try:
        ok = compiled.check is not None and eval(  # noqa: S307 - trusted test data, judge names only
            compiled.check, {**JUDGE_GLOBALS, "__v": values, "__cmp": _cmp}
        )
    except Exception as err:  # noqa: BLE001 - a failed comparison is a failed test
        ok, detail = False, f"{type(err).__name__}: {err}"
    else:
        detail = ""
    got = ", ".join(f"{src} = {_show(v)}" for src, v in zip(compiled.exprs, values, strict=False))
    if type(ok) is not bool:
        ok = bool(ok) if type(ok) in (int, float, str, list, tuple, dict, set) else False
    return ok, "" if ok else f"got {got}" + (f" ({detail})" if detail else "")


def _show(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# -- stdio tests --------------------------------------------------------------------------

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_INT = re.compile(r"[-+]?\d+")


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _token_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    if _INT.fullmatch(a) and _INT.fullmatch(b):
        return int(a) == int(b)
    if _NUMBER.fullmatch(a) and _NUMBER.fullmatch(b):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return False


def compare_output(expected: str, actual: str) -> str | None:
    """``None`` when ``actual`` matches ``expected`` line by line, else the first difference."""
    want, got = _lines(expected), _lines(actual)
    for i in range(max(len(want), len(got))):
        if i >= len(got):
            return f"output ended at line {i + 1}; expected {want[i]!r:.80}"
        if i >= len(want):
            return f"extra output at line {i + 1}: {got[i]!r:.80}"
        a, b = want[i].split(), got[i].split()
        if want[i] != got[i] and (len(a) != len(b) or not all(map(_token_equal, a, b))):
            return f"line {i + 1}: expected {want[i]!r:.80}, got {got[i]!r:.80}"
    return None


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
    """The last fenced code block of ``completion`` (the whole text if there is none)."""
    blocks = _FENCE.findall(completion)
    return blocks[-1][1] if blocks else completion


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
    if "MemoryError" in outcome.get("stderr", ""):
        return "memory limit exceeded"
    return None


def _judge_one(problem: CodeProblem, index: int, outcome: dict[str, Any]) -> TestOutcome:
    stderr_tail = outcome.get("stderr", "").strip().splitlines()[-1:] or [""]
    problem_text = _runtime_problem(outcome)
    status = outcome.get("status", "?")
    if problem.test_style == "assert":
        compiled = compile_assert(problem.tests[index])  # type: ignore[arg-type]
        call = ", ".join(compiled.exprs)
        if problem_text:
            return TestOutcome(
                False, status, f"{compiled.source}: {problem_text}", f"{call}: {problem_text}"
            )
        values = outcome.get("values") or []
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
    """The sandbox request for ``code`` against ``problem`` (no expected values in it)."""
    if problem.test_style == "assert":
        tests = [{"exprs": list(compile_assert(t).exprs)} for t in problem.tests]  # type: ignore[arg-type]
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
