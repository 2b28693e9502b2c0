"""Countdown (``r1/Countdown-v0``): reach a target number with the given numbers.

Problem schema::

    {"numbers": [25, 5, 4, 3], "target": 83, "use_all": false}

``numbers`` holds 2 to 8 positive integers (each at most 1,000,000); ``target`` is an
integer; ``use_all`` (default false) requires every number to be used exactly once (the
TinyZero variant). Pinned problems with at most 5 numbers are checked to be solvable.

Rules (the TV game's, with exact fractions allowed): build an arithmetic expression from the numbers with ``+``,
``-``, ``*``, ``/`` and parentheses, **using each given number at most once** (not every
number has to be used unless ``use_all``; a number given twice may be used twice). Arithmetic is exact
(fractions allowed in intermediate steps, division by zero is invalid); unary minus, powers,
decimals and numbers that are not given are not allowed. The answer is the expression
(``(25 - 5) * 4 + 3``), optionally followed by ``= 83`` or led by "The answer is";
``×``, ``÷``, ``\\times``, ``\\div``, ``\\cdot``, ``\\frac{a}{b}`` and
``\\left( \\right)`` are read as their operators. Any expression that follows the rules
and equals the target is correct.

Difficulty (task kwargs): ``num_numbers``, ``min_value``/``max_value`` (range of the numbers)
and ``min_target``/``max_target`` (range of the target). Problems are generated from a
random expression over all the numbers whose every intermediate value is a positive integer,
so each has a solution.
"""

from __future__ import annotations

import ast
import random
import re
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from r1envs.core import Grade
from r1envs.families.logic._common import LogicTaskBase, final_text, render_solution

NAME = "countdown"
MAX_NUMBERS = 8
MAX_NUMBER_VALUE = 1_000_000
MAX_EXPRESSION_CHARS = 300
_CHECK_SOLVABLE_UP_TO = 5
_ALLOWED = re.compile(r"[0-9+\-*/()\s]*")
_REPLACE = (
    ("\\left", ""),
    ("\\right", ""),
    ("\\times", "*"),
    ("\\cdot", "*"),
    ("\\div", "/"),
    ("×", "*"),
    ("·", "*"),
    ("∙", "*"),
    ("÷", "/"),
    ("−", "-"),
    ("–", "-"),
    ("$", ""),
    ("\\(", ""),
    ("\\)", ""),
    ("\\[", ""),
    ("\\]", ""),
    ("`", ""),
)
_LEAD = re.compile(r"^(?:the\s+)?(?:final\s+)?(?:answer|expression|solution)\s*(?:is|:)\s*", re.I)
_FRAC = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class CountdownProblem(BaseModel):
    """A Countdown problem: numbers to combine and a target."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    numbers: list[int] = Field(min_length=2, max_length=MAX_NUMBERS)
    target: int
    use_all: bool = False

    @field_validator("numbers")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        bad = [n for n in v if not 1 <= n <= MAX_NUMBER_VALUE]
        if bad:
            raise ValueError(f"numbers must be in [1, {MAX_NUMBER_VALUE}], got {bad}")
        return v

    @model_validator(mode="after")
    def _solvable(self) -> CountdownProblem:
        if (
            len(self.numbers) <= _CHECK_SOLVABLE_UP_TO
            and solve(self.numbers, self.target, self.use_all) is None
        ):
            rule = "using every number once" if self.use_all else "with"
            raise ValueError(
                f"target: {self.target} cannot be reached {rule} numbers {self.numbers}"
            )
        return self


# -- expression evaluation -------------------------------------------------------------


def _normalize(text: str) -> str | None:
    """The expression part of an answer, in plain ASCII operators, or ``None``."""
    for old, new in _REPLACE:
        text = text.replace(old, new)
    for _ in range(MAX_NUMBERS):
        text, found = _FRAC.subn(r"(\1) / (\2)", text)
        if not found:
            break
    text = _LEAD.sub("", text.strip()).rstrip(".").strip()
    return text or None


def _eval(node: ast.AST, counts: dict[int, int]) -> Fraction:
    """Exact value of an allowed expression node; consumes the numbers it uses.

    Raises:
        ValueError: on anything the rules forbid.
    """
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _eval(node.left, counts), _eval(node.right, counts)
        op = type(node.op)
        if op is ast.Add:
            return left + right
        if op is ast.Sub:
            return left - right
        if op is ast.Mult:
            return left * right
        if right == 0:
            raise ValueError("division by zero")
        return left / right
    if isinstance(node, ast.Constant) and type(node.value) is int:
        if counts.get(node.value, 0) <= 0:
            raise ValueError(f"number not available: {node.value}")
        counts[node.value] -= 1
        return Fraction(node.value)
    raise ValueError(f"not allowed: {type(node).__name__}")


def evaluate(expression: str, numbers: list[int], use_all: bool = False) -> Fraction | None:
    """The exact value of ``expression`` under the Countdown rules, or ``None`` if invalid.

    Only integers from ``numbers`` (each at most as often as given; exactly as often with
    ``use_all``), ``+ - * /`` and parentheses are allowed. Never raises; bounded in time by
    the length limit.
    """
    if len(expression) > MAX_EXPRESSION_CHARS or not _ALLOWED.fullmatch(expression):
        return None
    counts: dict[int, int] = {}
    for n in numbers:
        counts[n] = counts.get(n, 0) + 1
    try:
        tree = ast.parse(expression.strip(), mode="eval")
        value = _eval(tree.body, counts)
    except (SyntaxError, ValueError, RecursionError, MemoryError, ZeroDivisionError):
        return None
    if use_all and any(counts.values()):
        return None
    return value


def _split_answer(text: str, target: int) -> str | None:
    """The expression of ``expr``, ``expr = target`` or ``target = expr``."""
    parts = [p.strip() for p in text.split("=")]
    if len(parts) == 1:
        return parts[0]
    if len(parts) == 2:
        if parts[1] == str(target):
            return parts[0]
        if parts[0] == str(target):
            return parts[1]
    return None


# -- solver ----------------------------------------------------------------------------


def _combinations(
    a: Fraction, ea: str, b: Fraction, eb: str, nice: bool
) -> list[tuple[Fraction, str]]:
    """Values of ``a op b``; ``nice`` keeps non-negative integers only (tried first)."""
    if a < b:
        a, ea, b, eb = b, eb, a, ea
    out = [(a + b, f"({ea} + {eb})"), (a * b, f"({ea} * {eb})"), (a - b, f"({ea} - {eb})")]
    if nice:
        if b != 0 and (a / b).denominator == 1:
            out.append((a / b, f"({ea} / {eb})"))
        return out
    out.append((b - a, f"({eb} - {ea})"))
    if b != 0:
        out.append((a / b, f"({ea} / {eb})"))
    if a != 0:
        out.append((b / a, f"({eb} / {ea})"))
    return out


def _search(
    values: list[tuple[Fraction, str]],
    target: Fraction,
    failed: set[tuple[Fraction, ...]],
    nice: bool,
    use_all: bool,
) -> str | None:
    """Depth-first search over pairwise combinations; ``failed`` memoizes dead states."""
    for value, expr in values:
        if value == target and (len(values) == 1 or not use_all):
            return expr
    key = tuple(sorted(v for v, _ in values))
    if len(values) < 2 or key in failed:
        return None
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            (a, ea), (b, eb) = values[i], values[j]
            rest = values[:i] + values[i + 1 : j] + values[j + 1 :]
            for value, expr in _combinations(a, ea, b, eb, nice):
                found = _search([*rest, (value, expr)], target, failed, nice, use_all)
                if found is not None:
                    return found
    failed.add(key)
    return None


def solve(numbers: list[int], target: int, use_all: bool = False) -> str | None:
    """An expression reaching ``target`` under the rules, or ``None`` if there is none.

    Exhaustive search (fast up to 5 numbers, seconds at 7+).
    """
    start = [(Fraction(n), str(n)) for n in numbers]
    found = _search(start, Fraction(target), set(), True, use_all)
    if found is None:
        found = _search(start, Fraction(target), set(), False, use_all)
    if found is None:
        return None
    return found[1:-1] if found.startswith("(") and _balanced(found[1:-1]) else found


def _balanced(text: str) -> bool:
    depth = 0
    for c in text:
        depth += (c == "(") - (c == ")")
        if depth < 0:
            return False
    return depth == 0


# -- generation ------------------------------------------------------------------------


def _random_expression(rng: random.Random, numbers: list[int]) -> tuple[int, str]:
    """Combine all ``numbers`` at random, keeping every intermediate a positive integer."""
    items = [(n, str(n)) for n in numbers]
    rng.shuffle(items)
    while len(items) > 1:
        i, j = rng.sample(range(len(items)), 2)
        (a, ea), (b, eb) = items[i], items[j]
        if a < b:
            (a, ea), (b, eb) = (b, eb), (a, ea)
        choices = [("+", a + b), ("*", a * b)]
        if a > b:
            choices.append(("-", a - b))
        if b > 1 and a % b == 0:
            choices.append(("/", a // b))
        op, value = rng.choice(choices)
        items = [x for k, x in enumerate(items) if k not in (i, j)]
        items.append((value, f"({ea} {op} {eb})"))
    value, expr = items[0]
    return value, expr[1:-1] if expr.startswith("(") else expr


# -- task ------------------------------------------------------------------------------


class CountdownTask(LogicTaskBase[CountdownProblem]):
    """Countdown puzzles with adjustable difficulty.

    Args:
        num_numbers: how many numbers are given (2 to 8; the solver used for pinned
            problems and ``solution`` is exhaustive, so keep it at 6 or below).
        min_value: the smallest number.
        max_value: the largest number.
        min_target: the smallest target.
        max_target: the largest target.
        use_all: generated problems require every number exactly once (the TinyZero rule).
    """

    Problem = CountdownProblem

    def __init__(
        self,
        num_numbers: int = 4,
        min_value: int = 1,
        max_value: int = 25,
        min_target: int = 10,
        max_target: int = 200,
        use_all: bool = False,
    ) -> None:
        if not 2 <= num_numbers <= MAX_NUMBERS:
            raise ValueError(
                f"num_numbers must be in [2, {MAX_NUMBERS}], num_numbers: {num_numbers}"
            )
        if not 1 <= min_value <= max_value <= MAX_NUMBER_VALUE:
            raise ValueError(
                f"need 1 <= min_value <= max_value <= {MAX_NUMBER_VALUE}, "
                f"min_value: {min_value}, max_value: {max_value}"
            )
        if min_target > max_target:
            raise ValueError(
                f"min_target must be <= max_target, min_target: {min_target}, "
                f"max_target: {max_target}"
            )
        self.num_numbers, self.min_value, self.max_value = num_numbers, min_value, max_value
        self.min_target, self.max_target = min_target, max_target
        self.use_all = use_all

    def sample(self, rng: random.Random) -> CountdownProblem:
        """Numbers and the value of a random expression over all of them.

        Draws until the value lies in ``[min_target, max_target]`` and is not one of the
        numbers (at most 1000 tries; then the closest value found is used).
        """
        best: tuple[float, list[int], int] | None = None
        for _ in range(1000):
            numbers = [rng.randint(self.min_value, self.max_value) for _ in range(self.num_numbers)]
            value, _ = _random_expression(rng, numbers)
            miss = max(self.min_target - value, value - self.max_target, 0)
            if value in numbers:
                miss += 0.5
            if best is None or miss < best[0]:
                best = (miss, numbers, value)
            if miss == 0:
                break
        _, numbers, value = best  # type: ignore[misc]
        return CountdownProblem.model_construct(numbers=numbers, target=value, use_all=self.use_all)

    def prompt(self, problem: CountdownProblem) -> str:
        """The numbers, the target, the rules and the answer format."""
        nums = ", ".join(str(n) for n in problem.numbers)
        rule = (
            "each number exactly once"
            if problem.use_all
            else "each number at most once (you do not have to use all of them)"
        )
        return (
            f"Using the numbers {nums}, make {problem.target}. You may use +, -, *, / and "
            f"parentheses, and {rule}. Give your final answer as a single arithmetic "
            "expression, e.g. (1 + 2) * 3."
        )

    def grade(
        self, completion: str, problem: CountdownProblem, answer_text: str | None = None
    ) -> Grade:
        """Correct iff the final expression follows the rules and equals the target."""
        text = final_text(completion)
        if text is None:
            return Grade(correct=False, extracted_answer=None)
        normalized = _normalize(text)
        expression = _split_answer(normalized, problem.target) if normalized else None
        if expression is None:
            return Grade(correct=False, extracted_answer=text)
        value = evaluate(expression, problem.numbers, problem.use_all)
        return Grade(correct=value == problem.target, extracted_answer=expression)

    def solution(self, problem: CountdownProblem, output_format: str = "r1-zero") -> str:
        """A correct completion with the steps and a check, in ``output_format``.

        Raises:
            ValueError: if the target cannot be reached.
        """
        expression = solve(problem.numbers, problem.target, problem.use_all)
        if expression is None:
            raise ValueError(f"target: {problem.target} cannot be reached from {problem.numbers}")
        nums = ", ".join(str(n) for n in problem.numbers)
        steps = [f"Numbers: {nums}. Target: {problem.target}."]
        steps += [f"{a} {op} {b} = {_fmt(v)}" for a, op, b, v in _steps(expression)]
        used = _used_numbers(expression)
        steps.append(
            f"Check: {_check_chain(expression)}, using {', '.join(map(str, used))}, "
            + (
                "each number exactly once."
                if problem.use_all
                else "each at most as often as given."
            )
        )
        return render_solution(steps, expression, output_format, lead="Expression:")


def easy_countdown(**kwargs: Any) -> CountdownTask:
    """``r1/CountdownEasy-v0``: the first rung — three numbers from 1 to 5, targets 2 to 20.

    Numbers may be left out, so most targets have several expressions; every
    :class:`CountdownTask` kwarg can still be overridden.
    """
    defaults = {"num_numbers": 3, "min_value": 1, "max_value": 5, "min_target": 2, "max_target": 20}
    return CountdownTask(**{**defaults, **kwargs})


def _fmt(value: Fraction) -> str:
    return (
        str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
    )


def _steps(expression: str) -> list[tuple[str, str, str, Fraction]]:
    """The binary operations of ``expression`` in evaluation order, with their values."""
    out: list[tuple[str, str, str, Fraction]] = []

    def walk(node: ast.AST) -> tuple[str, Fraction]:
        if isinstance(node, ast.BinOp):
            (ls, lv), (rs, rv) = walk(node.left), walk(node.right)
            op = _OPS[type(node.op)]
            value = {"+": lv + rv, "-": lv - rv, "*": lv * rv, "/": lv / rv}[op]
            out.append((ls, op, rs, value))
            return _fmt(value), value
        value = Fraction(node.value)  # type: ignore[attr-defined]
        return _fmt(value), value

    walk(ast.parse(expression, mode="eval").body)
    return out


def _used_numbers(expression: str) -> list[int]:
    return [int(t) for t in re.findall(r"\d+", expression)]


_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
Tree = Fraction | tuple[str, "Tree", "Tree"]


def _tree(node: ast.AST) -> Tree:
    if isinstance(node, ast.BinOp):
        return (_OPS[type(node.op)], _tree(node.left), _tree(node.right))
    return Fraction(node.value)  # type: ignore[attr-defined]


def _show(tree: Tree, parent: str | None = None, right: bool = False) -> str:
    """``tree`` with the parentheses precedence needs (non-integers in parentheses)."""
    if isinstance(tree, Fraction):
        text = _fmt(tree)
        wrap = parent is not None and (tree < 0 or tree.denominator != 1)
        return f"({text})" if wrap else text
    op, a, b = tree
    text = f"{_show(a, op)} {op} {_show(b, op, True)}"
    if parent and (
        _PREC[op] < _PREC[parent] or (right and _PREC[op] == _PREC[parent] and parent in "-/")
    ):
        return f"({text})"
    return text


def _reduce_one(tree: Tree) -> Tree:
    """``tree`` with its leftmost innermost operation replaced by its value."""
    if isinstance(tree, Fraction):
        return tree
    op, a, b = tree
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / b}[op]
    if not isinstance(a, Fraction):
        return (op, _reduce_one(a), b)
    return (op, a, _reduce_one(b))


def _check_chain(expression: str) -> str:
    """``(25 - 5) * 4 + 3 = 20 * 4 + 3 = 80 + 3 = 83``: the expression worked out again."""
    tree = _tree(ast.parse(expression, mode="eval").body)
    parts = [_show(tree)]
    while not isinstance(tree, Fraction):
        tree = _reduce_one(tree)
        parts.append(_show(tree))
    return " = ".join(parts)
