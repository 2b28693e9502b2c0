"""Answers that denote sets of real numbers, read without sympy.

:func:`real_set` reads an answer (normalised first, see :mod:`._math_normalize`) that describes a
subset of the reals into a picklable description; the helper process
(:mod:`._math_worker`, kind ``"realset"``) turns two descriptions into sympy sets over the
reals and compares them. Forms read:

* intervals ``(a, b)``, ``[a, \\infty)``, finite sets ``\\{1, 2\\}``, ``\\emptyset`` and the
  words "no solution", "none", "empty set";
* unions and intersections: ``\\cup``, ``\\cap``, ``\\setminus``, "or", "and";
* inequality chains in one variable: ``x > 1``, ``-1 < x \\leq 3``, ``|x - 1| < 2``,
  ``x \\neq 0``, ``x = 3`` (a value), ``x \\in [2, 5]``;
* set-builder notation: ``\\{x \\mid x > 1\\}``, ``\\{x : x \\geq 2\\}``,
  ``\\{x \\in \\mathbb{R} \\mid -1 < x < 3\\}``.

Descriptions (nested tuples): ``("empty",)``, ``("interval", lo, hi, lo_open, hi_open)``,
``("points", [ast, ...])``, ``("rel", [ast, ...], [op, ...], var)``, ``("union", [d, ...])``,
``("inter", [d, ...])``, ``("diff", a, b)``; ``ast`` as in :mod:`._math_latex`.

A :class:`RealSet` also says which free variable its inequalities name (``None`` for
intervals and set-builder notation, whose variable is bound) and whether the text is
unambiguously a set (``explicit``): a bare ``(1, 2)`` may be a point and ``\\{1, 2\\}`` is
compared item by item, so two such answers are left to the structural comparison.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from r1envs.verifiers._math_latex import (
    _GREEK,
    Ast,
    ParseError,
    TooBig,
    is_absurd,
    parse_expr,
)
from r1envs.verifiers._math_normalize import normalize
from r1envs.verifiers._math_struct import _top_rel_ops, _wrapped, split_top

Desc = tuple[Any, ...]

MAX_PARTS = 16
_EMPTY_WORDS_RE = re.compile(
    r"^(?:\\emptyset|none|(?:the\s+)?empty\s+set|"
    r"(?:there\s+(?:is|are)\s+)?no\s+(?:real\s+)?(?:solutions?|roots?|values?|such\s+[a-z]+))$",
    re.IGNORECASE,
)
_BUILDER_RE = re.compile(
    r"^\s*([a-zA-Z]|\\[a-zA-Z]+)\s*(?:\\in(?![a-zA-Z])\s*(.+?))?\s*(?:\\mid|\\colon|:|\|)\s*(.+)$",
    re.S,
)
_OR_SEPS = ("\\cup", " or ", "\\lor", "\\vee")
_AND_WORDS = (" and ", "\\land", "\\wedge")
_INF = ("const", "oo")
# What an unambiguous set shows somewhere (checked before reading: most answers are numbers).
_SET_HINT_RE = re.compile(
    "[<>=|:\\[\\]\u2205\u211d\u2208\u2223\u2260\u2264\u2265\u222a\u2229\u221e]"
    r"|\\(?:l[et]|g[et]|ne|in|cup|cap|setminus|emptyset|varnothing|mathbb|mid|colon|lor|vee"
    r"|wedge|land|\{)|\b(?:none|no|empty|all)\b",
    re.IGNORECASE,
)
_APERIODIC = {"log", "ln", "lg", "exp", "binomial"}
_REL_OPS = {"<", ">", "\\leq", "\\geq", "\\neq", "="}


@dataclass(frozen=True)
class RealSet:
    """A subset of the reals read from an answer.

    Attributes:
        desc: the description (see the module docstring).
        var: the free variable its inequalities name, or ``None``.
        explicit: whether the text can only be read as a set of reals.
    """

    desc: Desc
    var: str | None
    explicit: bool


class _NotASet(Exception):
    """The text is not (unambiguously) a set of real numbers."""


def _children(node: Ast) -> list[Ast]:
    out: list[Ast] = []
    for child in node[1:]:
        if isinstance(child, tuple) and child and isinstance(child[0], str):
            out.append(child)
        elif isinstance(child, (list, tuple)):
            out.extend(c for c in child if isinstance(c, tuple) and c and isinstance(c[0], str))
    return out


def _symbols(node: Ast, out: set[str]) -> set[str]:
    if node[0] == "sym":
        out.add(str(node[1]))
    for child in _children(node):
        _symbols(child, out)
    return out


def _periodic(node: Ast) -> bool:
    """Whether ``node`` applies a function other than ``exp``/``log`` (trigonometric ones)."""
    if node[0] == "func" and node[1] not in _APERIODIC:
        return True
    return any(_periodic(c) for c in _children(node))


def _expr(text: str) -> Ast:
    try:
        node = parse_expr(text.strip())
    except (ParseError, TooBig, RecursionError, ValueError, ZeroDivisionError) as exc:
        raise _NotASet(text) from exc
    if is_absurd(node):
        raise _NotASet(text)
    return node


def _constant(text: str) -> Ast:
    node = _expr(text)
    if _symbols(node, set()):
        raise _NotASet(text)
    return node


def _merge_vars(sets: list[RealSet]) -> str | None:
    names = {s.var for s in sets if s.var is not None}
    if len(names) > 1:
        raise _NotASet("several variables")
    return names.pop() if names else None


def _read(s: str, depth: int) -> RealSet:
    s = s.strip()
    if depth > 8 or not s:
        raise _NotASet(s)
    if _EMPTY_WORDS_RE.match(s):
        return RealSet(("empty",), None, True)
    for seps, kind in ((_OR_SEPS, "union"), (("\\cap",), "inter"), (_AND_WORDS, "inter")):
        parts = split_top(" " + s + " ", seps)
        if len(parts) > 1:
            if len(parts) > MAX_PARTS or any(not p.strip() for p in parts):
                raise _NotASet(s)
            sets = [_read(p, depth + 1) for p in parts]
            if seps is _AND_WORDS and any(x.var is None for x in sets):
                raise _NotASet(s)  # "1 and 2" lists two answers; "x > 1 and x < 3" is a set
            return RealSet((kind, [x.desc for x in sets]), _merge_vars(sets), True)
    parts = split_top(s, ("\\setminus",))
    if len(parts) == 2:
        a, b = _read(parts[0], depth + 1), _read(parts[1], depth + 1)
        return RealSet(("diff", a.desc, b.desc), _merge_vars([a, b]), True)
    if _top_rel_ops(s):
        return _relation(s, depth)
    w = _wrapped(s)
    if w is None:
        raise _NotASet(s)
    o, inner, c = w
    if o == "{":
        return _braces(inner, depth)
    if o == "{{":  # a TeX group, or set-builder notation written without \\{ \\}
        builder = _builder(inner, depth)
        return builder if builder is not None else _read(inner, depth + 1)
    items = split_top(inner, (",",))
    if len(items) != 2 or o not in "([" or c not in ")]":
        raise _NotASet(s)
    lo, hi = _constant(items[0]), _constant(items[1])
    infinite = any(x in (_INF, ("neg", _INF)) for x in (lo, hi))
    return RealSet(
        ("interval", lo, hi, o == "(", c == ")"), None, infinite or o + c in ("[)", "(]")
    )


def _braces(inner: str, depth: int) -> RealSet:
    builder = _builder(inner, depth)
    if builder is not None:
        return builder
    items = [p for p in split_top(inner, (",", ";"))]
    if any(not p.strip() for p in items) or len(items) > MAX_PARTS * 4:
        raise _NotASet(inner)
    return RealSet(("points", [_constant(p) for p in items]), None, False)


def _builder(inner: str, depth: int) -> RealSet | None:
    """Set-builder notation ``x \\mid cond`` / ``x \\in S : cond`` (the variable is bound)."""
    m = _BUILDER_RE.match(inner)
    if m is not None and (len(m.group(1)) == 1 or m.group(1)[1:] in _GREEK):
        name = m.group(1).lstrip("\\")
        body = _read(m.group(3), depth + 1)
        if body.var not in (None, name):
            raise _NotASet(inner)
        desc = body.desc
        if m.group(2):
            domain = _read(m.group(2), depth + 1)
            if domain.var is not None:
                raise _NotASet(inner)
            desc = ("inter", [domain.desc, desc])
        return RealSet(desc, None, True)
    return None


def _applied(s: str, var: str) -> bool:
    """Whether ``var`` is applied like a function to an argument without it: ``f(2)``."""
    name = r"(?<![\\a-zA-Z])" + ("\\\\" if len(var) > 1 else "") + re.escape(var) + r"(?![a-zA-Z])"
    for m in re.finditer(name + r"\s*\(([^()]*)\)", s):
        if not re.search(name, m.group(1)):
            return True
    return False


def _relation(s: str, depth: int) -> RealSet:
    ops = _top_rel_ops(s)
    pieces, kinds, start = [], [], 0
    for a, b, op in ops:
        pieces.append(s[start:a])
        kinds.append(op)
        start = b
    pieces.append(s[start:])
    if kinds == ["\\in"]:
        var = _expr(pieces[0])
        if var[0] != "sym":
            raise _NotASet(s)
        target = _read(pieces[1], depth + 1)
        if target.var is not None:
            raise _NotASet(s)
        return RealSet(target.desc, str(var[1]), True)
    if any(k not in _REL_OPS for k in kinds) or len(kinds) > 3:
        raise _NotASet(s)
    asts = [_expr(p) for p in pieces]
    names: set[str] = set()
    for a in asts:
        _symbols(a, names)
    if len(names) != 1:
        raise _NotASet(s)
    var = names.pop()
    if any(_periodic(a) for a in asts):
        raise _NotASet(s)  # sympy solves trigonometric inequalities over one period only
    if _applied(s, var):
        raise _NotASet(s)  # f(2) < f(1) compares values of a function, not a variable
    if "=" in kinds:  # only "x = value": an equation to solve is not a set answer
        if len(kinds) != 1 or not any(a == ("sym", var) for a in asts):
            raise _NotASet(s)
        values = [a for a in asts if a != ("sym", var)]
        if len(values) != 1 or _symbols(values[0], set()):
            raise _NotASet(s)
        return RealSet(("points", values), var, True)  # the helper checks the value is real
    return RealSet(("rel", asts, kinds, var), var, True)


@lru_cache(maxsize=8192)
def real_set(text: str) -> RealSet | None:
    """The set of reals an answer (LaTeX as written) denotes, or ``None`` if it is not one."""
    try:
        return _read(normalize(text), 0)
    except (_NotASet, RecursionError):
        return None


def _plain_bounds(desc: Desc) -> bool:
    """Whether ``desc`` only has intervals, points and bounds on the bare variable."""
    kind = desc[0]
    if kind in ("union", "inter"):
        return all(_plain_bounds(d) for d in desc[1])
    if kind == "rel":
        return all(a == ("sym", desc[3]) or not _symbols(a, set()) for a in desc[1])
    return kind in ("empty", "interval", "points")


def _decimal_bounds(desc: Desc) -> bool:
    """Whether ``desc`` is :func:`_plain_bounds` and has a decimal literal (``0.333333``)."""
    if not _plain_bounds(desc):
        return False
    stack: list[Any] = [desc]
    while stack:
        node = stack.pop()
        if isinstance(node, tuple) and node and node[0] == "num" and "." in str(node[2]):
            return True
        if isinstance(node, (tuple, list)):
            stack.extend(c for c in node if isinstance(c, (tuple, list)))
    return False


def _finite(desc: Desc) -> bool:
    if desc[0] == "union":
        return all(_finite(d) for d in desc[1])
    return desc[0] == "points"


def set_verdict(
    pred_text: str, gold_text: str, decide: Callable[[str, Desc, Desc], bool | None]
) -> bool | None:
    """Compare two answers as sets of reals; ``None`` when that reading does not decide.

    It applies when both read as sets of reals and at least one is unambiguously a set.
    Two inequalities naming different free variables are different answers.

    Args:
        pred_text: the answer as extracted; gold_text: the gold answer.
        decide: ``decide("realset", pred_desc, gold_desc)`` compares in the helper process
            and returns ``None`` when sympy cannot write a set as intervals.
    """
    if not (_SET_HINT_RE.search(pred_text) or _SET_HINT_RE.search(gold_text)):
        return None  # neither side can be unambiguously a set: skip reading them
    p, g = real_set(pred_text), real_set(gold_text)
    if p is None or g is None or not (p.explicit or g.explicit):
        return None
    if p.var is not None and g.var is not None and p.var != g.var:
        return False
    if p.desc == g.desc:
        return True
    for a, b in ((p, g), (g, p)):
        if not a.explicit and a.desc[0] == "interval" and _finite(b.desc):
            return None  # (2, 3) against {2, 3}: a pair of values, as the structure reads it
    if p.desc == ("empty",) or g.desc == ("empty",):
        other = g.desc if p.desc == ("empty",) else p.desc
        if other[0] in ("points", "interval"):
            return False
    verdict = decide("realset", p.desc, g.desc)
    if verdict is False and _decimal_bounds(p.desc) and _plain_bounds(g.desc):
        return None  # x > 0.333333 vs (1/3, oo): the structural reading rounds decimals
    return verdict
