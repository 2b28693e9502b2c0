"""The symbolic half of math verification, run in a helper process with a hard time bound.

``python -m r1envs.verifiers._math_worker`` reads length-prefixed pickled requests
``(kind, pred, gold)`` from stdin and writes pickled ``("ok", bool)`` or ``("err", str)``
replies to stdout. The parent (:mod:`r1envs.verifiers.math`) kills and restarts it when a
reply is late, which bounds the time of any sympy call from any thread or daemonic process
(no signals involved). The process caps its own address space so a runaway expression
cannot take the host's memory.

Kinds:

* ``"expr"``: two scalar ASTs; equal when their difference is exactly 0, or numerically 0
  at 100 digits (constants), or 0 at several random points (expressions with symbols).
  Decimal literals follow the rounding rules of :mod:`r1envs.verifiers._math_compare`.
  When the two sides name different symbols (``\\sin^2 x + \\cos^2 x`` and ``1``), the
  difference must also be proved 0 by ``sympy.simplify`` within :data:`PROOF_SECONDS`.
* ``"equation"``: ``(lhs, rhs)`` pairs; equal when one is a non-zero multiple of the other.
* ``"rel"``: ``(lhs, op, rhs)`` inequalities; equal when, written as ``e < 0`` (or ``<=``,
  ``!=``), one ``e`` is a positive multiple of the other.
* ``"latex"``: two LaTeX strings our parser does not read; parsed with latex2sympy2_extended.
* ``"realset"``: two descriptions of sets of reals (:mod:`r1envs.verifiers._math_sets`);
  inequalities are solved with ``solveset`` over the reals, and the sets are equal when
  neither has a point the other lacks (open and closed endpoints matter).
* ``"clear_cache"``: empty sympy's cache (benchmarks).
"""

from __future__ import annotations

import pickle
import signal
import struct
import sys
from fractions import Fraction
from typing import Any

import sympy

from r1envs.verifiers._math_compare import decimal_rule
from r1envs.verifiers._math_latex import Ast, decimal_places, is_absurd

MEMORY_LIMIT_BYTES = 3 * 1024**3
PROOF_SECONDS = 1.5
"""Budget of one ``simplify`` / ``solveset`` attempt (this process's main thread: a timer)."""
_PREC = 100
_POINTS = (Fraction(37, 100), Fraction(123, 100), Fraction(271, 100), Fraction(59, 100))

_FUNCS = {
    "sin": sympy.sin,
    "cos": sympy.cos,
    "tan": sympy.tan,
    "sec": sympy.sec,
    "csc": sympy.csc,
    "cot": sympy.cot,
    "arcsin": sympy.asin,
    "arccos": sympy.acos,
    "arctan": sympy.atan,
    "sinh": sympy.sinh,
    "cosh": sympy.cosh,
    "tanh": sympy.tanh,
    "log": sympy.log,
    "ln": sympy.log,
    "lg": lambda x: sympy.log(x, 10),
    "exp": sympy.exp,
}
_CONSTS = {"pi": sympy.pi, "e": sympy.E, "i": sympy.I, "oo": sympy.oo}


def to_sympy(node: Ast) -> sympy.Expr:
    """Convert a parser AST to a sympy expression (callers check :func:`is_absurd` first)."""
    kind = node[0]
    if kind == "num":
        return sympy.Rational(node[1].numerator, node[1].denominator)
    if kind == "sym":
        return sympy.Symbol(node[1], real=True)
    if kind == "const":
        return _CONSTS[node[1]]
    if kind == "add":
        return sympy.Add(*[to_sympy(t) for t in node[1]])
    if kind == "mul":
        return sympy.Mul(*[to_sympy(t) for t in node[1]])
    if kind == "neg":
        return -to_sympy(node[1])
    if kind == "div":
        return to_sympy(node[1]) / to_sympy(node[2])
    if kind == "pow":
        return sympy.Pow(to_sympy(node[1]), to_sympy(node[2]))
    if kind == "fact":
        return sympy.factorial(to_sympy(node[1]))
    if kind == "sqrt":
        x = to_sympy(node[1])
        return sympy.sqrt(x) if node[2] is None else sympy.root(x, to_sympy(node[2]))
    if kind == "abs":
        return sympy.Abs(to_sympy(node[1]))
    if kind == "pct":
        return to_sympy(node[1]) / 100
    if kind == "func":
        if node[1] == "binomial":
            return sympy.binomial(to_sympy(node[2][0]), to_sympy(node[2][1]))
        return _FUNCS[node[1]](to_sympy(node[2]))
    raise ValueError(f"unknown node kind {kind!r}")


def _num(x: sympy.Expr) -> complex | None:
    v = sympy.N(x, _PREC)
    if not v.is_number or v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo):
        return None
    return v


def _close(a: Any, b: Any) -> bool:
    scale = max(abs(a), abs(b), 1)
    return bool(abs(a - b) <= sympy.Float(10) ** (-(_PREC - 10)) * scale)


def _to_fraction(v: Any) -> Fraction | None:
    if not v.is_real:
        return None
    return Fraction(str(sympy.Float(v, _PREC)))


def _approx_rules(pa: Ast, ga: Ast, a: sympy.Expr, b: sympy.Expr) -> bool:
    dp, dg = decimal_places(pa), decimal_places(ga)
    if dp is None and dg is None:
        return False
    va, vb = _num(a), _num(b)
    if va is None or vb is None:
        return False
    fa = Fraction(str(sympy.Rational(a))) if dp is not None else _to_fraction(va)
    fb = Fraction(str(sympy.Rational(b))) if dg is not None else _to_fraction(vb)
    return fa is not None and fb is not None and decimal_rule(pa, fa, ga, fb)


def _points(syms: list[sympy.Symbol]) -> list[dict[sympy.Symbol, sympy.Rational]]:
    out = []
    for k in range(len(_POINTS)):
        out.append(
            {
                s: sympy.Rational(
                    _POINTS[(k + j) % len(_POINTS)].numerator,
                    _POINTS[(k + j) % len(_POINTS)].denominator,
                )
                + j
                for j, s in enumerate(syms)
            }
        )
    return out


def exprs_equal(pa: Ast, ga: Ast) -> bool:
    """Scalar equivalence (see the module docstring)."""
    if is_absurd(pa) or is_absurd(ga):
        return False
    a, b = to_sympy(pa), to_sympy(ga)
    if a == b:
        return True
    if a.is_number and b.is_number:
        va, vb = _num(a), _num(b)
        if va is not None and vb is not None and _close(va, vb):
            return True
        return _approx_rules(pa, ga, a, b)
    if a.free_symbols != b.free_symbols:
        return _zero_at_points(a - b, strict=True) and _proved_zero(a - b)
    return _zero_at_points(a - b)


class _OutOfTime(Exception):
    """A bounded sympy attempt ran past its budget."""


def _bounded(fn: Any, seconds: float = PROOF_SECONDS) -> Any:
    """Run ``fn()``; raise :class:`_OutOfTime` after ``seconds`` (an interval timer)."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise _OutOfTime

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _proved_zero(d: sympy.Expr) -> bool:
    try:
        return bool(_bounded(lambda: sympy.simplify(d)) == 0)
    except _OutOfTime:
        return False


def _zero_at_points(d: sympy.Expr, strict: bool = False) -> bool:
    syms = sorted(d.free_symbols, key=str)
    seen = 0
    for pt in _points(syms):
        v = _num(d.subs(pt))
        if v is None:
            continue
        seen += 1
        if not _close(v, 0):
            return False
    if seen >= 2:
        return True
    return not strict and sympy.simplify(d) == 0


def _ratio_constant(e1: sympy.Expr, e2: sympy.Expr, positive: bool) -> bool:
    if e1.free_symbols != e2.free_symbols or not e1.free_symbols:
        return False
    ratios = []
    for pt in _points(sorted(e1.free_symbols, key=str)):
        v1, v2 = _num(e1.subs(pt)), _num(e2.subs(pt))
        if v1 is None or v2 is None or _close(v2, 0):
            continue
        ratios.append(v1 / v2)
    if len(ratios) < 2 or any(not _close(r, ratios[0]) for r in ratios):
        return False
    r0 = ratios[0]
    if _close(r0, 0):
        return False
    return bool(r0 > 0) if positive else True


def equations_equal(p: tuple[Ast, Ast], g: tuple[Ast, Ast]) -> bool:
    """Two equations are equal when one is a non-zero multiple of the other."""
    if any(is_absurd(x) for x in (*p, *g)):
        return False
    e1 = to_sympy(p[0]) - to_sympy(p[1])
    e2 = to_sympy(g[0]) - to_sympy(g[1])
    return _ratio_constant(e1, e2, positive=False)


_FLIP = {">": "<", "\\geq": "\\leq"}


def relations_equal(p: tuple[Ast, str, Ast], g: tuple[Ast, str, Ast]) -> bool:
    """Two inequalities are equal when, as ``e op 0``, one ``e`` is a positive multiple."""

    def norm(r: tuple[Ast, str, Ast]) -> tuple[sympy.Expr, str]:
        e = to_sympy(r[0]) - to_sympy(r[2])
        if r[1] in _FLIP:
            return -e, _FLIP[r[1]]
        return e, r[1]

    if any(is_absurd(x) for x in (p[0], p[2], g[0], g[2])):
        return False
    (e1, o1), (e2, o2) = norm(p), norm(g)
    if o1 != o2:
        return False
    return _ratio_constant(e1, e2, positive=o1 != "\\neq")


def latex_equal(p: str, g: str) -> bool:
    """Fallback for LaTeX our parser does not read."""
    from latex2sympy2_extended import latex2sympy

    if max(len(p), len(g)) > 500:
        return False
    a, b = latex2sympy(p), latex2sympy(g)
    if not isinstance(a, sympy.Expr) or not isinstance(b, sympy.Expr):
        return bool(a == b)
    if a == b:
        return True
    if a.free_symbols != b.free_symbols:
        return False
    if a.is_number and b.is_number:
        va, vb = _num(a), _num(b)
        return va is not None and vb is not None and _close(va, vb)
    return _zero_at_points(a - b)


_RELATIONS = {
    "<": sympy.Lt,
    ">": sympy.Gt,
    "\\leq": sympy.Le,
    "\\geq": sympy.Ge,
    "\\neq": sympy.Ne,
    "=": sympy.Eq,
}


def _real_constant(node: Ast) -> sympy.Expr:
    v = to_sympy(node)
    if v.free_symbols or not (v.is_extended_real or v in (sympy.oo, -sympy.oo)):
        raise ValueError(f"not a real constant: {v}")
    return v


def _solve(asts: list[Ast], ops: list[str], var: str) -> sympy.Set:
    x = sympy.Symbol(var, real=True)
    sides = [to_sympy(a) for a in asts]
    out: sympy.Set = sympy.S.Reals
    for k, op in enumerate(ops):
        rel = _RELATIONS[op](sides[k], sides[k + 1])
        out = sympy.Intersection(out, sympy.solveset(rel, x, sympy.S.Reals))
    return out


def real_set(desc: tuple[Any, ...]) -> sympy.Set:
    """The sympy set a :mod:`r1envs.verifiers._math_sets` description denotes."""
    kind = desc[0]
    if kind == "empty":
        return sympy.S.EmptySet
    if kind == "interval":
        lo, hi = _real_constant(desc[1]), _real_constant(desc[2])
        if not (lo < hi or (lo == hi and not desc[3] and not desc[4])):
            raise ValueError(f"not an interval: {lo}, {hi}")
        return sympy.Interval(lo, hi, bool(desc[3]), bool(desc[4]))
    if kind == "points":
        return sympy.FiniteSet(*[_real_constant(a) for a in desc[1]])
    if kind == "rel":
        return _solve(desc[1], desc[2], desc[3])
    if kind in ("union", "inter"):
        parts = [real_set(d) for d in desc[1]]
        return sympy.Union(*parts) if kind == "union" else sympy.Intersection(*parts)
    if kind == "diff":
        return sympy.Complement(real_set(desc[1]), real_set(desc[2]))
    raise ValueError(f"unknown set kind {kind!r}")


def _plain_set(s: sympy.Set) -> bool:
    """Only intervals and finite sets of numbers (no unsolved ``ConditionSet``)."""
    if isinstance(s, (sympy.Union, sympy.Intersection, sympy.Complement)):
        return all(_plain_set(a) for a in s.args)
    if isinstance(s, (sympy.Interval, sympy.FiniteSet)):
        return not s.free_symbols
    return s in (sympy.S.EmptySet, sympy.S.Reals)


def realsets_equal(p: tuple[Any, ...], g: tuple[Any, ...]) -> bool:
    """Whether two set descriptions denote the same subset of the reals."""

    def compare() -> bool:
        a, b = real_set(p), real_set(g)
        if not (_plain_set(a) and _plain_set(b)):
            raise ValueError("a set sympy cannot write as intervals")
        if a == b:
            return True
        return sympy.Complement(a, b) == sympy.S.EmptySet == sympy.Complement(b, a)

    return bool(_bounded(compare))


def handle(kind: str, pred: Any, gold: Any) -> bool:
    """Dispatch one request."""
    if kind == "expr":
        return exprs_equal(pred, gold)
    if kind == "equation":
        return equations_equal(pred, gold)
    if kind == "rel":
        return relations_equal(pred, gold)
    if kind == "latex":
        return latex_equal(pred, gold)
    if kind == "realset":
        return realsets_equal(pred, gold)
    if kind == "clear_cache":
        sympy.core.cache.clear_cache()
        return True
    raise ValueError(f"unknown request kind {kind!r}")


def _read_exact(stream: Any, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def main() -> None:
    """Serve requests until stdin closes."""
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    except (ImportError, ValueError, OSError):
        pass
    sys.setrecursionlimit(5000)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = _read_exact(stdin, 4)
        if head is None:
            return
        body = _read_exact(stdin, struct.unpack("<I", head)[0])
        if body is None:
            return
        try:
            kind, pred, gold = pickle.loads(body)
            reply: tuple[str, Any] = ("ok", bool(handle(kind, pred, gold)))
        except Exception as exc:  # noqa: BLE001 - any sympy failure is "not equal"
            reply = ("fail", f"{type(exc).__name__}: {str(exc)[:200]}")
        data = pickle.dumps(reply)
        stdout.write(struct.pack("<I", len(data)) + data)
        stdout.flush()


if __name__ == "__main__":
    main()
