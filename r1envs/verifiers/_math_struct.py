"""The shape of a normalised answer: scalar, tuple, interval, set, list, equation, relation...

:func:`structure` turns a normalised answer string into nested tuples (picklable, hashable):

* ``("expr", text, ast | None)`` — one expression (``ast`` from :func:`parse_expr`);
* ``("text", words)`` — a word answer (``\\text{Evelyn}``), lower-cased;
* ``("choice", letter, text)`` — a multiple-choice letter (and the option's text, or ``""``);
* ``("tuple", open, close, items)`` — ``(1,2)``, ``[0,1)``: a point or an interval;
* ``("set", items)`` — ``\\{1,2\\}``; ``("list", items)`` — ``1, 2`` or ``1 and 2``;
* ``("union", parts)`` — ``(-\\infty,0) \\cup (1,2]``;
* ``("matrix", rows)`` — rows of items;
* ``("eq", lhs, value)`` — a definition ``x = 3`` / ``(p,q) = (1,2)`` (``lhs`` text);
* ``("equation", lhs, rhs)`` — a general equation ``x + y = 2`` (two ``expr`` nodes);
* ``("rel", parts, ops)`` — an inequality chain ``-2 \\leq x < 7``;
* ``("approx", exact, decimal)`` — ``\\frac{14}{3} \\approx 4.7``: a value and the decimal it
  is said to be close to.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Any

from r1envs.verifiers._math_latex import ParseError, TooBig, parse_expr, to_fraction

Node = tuple[Any, ...]

MAX_ITEMS = 64
_OPEN = {"(": ")", "[": "]", "{": "}"}
_REL_RE = re.compile(r"\\leq|\\geq|\\neq|\\approx|\\in(?![a-zA-Z])|=|<|>")
_CHOICE_RE = re.compile(r"^\(\s*([A-Ha-h])\s*\)$|^([A-H])$")
_WORDY_RE = re.compile(r"^[A-Za-z][A-Za-z '\-]*$")
_SIMPLE_LHS_RE = re.compile(
    r"^(?:[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?'?|\\[a-zA-Z]+(?:_\{?[a-zA-Z0-9]+\}?)?"
    r"|\\(?:angle|measuredangle|overline|triangle)\s*\{?[A-Za-z ]+\}?|m\s*\\angle\s*[A-Z]+"
    r"|[a-zA-Z]+\([^()]*\)|\((?:\s*[a-zA-Z](?:_\{?\w+\}?)?\s*,)+\s*[a-zA-Z](?:_\{?\w+\}?)?\s*\)"
    r"|[A-Za-z][A-Za-z ]{1,30})$"
)
_WORD_SPLIT_RE = re.compile(r"\s+(?:and|or)\s+|\s*,\s*(?:and|or)\s+", re.IGNORECASE)


def _scan(s: str):
    """Yield ``(index, depth)`` for each character; brackets of any kind nest together."""
    depth = 0
    i, n = 0, len(s)
    while i < n:
        if s.startswith("\\lbrace", i) or s.startswith("\\begin", i):
            yield i, depth
            depth += 1
            i += 7 if s.startswith("\\lbrace", i) else 6
            continue
        if s.startswith("\\rbrace", i) or s.startswith("\\end", i):
            depth -= 1
            yield i, depth
            i += 7 if s.startswith("\\rbrace", i) else 4
            continue
        c = s[i]
        if c in "([{":
            yield i, depth
            depth += 1
        elif c in ")]}":
            depth -= 1
            yield i, depth
        else:
            yield i, depth
        i += 1


def split_top(s: str, seps: tuple[str, ...]) -> list[str]:
    """Split ``s`` at separators that are outside every bracket."""
    parts, start = [], 0
    skip_to = -1
    for i, depth in _scan(s):
        if i < skip_to or depth != 0:
            continue
        for sep in seps:
            if s.startswith(sep, i):
                if sep[0] == "\\" and s[i + len(sep) : i + len(sep) + 1].isalpha():
                    continue
                parts.append(s[start:i])
                start = i + len(sep)
                skip_to = start
                break
    parts.append(s[start:])
    return parts


def _top_rel_ops(s: str) -> list[tuple[int, int, str]]:
    out = []
    depth_at = dict(_scan(s))
    for m in _REL_RE.finditer(s):
        if depth_at.get(m.start(), 1) == 0:
            out.append((m.start(), m.end(), m.group(0)))
    return out


def _wrapped(s: str) -> tuple[str, str, str] | None:
    """``(open, inner, close)`` when one bracket pair wraps all of ``s``."""
    if len(s) < 2:
        return None
    if s.startswith("\\lbrace") and s.endswith("\\rbrace"):
        inner = s[7:-7]
        o, c = "{", "}"
    elif s[0] in "([" and s[-1] in ")]":
        inner = s[1:-1]
        o, c = s[0], s[-1]
    elif s[0] == "{" and s[-1] == "}":
        inner = s[1:-1]
        o, c = "{{", "}}"
    else:
        return None
    depth = 0
    for _, d in _scan(inner):
        depth = d
        if d < 0:
            return None
    return (o, inner, c) if depth == 0 else None


def structure(s: str, _depth: int = 0) -> Node:
    """The :data:`Node` of a normalised answer (see the module docstring)."""
    s = s.strip(" ,;")
    if s.endswith(".") and not s.endswith("..."):
        s = s[:-1].rstrip(" ,;")
    if _depth > 12 or not s:
        return ("expr", s, None)
    m = _CHOICE_RE.match(s)
    if m:
        return ("choice", (m.group(1) or m.group(2)).upper(), "")
    words = [p for p in _WORD_SPLIT_RE.split(" " + s + " ") if p.strip()]
    if len(words) > 1 and all(_balanced(p) for p in words):
        items = _flat([structure(p, _depth + 1) for p in words[:MAX_ITEMS]])
        return ("list", group_assignments(items))
    items = [p for p in split_top(s, (",", ";")) if p.strip()]
    if len(items) > 1 and _wrapped(s) is None:
        items = [q for p in items for q in _WORD_SPLIT_RE.split(" " + p + " ") if q.strip()]
        items = [re.sub(r"^\s*(?:and|or)\s+", "", p) for p in items]
        items = _flat([structure(p, _depth + 1) for p in items[:MAX_ITEMS]])
        return ("list", group_assignments(items))
    ops = _top_rel_ops(s)
    if ops:
        return _relation(s, ops, _depth)
    parts = split_top(s, ("\\cup",))
    if len(parts) > 1:
        return ("union", [structure(p, _depth + 1) for p in parts[:MAX_ITEMS]])
    if s.count("\\begin{") >= 2:
        arith = _matrix_arithmetic(s, _depth)
        if arith is not None:
            return arith
    if s.startswith("\\begin{") and s.endswith("}"):
        mat = _matrix(s, _depth)
        if mat is not None:
            return mat
    w = _wrapped(s)
    if w is not None:
        o, inner, c = w
        items = [p for p in split_top(inner, (",", ";"))]
        if o == "{":
            return (
                "set",
                _flat([structure(p, _depth + 1) for p in items[:MAX_ITEMS] if p.strip()]),
            )
        if o == "{{":
            return structure(inner, _depth + 1)
        if len(items) > 1:
            return ("tuple", o, c, [structure(p, _depth + 1) for p in items[:MAX_ITEMS]])
        return structure(inner, _depth + 1)
    items = [p for p in split_top(s, (",", ";")) if p.strip()]
    items = [q for p in items for q in _WORD_SPLIT_RE.split(" " + p + " ") if q.strip()]
    items = [re.sub(r"^\s*(?:and|or)\s+", "", p) for p in items]
    if len(items) > 1:
        return ("list", [structure(p, _depth + 1) for p in items[:MAX_ITEMS]])
    if len(items) == 1 and items[0].strip() != s:
        return structure(items[0], _depth + 1)
    if s.count("\\pm") + s.count("\\mp") == 1:  # a \pm b: both values, wherever it sits
        plus = s.replace("\\pm", "+").replace("\\mp", "-")
        minus = s.replace("\\pm", "-").replace("\\mp", "+")
        return ("list", [structure(plus, _depth + 1), structure(minus, _depth + 1)])
    return scalar(s)


def _balanced(s: str) -> bool:
    depth = 0
    for _, d in _scan(s):
        if d < 0:
            return False
        depth = d
    return depth == 0


_WORDS = {"yes", "no", "none", "odd", "even", "true", "false", "neither", "both", "never"}
_TIME_RATIO_RE = re.compile(r"^\d+(?::\d+)+$")


def _flat(items: list[Node]) -> list[Node]:
    out: list[Node] = []
    for it in items:
        out.extend(it[1] if it[0] == "list" else [it])
    return out


def scalar(s: str) -> Node:
    """An ``expr`` node (or ``text`` for words, clock times and ratios)."""
    letters = s.replace(" ", "")
    if _TIME_RATIO_RE.match(letters):
        return ("text", letters)
    if _WORDY_RE.match(s) and (len(letters) >= 4 or " " in s.strip() or s.lower() in _WORDS):
        return ("text", " ".join(s.lower().split()))
    try:
        return ("expr", s, parse_expr(s))
    except (ParseError, TooBig, RecursionError, ValueError, ZeroDivisionError):
        pass
    if _WORDY_RE.match(s) and len(s) > 1:
        return ("text", " ".join(s.lower().split()))
    return ("expr", s, None)


_MATRIX_RE = re.compile(r"\\begin\{([a-zA-Z]*matrix|array)\}(?:\{[^{}]*\})?(.*?)\\end\{\1\}", re.S)


def _matrix(s: str, depth: int) -> Node | None:
    m = re.match(r"^\\begin\{([a-zA-Z]*matrix|array)\}(\{[^{}]*\})?(.*)\\end\{\1\}$", s, re.S)
    if m is None or s.count("\\begin{") != 1:
        return None
    body = m.group(3)
    rows = [r for r in re.split(r"\\\\", body) if r.strip()]
    out = [[structure(c, depth + 1) for c in r.split("&")] for r in rows[:MAX_ITEMS]]
    return ("matrix", out)


def _rational_grid(node: Node | None) -> list[list[Fraction]] | None:
    if node is None or node[0] != "matrix":
        return None
    grid = []
    for row in node[1]:
        vals = []
        for cell in row:
            v = to_fraction(cell[2]) if cell[0] == "expr" and cell[2] is not None else None
            if v is None:
                return None
            vals.append(v)
        grid.append(vals)
    return grid if grid and all(len(r) == len(grid[0]) for r in grid) else None


def _matmul(a: list[list[Fraction]], b: list[list[Fraction]]) -> list[list[Fraction]] | None:
    if len(a[0]) != len(b):
        return None
    return [
        [sum((a[i][k] * b[k][j] for k in range(len(b))), Fraction(0)) for j in range(len(b[0]))]
        for i in range(len(a))
    ]


def _matrix_arithmetic(s: str, depth: int) -> Node | None:
    """Sums and products of rational matrices, evaluated: ``A + B``, ``A B``, ``A - B``."""
    found = list(_MATRIX_RE.finditer(s))
    if len(found) < 2 or s[: found[0].start()].strip() or s[found[-1].end() :].strip():
        return None
    gaps = [s[a.end() : b.start()].strip() for a, b in zip(found, found[1:], strict=False)]
    if any(g not in ("", "+", "-", "\\cdot", "\\times") for g in gaps):
        return None
    try:
        grids = [_rational_grid(_matrix(m.group(0), depth + 1)) for m in found]
        if any(g is None for g in grids):
            return None
        terms: list[tuple[int, list[list[Fraction]]]] = [(1, grids[0])]  # type: ignore[list-item]
        for gap, grid in zip(gaps, grids[1:], strict=True):
            if gap in ("+", "-"):
                terms.append((1 if gap == "+" else -1, grid))  # type: ignore[arg-type]
            else:
                prod = _matmul(terms[-1][1], grid)  # type: ignore[arg-type]
                if prod is None:
                    return None
                terms[-1] = (terms[-1][0], prod)
        shape = (len(terms[0][1]), len(terms[0][1][0]))
        if any((len(t), len(t[0])) != shape for _, t in terms):
            return None
        total = [
            [sum((sg * t[i][j] for sg, t in terms), Fraction(0)) for j in range(shape[1])]
            for i in range(shape[0])
        ]
    except TooBig:
        return None
    return ("matrix", [[("expr", str(v), ("num", v, str(v))) for v in row] for row in total])


def _has_variable(text: str) -> bool:
    """Whether letters remain once LaTeX commands are removed (``\\binom{5}{2}`` has none)."""
    return bool(re.search(r"[a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", text)))


# Names of a quantity, not equations: |AB|, A:B, V_1:V_2, \frac{NO}{BO}, S_{ABC}, P(A), AB.
_LABEL_LHS_RE = re.compile(
    r"^(?:\|[^|]{1,30}\||[^=<>+\-]{1,40}:[^=<>+\-]{1,40}"
    r"|\\frac\s*\{\s*[A-Z][A-Za-z_{}\d ]{0,20}\}\s*\{\s*[A-Z][A-Za-z_{}\d ]{0,20}\}"
    r"|[A-Z]{1,4}(?:_\{?[A-Za-z\d]{1,6}\}?)?'?|[A-Za-z]{1,6}\([^()]{1,20}\))$"
)


def _label_lhs(text: str) -> bool:
    """Whether ``text`` names the quantity asked for (a segment, a ratio, an area...)."""
    return bool(_LABEL_LHS_RE.match(text.strip()))


def group_assignments(items: list[Node]) -> list[Node]:
    """``p=2, q=3; p=3, q=2`` -> the points ``(2, 3)`` and ``(3, 2)``.

    A list of definitions whose names repeat in one cycle (two names or more) lists
    solutions; each cycle becomes a tuple of the values, in the order the names come.
    """
    if len(items) < 4 or not all(it[0] == "eq" and it[1] for it in items):
        return items
    names = [it[1] for it in items]
    k = names.index(names[0], 1) if names[0] in names[1:] else 0
    if k < 2 or len(items) % k or len(set(names[:k])) != k:
        return items
    if any(names[i] != names[i % k] for i in range(len(items))):
        return items
    return [
        ("tuple", "(", ")", [it[2] for it in items[j : j + k]]) for j in range(0, len(items), k)
    ]


def _simple_lhs(text: str) -> bool:
    t = text.strip()
    if t in ("\\pi", "\\infty", "e", "i"):
        return False  # constants, not names: "\\pi \\approx 3.14" states pi
    return bool(_SIMPLE_LHS_RE.match(t)) and not re.fullmatch(r"\d+", t)


def _relation(s: str, ops: list[tuple[int, int, str]], depth: int) -> Node:
    pieces, kinds, start = [], [], 0
    for a, b, op in ops:
        pieces.append(s[start:a].strip())
        kinds.append(op)
        start = b
    pieces.append(s[start:].strip())
    if "\\approx" in kinds:
        k = kinds.index("\\approx")
        if k > 0 or pieces[0]:
            approx = structure(pieces[k + 1], depth + 1) if len(pieces) > k + 1 else None
            if k == 0 and _simple_lhs(pieces[0]):  # "x \approx 11" gives 11
                return structure(pieces[1], depth + 1)
            # "\frac{1}{3} \approx 0.33", "x = 14/3 \approx 4.7": the exact value and the
            # decimal it states; either may match the gold
            exact = _relation_parts(pieces[: k + 1], kinds[:k], depth)
            return exact if approx is None else ("approx", exact, approx)
        return structure(pieces[1], depth + 1)
    return _relation_parts(pieces, kinds, depth)


def _relation_parts(pieces: list[str], kinds: list[str], depth: int) -> Node:
    if not kinds:
        return structure(pieces[0], depth + 1)
    if kinds[-1] == "\\in":
        return structure(pieces[-1], depth + 1)
    if all(k == "=" for k in kinds):
        if not pieces[-1]:
            return structure(pieces[0], depth + 1)
        if not pieces[0]:
            return structure(pieces[-1], depth + 1)
        if not _has_variable(pieces[0]) and not _has_variable(pieces[-1]):
            return structure(pieces[-1], depth + 1)  # a computation: 1/2 + 1/3 = 5/6
        if _simple_lhs(pieces[0]) or (len(pieces) > 2 and _simple_lhs(pieces[-2])):
            return ("eq", pieces[0].replace(" ", ""), structure(pieces[-1], depth + 1))
        if _label_lhs(pieces[0]) and not _has_variable(pieces[-1]):
            return ("eq", pieces[0].replace(" ", ""), structure(pieces[-1], depth + 1))
        if len(pieces) == 2:
            return ("equation", scalar(pieces[0]), scalar(pieces[1]))
        return ("eq", "", structure(pieces[-1], depth + 1))
    if "=" in kinds or "\\approx" in kinds:
        return ("expr", "".join(pieces), None)
    return ("rel", [scalar(p) for p in pieces], kinds)
