"""Angles given in degrees against angles given in radians.

Normalisation drops degree signs, so ``30^\\circ`` already equals ``30``. This module adds
the unit conversion, and only where the *answer* states its unit: an answer marked in
degrees (``45^\\circ``, ``45^{\\circ}``, ``45°``, ``45\\text{ degrees}``) also equals a gold
in radians once converted (``\\frac{\\pi}{4}``; such a gold shows ``\\pi``, an inverse
trigonometric function or a radian unit, so ``30^\\circ`` is not a gold ``0.5``, which may be
a sine), and an answer marked in radians (``\\frac{\\pi}{2}\\text{ radians}``) equals a gold
in degrees (``90^\\circ``). A bare answer is read in the gold's unit: ``45`` is not
``\\frac{\\pi}{4}`` and ``\\frac{\\pi}{6}`` is not ``30^\\circ`` (the question asked for degrees).
"""

from __future__ import annotations

import re
from fractions import Fraction

from r1envs.verifiers._math_compare import Symbolic, equal
from r1envs.verifiers._math_normalize import TRIG_DEGREES_RE
from r1envs.verifiers._math_struct import Node

_DEGREE_RE = re.compile(
    r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])|\u00b0"
    r"|(?<!\\)\bdegrees?\b|(?<![\\a-zA-Z])deg\b",
    re.IGNORECASE,
)
_RADIAN_RE = re.compile(r"(?<![\\a-zA-Z])(?:radians?|rad)\b", re.IGNORECASE)
_RADIAN_VALUE_RE = re.compile(  # what shows a gold is in radians
    r"\\pi(?![a-zA-Z])|\u03c0|\\arc[a-z]+|\\(?:sin|cos|tan)\s*\^\s*\{\s*-1"
)
_PI_OVER_180 = ("div", ("const", "pi"), ("num", Fraction(180), "180"))


def angle_unit(text: str) -> str | None:
    """``"deg"`` or ``"rad"`` when ``text`` states that unit (and not the other), else ``None``."""
    text = TRIG_DEGREES_RE.sub(" ", text)  # \\sin 30^\\circ is a number, not an angle
    deg, rad = bool(_DEGREE_RE.search(text)), bool(_RADIAN_RE.search(text))
    if deg == rad:
        return None
    return "deg" if deg else "rad"


def to_radians(node: Node) -> Node | None:
    """``node`` with every value multiplied by ``pi/180``; ``None`` if a part is not a value."""
    kind = node[0]
    if kind == "expr":
        if node[2] is None:
            return None
        return ("expr", f"({node[1]})\\cdot\\pi/180", ("mul", [node[2], _PI_OVER_180]))
    if kind in ("list", "set", "union"):
        items = [to_radians(n) for n in node[1]]
        return None if any(i is None for i in items) else (kind, items)
    if kind == "tuple":
        items = [to_radians(n) for n in node[3]]
        return None if any(i is None for i in items) else (kind, node[1], node[2], items)
    if kind == "eq":
        value = to_radians(node[2])
        return None if value is None else ("eq", node[1], value)
    return None


def angles_equal(
    pred_text: str, gold_text: str, pred: Node, gold: Node, symbolic: Symbolic
) -> bool:
    """Whether the answer equals the gold once the answer's stated angle unit is converted.

    Args:
        pred_text: the answer as extracted (before normalisation, degree signs intact).
        gold_text: the gold answer text.
        pred: the answer's structure; gold: the gold's structure.
        symbolic: the comparison's symbolic callback.
    """
    pu, gu = angle_unit(pred_text), angle_unit(gold_text)
    if pu == "deg" and (gu == "rad" or gu is None and _RADIAN_VALUE_RE.search(gold_text)):
        converted = to_radians(pred)
        return converted is not None and equal(converted, gold, symbolic)
    if pu == "rad" and gu == "deg":
        converted = to_radians(gold)
        return converted is not None and equal(pred, converted, symbolic)
    return False
