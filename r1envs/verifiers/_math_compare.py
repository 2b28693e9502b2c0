"""Equivalence of two answer structures (see :mod:`r1envs.verifiers._math_struct`).

Scalars are compared exactly with :class:`fractions.Fraction` whenever both are rational
(most answers); anything else (``\\sqrt``, ``\\pi``, variables, equations, inequalities) is
handed to a ``symbolic`` callback, which the public API runs in a time-bounded worker
process.

Numeric policy (documented in :mod:`r1envs.verifiers.math`):

* exact values are compared exactly: ``1/2004!`` is not ``1/2006!``, ``10^100`` is not
  ``10^100+1``, ``3`` is not ``3.5``;
* a decimal matches an exact value (or a more precise decimal) when it has at least 5
  significant digits and the value lies within one unit of its last digit (it is the value
  rounded or truncated) -- the same rule whichever side is the gold, as careful graders
  judge: ``0.33333`` and ``1/3`` match both ways; ``0.333`` and ``1/3``, ``3.14`` and
  ``\\pi``, ``7.78`` and ``70/9`` do not, in either direction;
* otherwise decimals are compared exactly, however few digits the gold has: ``0.460`` is
  not ``0.5``;
* percent: ``50\\%`` matches ``50`` (the sign as a unit) and ``0.5``/``1/2`` (the value);
  a bare ``50`` never matches ``0.5``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from r1envs.verifiers._math_latex import (
    Ast,
    TooBig,
    decimal_places,
    is_absurd,
    significant_digits,
    to_fraction,
)
from r1envs.verifiers._math_struct import Node, scalar

MIN_SIG_DIGITS = 5
"""Significant digits a decimal needs to match an exact value it rounds (or truncates) from."""

Symbolic = Callable[[str, Any, Any], bool]
"""``symbolic(kind, pred, gold) -> bool``: kind is ``"expr"``, ``"equation"`` or ``"rel"``."""


def round_to(x: Fraction, places: int) -> Fraction:
    """``x`` rounded half away from zero to ``places`` decimals, exactly."""
    q = Fraction(10) ** places
    v = abs(x) * q
    r = (v.numerator * 2 + v.denominator) // (2 * v.denominator)
    return Fraction(r, 1) / q * (1 if x >= 0 else -1)


def _strip_pct(node: Ast) -> tuple[Ast, bool]:
    if node[0] == "pct":
        return node[1], True
    return node, False


def decimal_rule(p: Ast, fp: Fraction, g: Ast, fg: Fraction) -> bool:
    """The rounding rule, the same whichever side is the gold (see the module docstring).

    The less precise side must be a decimal literal with at least :data:`MIN_SIG_DIGITS`
    significant digits, and the other value must lie within one unit of its last digit
    (so both rounding and truncation are accepted).
    """
    dp, dg = decimal_places(p), decimal_places(g)
    sides = []
    if dp is not None and (dg is None or dg > dp):
        sides.append((p, fp, dp, fg))
    if dg is not None and (dp is None or dp > dg):
        sides.append((g, fg, dg, fp))
    for node, value, places, other in sides:
        if significant_digits(node) >= MIN_SIG_DIGITS and abs(other - value) < Fraction(
            1, 10**places
        ):
            return True
    return False


def rational_equal(p: Ast, fp: Fraction, g: Ast, fg: Fraction) -> bool:
    """Exact equality plus the documented rounding rule for decimal literals."""
    return fp == fg or decimal_rule(p, fp, g, fg)


def scalar_equal(p: Node, g: Node, symbolic: Symbolic) -> bool:
    """Equivalence of two ``expr`` nodes."""
    if p[1].replace(" ", "") == g[1].replace(" ", "") and p[1]:
        return True
    pa, ga = p[2], g[2]
    if pa is None or ga is None:
        if pa is None and ga is None and p[1] and g[1]:
            return symbolic("latex", p[1], g[1])
        return False
    if is_absurd(pa):
        return False
    pa, p_pct = _strip_pct(pa)
    ga, g_pct = _strip_pct(ga)
    options = [(pa, ga)]
    if p_pct and not g_pct:
        options.append((("div", pa, ("num", Fraction(100), "100")), ga))
    elif g_pct and not p_pct:
        options.append((pa, ("div", ga, ("num", Fraction(100), "100"))))
    for a, b in options:
        try:
            fa, fb = to_fraction(a), to_fraction(b)
        except TooBig:
            return False
        if fa is not None and fb is not None:
            if rational_equal(a, fa, b, fb):
                return True
            continue
        if symbolic("expr", a, b):
            return True
    return False


def _items_equal_ordered(ps: list[Node], gs: list[Node], symbolic: Symbolic) -> bool:
    return len(ps) == len(gs) and all(equal(a, b, symbolic) for a, b in zip(ps, gs, strict=True))


def _items_equal_unordered(ps: list[Node], gs: list[Node], symbolic: Symbolic) -> bool:
    if len(ps) != len(gs):
        return False
    left = list(gs)
    for a in ps:
        for k, b in enumerate(left):
            if equal(a, b, symbolic):
                del left[k]
                break
        else:
            return False
    return True


def _dedupe(items: list[Node], symbolic: Symbolic) -> list[Node]:
    out: list[Node] = []
    for it in items:
        if not any(equal(it, o, symbolic) for o in out):
            out.append(it)
    return out


# The variable of a one-variable inequality: x, x_1, f(x), |z|.
_VARIABLE_RE = re.compile(r"^(?:[a-zA-Z](?:_\{?\w+\}?)?|[a-zA-Z]+\([a-z]\)|\|[a-zA-Z]\|)$")


def _as_interval(node: Node) -> Node | None:
    """An inequality in one variable with constant bounds, as a ``tuple`` interval node."""
    if node[0] != "rel" or len(node[1]) not in (2, 3):
        return None
    parts, ops = node[1], node[2]
    if any(p[0] != "expr" for p in parts):
        return None
    var = [i for i, p in enumerate(parts) if _VARIABLE_RE.match(p[1].replace(" ", ""))]
    if len(var) != 1:
        return None
    v = var[0]
    inf = ("expr", "\\infty", ("const", "oo"))
    ninf = ("expr", "-\\infty", ("neg", ("const", "oo")))
    lo, hi, lo_c, hi_c = ninf, inf, "(", ")"
    for k, op in enumerate(ops):
        a, b = parts[k], parts[k + 1]
        if op in ("<", "\\leq"):
            closed = op == "\\leq"
            if k + 1 == v:
                lo, lo_c = a, "[" if closed else "("
            elif k == v:
                hi, hi_c = b, "]" if closed else ")"
        elif op in (">", "\\geq"):
            closed = op == "\\geq"
            if k + 1 == v:
                hi, hi_c = a, "]" if closed else ")"
            elif k == v:
                lo, lo_c = b, "[" if closed else "("
        else:
            return None
    return ("tuple", lo_c, hi_c, [lo, hi])


def _as_equation(node: Node) -> Node | None:
    """``x = value`` as a general ``equation`` node, when both sides are expressions."""
    if not node[1] or node[2][0] != "expr" or node[2][2] is None:
        return None
    lhs = scalar(node[1])
    return None if lhs[2] is None else ("equation", lhs, node[2])


_FUNC_LHS_RE = re.compile(r"^(?:[a-zA-Z](?:\^\{?-1\}?)?\([a-z]\)|y)$")


def _unwrap(node: Node) -> Node:
    while node[0] == "eq":
        node = node[2]
    return node


def equal(p: Node, g: Node, symbolic: Symbolic) -> bool:
    """Whether answer structure ``p`` is equivalent to gold structure ``g``."""
    if p[0] == "approx":  # "14/3 \approx 4.7": the exact value or the stated decimal
        return equal(p[1], g, symbolic) or equal(p[2], g, symbolic)
    if g[0] == "approx":
        return equal(p, g[1], symbolic) or equal(p, g[2], symbolic)
    if p[0] == "eq" and g[0] == "eq":
        if _FUNC_LHS_RE.match(p[1]) and _FUNC_LHS_RE.match(g[1]) and "(" in p[1] + g[1]:
            return equal(p[2], g[2], symbolic)  # f(x) = 2x+1 and y = 2x+1 name one function
        if p[1] and g[1] and p[1] != g[1] and not (p[1].startswith("(") or g[1].startswith("(")):
            pe, ge = _as_equation(p), _as_equation(g)
            if pe is not None and ge is not None:
                return equal(pe, ge, symbolic)
            if len(p[1]) == 1 and len(g[1]) == 1:
                return False
        return equal(p[2], g[2], symbolic)
    if p[0] == "eq" and g[0] == "equation" or p[0] == "equation" and g[0] == "eq":
        pe = _as_equation(p) if p[0] == "eq" else p
        ge = _as_equation(g) if g[0] == "eq" else g
        return pe is not None and ge is not None and equal(pe, ge, symbolic)
    p, g = _unwrap(p), _unwrap(g)
    kp, kg = p[0], g[0]
    if kg == "choice":
        if kp == "expr" and p[2] is not None and p[2][0] == "sym":
            return str(p[2][1]).upper() == g[1]  # a lower-case letter: "b" for (B)
        return kp == "choice" and p[1] == g[1] or (kp == "text" and p[1].upper() == g[1])
    if kp == "choice":
        return kg == "text" and g[1].upper() == p[1]
    if kp == "rel" and kg != "rel":
        iv = _as_interval(p)
        return iv is not None and equal(iv, g, symbolic)
    if kg == "rel" and kp != "rel":
        iv = _as_interval(g)
        return iv is not None and equal(p, iv, symbolic)
    if kp == "expr" and kg == "expr":
        return scalar_equal(p, g, symbolic)
    if kp == "text" or kg == "text":
        return _plain(p) == _plain(g)
    if kp == "tuple" and kg == "tuple":
        brackets = p[1] + p[2] + g[1] + g[2]
        if len(p[3]) == 2 and (p[1], p[2]) != (g[1], g[2]) and ("[" in brackets or "]" in brackets):
            return False
        return _items_equal_ordered(p[3], g[3], symbolic)
    if kp in ("list", "set") and kg in ("list", "set"):
        if kp == kg == "set" or len(p[1]) != len(g[1]):  # solution sets: repeats do not count
            return _items_equal_unordered(
                _dedupe(p[1], symbolic), _dedupe(g[1], symbolic), symbolic
            )
        return _items_equal_unordered(p[1], g[1], symbolic)
    if kp == "list" and kg == "tuple":
        return g[1] == "(" and _items_equal_ordered(p[1], g[3], symbolic)
    if kp == "tuple" and kg == "list":
        return p[1] == "(" and _items_equal_ordered(p[3], g[1], symbolic)
    if kp == "union" or kg == "union":
        ps = p[1] if kp == "union" else [p]
        gs = g[1] if kg == "union" else [g]
        return _items_equal_unordered(ps, gs, symbolic)
    if kp == "matrix" or kg == "matrix":
        return _matrix_equal(p, g, symbolic)
    if kp == "equation" and kg == "equation":
        return (
            symbolic("equation", (p[1][2], p[2][2]), (g[1][2], g[2][2])) if _asts(p, g) else False
        )
    if kp == "rel" and kg == "rel":
        if len(p[1]) == len(g[1]):
            ip, ig = _as_interval(p), _as_interval(g)
            if ip is not None and ig is not None:
                return equal(ip, ig, symbolic)
            if len(p[1]) == 2 and all(x[0] == "expr" and x[2] is not None for x in p[1] + g[1]):
                return symbolic(
                    "rel", (p[1][0][2], p[2][0], p[1][1][2]), (g[1][0][2], g[2][0], g[1][1][2])
                )
        return False
    return False


def _plain(node: Node) -> str | None:
    if node[0] in ("text", "expr"):
        return str(node[1]).lower().replace(" ", "")
    return None


def _asts(p: Node, g: Node) -> bool:
    return all(x[0] == "expr" and x[2] is not None for x in (p[1], p[2], g[1], g[2]))


def _matrix_equal(p: Node, g: Node, symbolic: Symbolic) -> bool:
    def cells(n: Node) -> list[list[Node]] | None:
        if n[0] == "matrix":
            return n[1]
        if n[0] == "tuple" and n[1] == "(":
            return [[it] for it in n[3]]  # a vector written as a tuple: a column
        return None

    a, b = cells(p), cells(g)
    if a is None or b is None or len(a) != len(b):
        return False
    return all(_items_equal_ordered(ra, rb, symbolic) for ra, rb in zip(a, b, strict=True))
