"""The judge's side of a test: splitting asserts, strict comparison, output comparison.

Everything here runs in the judge's process, over plain values returned by the sandbox
(see :mod:`r1envs.verifiers.code` for the design).
"""

from __future__ import annotations

import ast
import builtins
import functools
import math
import operator
import re
from dataclasses import dataclass
from typing import Any

REL_TOL = 1e-6
ABS_TOL = 1e-6
_SAFE = (
    "abs all any bool bytes chr dict divmod enumerate filter float frozenset int isinstance len "
    "list map max min ord pow range repr reversed round set sorted str sum tuple type zip"
).split()


def _isinstance(obj: Any, types: Any) -> bool:
    """``isinstance`` where ``bool`` is not an ``int``."""
    kinds = types if isinstance(types, tuple) else (types,)
    if type(obj) is bool and bool not in kinds:
        return False
    return isinstance(obj, types)


JUDGE_GLOBALS: dict[str, Any] = {
    "__builtins__": {
        **{name: getattr(builtins, name) for name in _SAFE},
        "isinstance": _isinstance,
    },
    "math": math,
}
_JUDGE_NAMES = frozenset(_SAFE) | {"math", "True", "False", "None"}

# -- assert tests -------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledAssert:
    """An assert split into sandbox expressions and a judge-side check."""

    source: str
    exprs: tuple[str, ...]
    check: Any  # code object evaluated with ``__v`` (the values) and the judge globals


class _Opaque:
    """A value the sandbox could not send as a plain type: equal to nothing, no truth value."""

    def __init__(self, type_name: str):
        self.type_name = type_name

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise TypeError(f"a {self.type_name} object has no truth value here")

    def __repr__(self) -> str:
        return f"<{self.type_name} object>"


class _Raised(Exception):
    pass


def _free_names(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


class _Splitter(ast.NodeTransformer):
    def __init__(self, judge_names: frozenset[str]) -> None:
        self.exprs: list[str] = []
        self.bound: list[set[str]] = []
        self.judge_names = judge_names

    def _depends(self, node: ast.AST) -> bool:
        return any(name not in self.judge_names for name in _free_names(node))

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
        if node.id in self.judge_names or node.id in bound:
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
def compile_assert(test: str, entry_point: str | None = None) -> CompiledAssert:
    """Split an ``assert`` statement into sandbox expressions and a judge-side check.

    ``entry_point`` is always the solution's, even when it shadows a builtin (``sum``).

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
    splitter = _Splitter(_JUDGE_NAMES - {entry_point})
    expr = splitter.visit(tree.body[0].test)
    if not splitter.exprs:
        raise ValueError(f"test never calls the solution, test: {test!r:.120}")
    body = ast.Expression(ast.fix_missing_locations(expr))
    check = compile(body, "<judge>", "eval")
    return CompiledAssert(test.strip(), tuple(splitter.exprs), check)


def strict_equal(a: Any, b: Any) -> bool:
    """Equality with exact types (``bool`` is not ``int``); floats within tolerance of
    floats; an int and a float only when exactly equal (``1000001.0`` is not ``1000000``:
    the tolerance is for floats, not for integer answers)."""
    ta, tb = type(a), type(b)
    if ta is float and tb is float:
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL) or (a == b)
    if ta in (int, float) and tb in (int, float) and ta is not tb:
        return a == b
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
    """``a`` expected, ``b`` printed. An integer answer compares exactly (``1000001.0`` is
    not ``1000000``; ``0.0`` is ``0``); a float answer within tolerance."""
    if a == b:
        return True
    if _INT.fullmatch(a):
        if _INT.fullmatch(b):
            return int(a) == int(b)
        return _NUMBER.fullmatch(b) is not None and _exact(int(a), b)
    if _NUMBER.fullmatch(a) and _NUMBER.fullmatch(b):
        return math.isclose(float(a), float(b), rel_tol=REL_TOL, abs_tol=ABS_TOL)
    return False


def _exact(value: int, text: str) -> bool:
    """Whether the printed number ``text`` is exactly the integer ``value``."""
    from fractions import Fraction

    mantissa, _, exponent = text.lower().partition("e")
    if exponent and abs(int(exponent)) > len(mantissa) + len(str(value)) + 2:
        return float(mantissa) == 0 == value  # no need to build a huge number
    try:
        return Fraction(text) == value
    except (ValueError, ZeroDivisionError, OverflowError):
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
