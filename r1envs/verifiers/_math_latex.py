"""A small, bounded parser for normalised LaTeX expressions, and exact evaluation.

:func:`parse_expr` reads a scalar expression (see :mod:`._math_normalize` for the text it
expects) into a tiny tuple AST:

``("num", Fraction, literal)``, ``("sym", name)``, ``("const", "pi"|"e"|"i"|"oo")``,
``("add", [..])``, ``("mul", [..])``, ``("neg", x)``, ``("div", a, b)``, ``("pow", a, b)``,
``("fact", x)``, ``("sqrt", x, index)``, ``("func", name, x)``, ``("abs", x)``, ``("pct", x)``.

The AST evaluates exactly to a :class:`fractions.Fraction` when it is rational
(:func:`to_fraction`), which is how most answers are graded without sympy; sizes are
guarded (exponents, factorials) so no input can make the evaluation explode.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

Ast = tuple[Any, ...]

MAX_EXPR_CHARS = 2000
MAX_DEPTH = 60
MAX_BITS = 200_000  # exact rationals larger than this are "too big" for the fast path
MAX_FACTORIAL = 5000


class TooBig(Exception):
    """An exact value would be absurdly large (exponent tower, huge factorial)."""


class ParseError(Exception):
    """The text is not an expression this parser reads."""


# --------------------------------------------------------------------------- tokens

_TOKEN_RE = re.compile(
    r"\s*(?:"
    r"(?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+(?![a-zA-Z]))?|\.\d+)"
    r"|(?P<cmd>\\[a-zA-Z]+)"
    r"|(?P<sym>[a-zA-Z])"
    r"|(?P<op>\\lbrace|\\rbrace|[-+*/^_!%(){}\[\]|,=<>'])"
    r")"
)

_FUNCS = {
    "sin",
    "cos",
    "tan",
    "sec",
    "csc",
    "cot",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "tanh",
    "log",
    "ln",
    "exp",
    "lg",
}
_GREEK = set(
    "alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi "
    "rho sigma tau upsilon phi varphi chi psi omega Gamma Delta Theta Lambda Xi Sigma Phi Psi "
    "Omega ell".split()
)
_MUL_CMDS = {"\\cdot", "\\times", "\\ast"}


def tokenize(text: str) -> list[tuple[str, str]]:
    """Split an expression into ``(kind, text)`` tokens; raises :class:`ParseError`."""
    if len(text) > MAX_EXPR_CHARS:
        raise ParseError(f"expression too long: {len(text)} chars")
    out: list[tuple[str, str]] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ParseError(f"unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.toks = tokens
        self.i = 0
        self.depth = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, text: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None or (text is not None and tok[1] != text):
            raise ParseError(f"expected {text!r}, got {tok!r}")
        self.i += 1
        return tok

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("expression nested too deeply")

    def expr(self) -> Ast:
        self.enter()
        terms = [self.term()]
        while (tok := self.peek()) is not None and tok[1] in ("+", "-"):
            self.i += 1
            t = self.term()
            terms.append(("neg", t) if tok[1] == "-" else t)
        self.depth -= 1
        return terms[0] if len(terms) == 1 else ("add", terms)

    def _starts_atom(self, tok: tuple[str, str]) -> bool:
        kind, text = tok
        if kind in ("num", "sym"):
            return True
        if kind == "cmd":
            return (
                text not in _MUL_CMDS
                and text not in ("\\div", "\\pm", "\\mp")
                and (
                    text[1:] in _FUNCS
                    or text[1:] in _GREEK
                    or text in ("\\frac", "\\sqrt", "\\pi", "\\infty", "\\binom", "\\lbrace")
                )
            )
        return text in ("(", "{", "|")

    def term(self) -> Ast:
        factors = [self.unary()]
        while (tok := self.peek()) is not None:
            if tok[1] in ("*", "/") or tok[1] in _MUL_CMDS or tok[1] == "\\div":
                self.i += 1
                rhs = self.unary()
                if tok[1] in ("/", "\\div"):
                    factors = [("div", _product(factors), rhs)]
                else:
                    factors.append(rhs)
            elif self._starts_atom(tok) and not (tok[1] == "|" and self._in_abs):
                rhs = self.postfix()
                prev = factors[-1]
                if (
                    prev[0] == "num"
                    and "." not in prev[2]
                    and rhs[0] == "div"
                    and rhs[1][0] == "num"
                    and rhs[2][0] == "num"
                    and len(factors) == 1
                    and tok[1] == "\\frac"
                ):
                    factors[-1] = ("add", [prev, rhs])  # mixed number 2\frac{1}{2}
                else:
                    factors.append(rhs)
            else:
                break
        return _product(factors)

    _in_abs = False

    def unary(self) -> Ast:
        tok = self.peek()
        if tok is not None and tok[1] in ("-", "+"):
            self.i += 1
            self.enter()
            inner = self.unary()
            self.depth -= 1
            return ("neg", inner) if tok[1] == "-" else inner
        return self.postfix()

    def postfix(self) -> Ast:
        node = self.atom()
        while (tok := self.peek()) is not None:
            if tok[1] == "^":
                self.i += 1
                self.enter()
                exp = self.group_or_atom()
                self.depth -= 1
                node = ("pow", node, exp)
            elif tok[1] == "!":
                self.i += 1
                node = ("fact", node)
            elif tok[1] == "%":
                self.i += 1
                node = ("pct", node)
            elif tok[1] == "'":
                self.i += 1
                node = ("sym", _name(node) + "'")
            elif tok[1] == "_":
                self.i += 1
                sub = self.group_or_atom()
                node = ("sym", _name(node) + "_" + _name(sub))
            else:
                break
        return node

    def group_or_atom(self) -> Ast:
        tok = self.peek()
        if tok is not None and tok[1] == "{":
            self.i += 1
            inner = self.expr()
            self.take("}")
            return inner
        if tok is not None and tok[1] == "-":
            self.i += 1
            return ("neg", self.atom())
        return self.atom()

    def atom(self) -> Ast:
        tok = self.peek()
        if tok is None:
            raise ParseError("unexpected end of expression")
        kind, text = tok
        self.i += 1
        if kind == "num":
            return ("num", _number(text), text)
        if kind == "sym":
            if text == "e":
                return ("const", "e")
            if text == "i":
                return ("const", "i")
            return ("sym", text)
        if text in ("(", "{", "["):
            self.enter()
            inner = self.expr()
            self.take({"(": ")", "{": "}", "[": "]"}[text])
            self.depth -= 1
            return inner
        if text == "|" and not self._in_abs:
            self._in_abs = True
            inner = self.expr()
            self._in_abs = False
            self.take("|")
            return ("abs", inner)
        if kind == "cmd":
            return self.command(text)
        raise ParseError(f"unexpected token {text!r}")

    def command(self, text: str) -> Ast:
        name = text[1:]
        if name == "frac":
            num = self.group_or_atom()
            den = self.group_or_atom()
            return ("div", num, den)
        if name == "binom":
            a, b = self.group_or_atom(), self.group_or_atom()
            return ("func", "binomial", (a, b))
        if name == "sqrt":
            index: Ast | None = None
            tok = self.peek()
            if tok is not None and tok[1] == "[":
                self.i += 1
                index = self.expr()
                self.take("]")
            return ("sqrt", self.group_or_atom(), index)
        if name == "pi":
            return ("const", "pi")
        if name == "infty":
            return ("const", "oo")
        if name in _GREEK:
            return ("sym", name)
        if name in _FUNCS:
            power: Ast | None = None
            tok = self.peek()
            base: Ast | None = None
            if tok is not None and tok[1] == "_" and name == "log":
                self.i += 1
                base = self.group_or_atom()
                tok = self.peek()
            if tok is not None and tok[1] == "^":
                self.i += 1
                power = self.group_or_atom()
            self.enter()
            arg = self.function_argument()
            self.depth -= 1
            node: Ast = ("func", name, arg)
            if base is not None:
                node = ("div", ("func", "ln", arg), ("func", "ln", base))
            return ("pow", node, power) if power is not None else node
        raise ParseError(f"unsupported command {text}")

    def function_argument(self) -> Ast:
        """A function's argument: bracketed, or a factor and the letters juxtaposed after it.

        ``\\sin 2x`` is ``sin(2x)`` and ``\\cos \\pi t`` is ``cos(pi t)``, while
        ``\\sin x \\cos x`` is a product of two functions.
        """
        tok = self.peek()
        if tok is not None and tok[1] in ("(", "{"):
            return self.atom()
        factors = [self.postfix()]
        while (tok := self.peek()) is not None and (
            tok[0] == "sym" or tok[0] == "cmd" and (tok[1] == "\\pi" or tok[1][1:] in _GREEK)
        ):
            factors.append(self.postfix())
        return _product(factors)


def _name(node: Ast) -> str:
    if node[0] == "sym":
        return str(node[1])
    if node[0] == "num":
        return str(node[2])
    if node[0] == "const":
        return str(node[1])
    raise ParseError("bad subscript")


def _product(factors: list[Ast]) -> Ast:
    return factors[0] if len(factors) == 1 else ("mul", factors)


def _number(text: str) -> Fraction:
    try:
        return Fraction(text)
    except (ValueError, ZeroDivisionError) as exc:
        raise ParseError(f"bad number {text!r}") from exc


def parse_expr(text: str) -> Ast:
    """Parse a normalised scalar expression; raises :class:`ParseError`."""
    toks = tokenize(text)
    if not toks:
        raise ParseError("empty expression")
    p = _Parser(toks)
    node = p.expr()
    if p.i != len(toks):
        raise ParseError(f"trailing tokens from {toks[p.i][1]!r}")
    return node


# --------------------------------------------------------------------------- evaluate


def _check_size(x: Fraction) -> Fraction:
    if x.numerator.bit_length() + x.denominator.bit_length() > MAX_BITS:
        raise TooBig("rational too large")
    return x


def log10_bound(node: Ast) -> float | None:
    """An upper bound of ``log10(|value|)`` for numeric ASTs, ``None`` when unknown.

    Used to refuse towers like ``10^{10^{10^{10}}}`` before anything evaluates them.
    """
    kind = node[0]
    if kind == "num":
        v = abs(node[1])
        return math.log10(v) if v >= 1 else 0.0
    if kind == "const":
        return 1.0 if node[1] != "oo" else None
    if kind in ("neg", "abs", "pct"):
        return log10_bound(node[1])
    if kind in ("add", "mul"):
        parts = [log10_bound(t) for t in node[1]]
        if any(p is None for p in parts):
            return None
        return (max(parts) + 1.0) if kind == "add" else sum(parts)  # type: ignore[arg-type]
    if kind == "div":
        a, b = log10_bound(node[1]), log10_bound(node[2])
        return None if a is None or b is None else a + b
    if kind == "pow":
        b, e = log10_bound(node[1]), log10_bound(node[2])
        if b is None or e is None:
            return None
        if e > 300:
            return math.inf
        return max(b, 1.0) * (10.0**e)
    if kind == "fact":
        n = log10_bound(node[1])
        if n is None:
            return None
        if n > 300:
            return math.inf
        v = 10.0**n
        return v * max(math.log10(v + 1), 1.0)
    if kind == "sqrt":
        return log10_bound(node[1])
    return None


def is_absurd(node: Ast) -> bool:
    """Whether a numeric part of ``node`` would have more than ~10^5 digits."""
    stack = [node]
    while stack:
        n = stack.pop()
        if n[0] in ("pow", "fact"):
            b = log10_bound(n)
            if b is not None and b > 1e5:
                return True
        for child in n[1:]:
            if isinstance(child, tuple) and child and isinstance(child[0], str):
                stack.append(child)
            elif isinstance(child, list):
                stack.extend(child)
    return False


def to_fraction(node: Ast) -> Fraction | None:
    """The exact rational value of ``node``, or ``None`` if it is not (known to be) rational.

    Raises:
        TooBig: if a value would be absurdly large.
    """
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "neg":
        v = to_fraction(node[1])
        return None if v is None else -v
    if kind == "pct":
        v = to_fraction(node[1])
        return None if v is None else v / 100
    if kind == "abs":
        v = to_fraction(node[1])
        return None if v is None else abs(v)
    if kind in ("add", "mul"):
        acc = Fraction(0 if kind == "add" else 1)
        for t in node[1]:
            v = to_fraction(t)
            if v is None:
                return None
            acc = _check_size(acc + v if kind == "add" else acc * v)
        return acc
    if kind == "div":
        a, b = to_fraction(node[1]), to_fraction(node[2])
        if a is None or b is None or b == 0:
            return None
        return _check_size(a / b)
    if kind == "pow":
        bound = log10_bound(node)
        if bound is not None and bound > 60_000:
            raise TooBig("power too large")
        a, e = to_fraction(node[1]), to_fraction(node[2])
        if a is None or e is None or e.denominator != 1:
            return None
        if a == 0 and e < 0:
            return None
        if abs(e) > 100_000:
            raise TooBig("exponent too large")
        return _check_size(a ** int(e))
    if kind == "fact":
        v = to_fraction(node[1])
        if v is None or v.denominator != 1 or v < 0:
            return None
        if v > MAX_FACTORIAL:
            raise TooBig("factorial too large")
        return Fraction(math.factorial(int(v)))
    if kind == "sqrt":
        v = to_fraction(node[1])
        k = 2 if node[2] is None else to_fraction(node[2])
        if v is None or k is None or k.denominator != 1 or k <= 0 or v < 0:
            return None
        if v.numerator.bit_length() > 4000:
            return None
        rn, rd = _int_root(v.numerator, int(k)), _int_root(v.denominator, int(k))
        return None if rn is None or rd is None else Fraction(rn, rd)
    return None


def _int_root(n: int, k: int) -> int | None:
    if k > 64:
        return None
    r = round(n ** (1.0 / k)) if n.bit_length() < 900 else int(math.isqrt(n)) if k == 2 else None
    if r is None:
        return None
    for c in (r - 1, r, r + 1):
        if c >= 0 and c**k == n:
            return c
    return None


def decimal_places(node: Ast) -> int | None:
    """Digits after the point when ``node`` is a (signed) decimal literal, else ``None``."""
    while node[0] == "neg":
        node = node[1]
    if node[0] == "num" and "." in node[2] and "e" not in node[2].lower():
        return len(node[2].split(".", 1)[1])
    return None


def significant_digits(node: Ast) -> int:
    """Significant digits of a decimal literal (``0.0833`` has 3)."""
    while node[0] == "neg":
        node = node[1]
    digits = str(node[2]).replace(".", "").lstrip("0")
    return len(digits)
