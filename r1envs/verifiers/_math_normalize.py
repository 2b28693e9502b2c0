"""Normalisation of an answer's LaTeX before it is parsed.

Math delimiters, spacing commands, ``\\left``/``\\right``, ``\\dfrac``, ``\\text{}`` wrappers,
units and annotations after a value, degrees, currency, thousands separators, percent
words, repeating decimals, plain mixed numbers (``4 4/9``) and Unicode symbols are all
rewritten to one canonical LaTeX-like form; percent stays as a trailing ``%`` so that the
comparison decides about it.
"""

from __future__ import annotations

import re

MAX_INPUT_CHARS = 4000


_UNICODE = {
    "\u2212": "-",
    "\u2013": "-",
    "\u2014": "-",
    "\u00d7": "\\times ",
    "\u22c5": "\\cdot ",
    "\u00b7": "\\cdot ",
    "\u00f7": "\\div ",
    "\u221a": "\\sqrt",
    "\u03c0": "\\pi ",
    "\u2264": "\\leq ",
    "\u2265": "\\geq ",
    "\u2260": "\\neq ",
    "\u221e": "\\infty ",
    "\u222a": "\\cup ",
    "\u2229": "\\cap ",
    "\u00b1": "\\pm ",
    "\u2208": "\\in ",
    "\u2205": "\\emptyset ",
    "\u211d": "\\mathbb{R}",
    "\u2223": "\\mid ",
    "\u00b0": "^\\circ",
    "\u00b2": "^2",
    "\u00b3": "^3",
    "\uff0c": ",",
    "\u2009": " ",
    "\u00a0": " ",
    "\u202f": " ",
}
_UNICODE_RE = re.compile("|".join(map(re.escape, _UNICODE)))

_TEXT_CMDS = (
    "text",
    "textbf",
    "textit",
    "textrm",
    "textnormal",
    "mathrm",
    "mathbf",
    "mathit",
    "mbox",
    "operatorname",
    "mathsf",
    "textsf",
    "texttt",
    "boldsymbol",
    "mathbb",
    "mathcal",
    "mathscr",
    "bf",
    "rm",
)
_TEXT_CMD_RE = re.compile(r"\\(?:" + "|".join(_TEXT_CMDS) + r")\s*\{([^{}]*)\}")
_SPACING_RE = re.compile(
    r"\\(?:left|right|bigl|bigr|Bigl|Bigr|biggl|biggr|big|Big|bigg|Bigg|displaystyle|"
    r"textstyle|limits|nolimits)(?![a-zA-Z])|(?<!\\)\\[!,;: ]|\\q?quad(?![a-zA-Z])|~|\\hspace\*?\{[^{}]*\}"
)
# A trigonometric function of a number of degrees: \sin 30^\circ is sin(pi/6).
TRIG_DEGREES_RE = re.compile(
    r"(\\(?:sin|cos|tan|sec|csc|cot)(?![a-zA-Z])\s*(?:\^\s*(?:\{[^{}]*\}|\d)\s*)?)"
    r"(\(\s*)?(\d+(?:\.\d+)?)\s*\^\s*\{?\s*\\circ\s*\}?(\s*\))?"
)
_DEGREE_RE = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\circ(?![a-zA-Z])|\\degree(?![a-zA-Z])")
_PERCENT_RE = re.compile(r"\\%|\s*\b(?:per\s*cent(?:age)?|pct)\b\.?", re.IGNORECASE)
# A plain word (or a few) after a number is a unit or a noun: "1/2 cup", "20 USD".
_TRAILING_WORDS_RE = re.compile(r"(?<=[\d}.])\s+[A-Za-z]{3,}(?:\s+[A-Za-z]{2,}){0,3}\.?$")
_VULGAR = {
    "\u00bd": "(1/2)",
    "\u2153": "(1/3)",
    "\u2154": "(2/3)",
    "\u00bc": "(1/4)",
    "\u00be": "(3/4)",
    "\u2155": "(1/5)",
    "\u2159": "(1/6)",
    "\u215b": "(1/8)",
    "\u215c": "(3/8)",
    "\u215d": "(5/8)",
    "\u215e": "(7/8)",
}
_UNIT_WORDS = (
    r"(?:square|sq\.?|cubic)?\s*(?:units?|centimeters?|centimetres?|cm|millimeters?|mm|"
    r"kilometers?|km|meters?|metres?|inches|inch|feet|foot|ft|yards?|yd|miles?|mi|mph|kph|"
    r"hours?|hrs?|minutes?|mins?|seconds?|secs?|days?|weeks?|months?|years?|dollars?|cents?|"
    r"euros?|degrees?|deg|radians?|rad|kg|grams?|gm|pounds?|lbs?|ounces?|oz|liters?|litres?|"
    r"ml|gallons?|points?|people|persons?|students?|children|apples?|marbles?|cookies?|"
    r"pages?|books?|boxes?|times|ways|steps|items|pieces?|km/h|m/s|sq)"
)
_TRAILING_UNIT_RE = re.compile(
    r"(?<=[\d}).\s])\s*(?:" + _UNIT_WORDS + r")(?:\s*\^\s*\{?\d\}?)?\s*\.?\s*$",
    re.IGNORECASE,
)
_CURRENCY_RE = re.compile("[\u20ac\u00a3\u00a5\u20b9]|" + r"\\(?:euro|pounds)(?![a-zA-Z])")
_SHORT_UNIT_RE = re.compile(r"(?<=\d)(?:\s+(?:m|s|h|g|l)|\s*(?:kg|km|cm|mm|m\s*\^\s*\{?[23]\}?))$")
_THOUSANDS_RE = re.compile(r"(?<=\d),\\!\s*(?=\d{3})|(?<=\d)\s*\{\s*,\s*\}\s*(?=\d{3})")
# "or" / "and" written without spaces between two answers: (11,7)or(7,11), W(x)=1orW(x)=-1.
_GLUED_CONJ_RE = re.compile(r"(?<=[\d)\]}])(or|and)(?=[(\[{\\A-Z\d-])")
_PLAIN_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")
_SPACE_THOUSANDS_RE = re.compile(r"^[-+]?\d{1,3}(?: \d{3})+(?:\.\d+)?$")
_FRAC_SHORT_RE = re.compile(r"\\frac\s*(\d)\s*(\d)")
_FRAC_HALF_RE = re.compile(r"\\frac\s*(\{[^{}]*\})\s*([0-9a-zA-Z])")
_FRAC_HALF2_RE = re.compile(r"\\frac\s*([0-9a-zA-Z])\s*(\{[^{}]*\})")
_SQRT_SHORT_RE = re.compile(r"\\sqrt\s*([0-9]+|[a-zA-Z](?![a-zA-Z]))")


def _unwrap_text(match: re.Match[str]) -> str:
    return " " + match.group(1) + " "


# Words in \text{} right after a value are a unit or an annotation: 17\text{ apples}, 15\mbox{ cm}^2.
_TEXT_AFTER_VALUE_RE = re.compile(
    r"(?<=[\d)}])\s*\\(?:" + "|".join(_TEXT_CMDS) + r")\s*\{(?!\s*(?:and|or)\s*\})"
    r"\s*[A-Za-z][A-Za-z ]*\.?\s*\}"
    r"(?:\s*\^\s*\{?\d\}?)?"
)
_MIXED_RE = re.compile(r"^([-+]?)(\d+)\s+(\d+)\s*/\s*(\d+)(\s*%)?$")


_REPEATING_RE = re.compile(r"(\d*)\.(\d*)\\overline\s*\{(\d+)\}")
_EMPTY_SET_RE = re.compile(
    r"\\(?:varnothing|emptyset|O)(?![a-zA-Z])|\\lbrace\s*\\rbrace|\\\{\s*\\\}"
)
_REALS_RE = re.compile(r"\\mathbb\s*\{?R\}?|\ball real numbers\b", re.IGNORECASE)
_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")


def _trig_degrees(match: re.Match[str]) -> str:
    """``\\sin 30^\\circ`` -> ``\\sin(30\\pi/180)``; brackets must pair up to be moved."""
    func, opened, value, closed = match.groups()
    if bool(opened) != bool(closed):
        return match.group(0)
    return f"{func}({value}\\pi/180)"


def _repeating(match: re.Match[str]) -> str:
    """``0.1\\overline{6}`` -> ``\\frac{1}{6}`` (exact)."""
    whole, fixed, rep = match.group(1) or "0", match.group(2), match.group(3)
    den = (10 ** len(rep) - 1) * 10 ** len(fixed)
    num = int(whole + fixed + rep) - int(whole + fixed)
    return f"\\frac{{{num}}}{{{den}}}"


def _mixed_number(s: str) -> str:
    """``4 4/9`` -> ``(4+\\frac{4}{9})``; an improper one (``11 7/6``) becomes unparseable."""
    m = _MIXED_RE.match(s)
    if m is None:
        return s
    sign, whole, num, den, pct = m.groups()
    if int(den) == 0 or int(num) >= int(den):
        return "\\invalidmixednumber"
    return f"{sign}({whole}+\\frac{{{num}}}{{{den}}}){pct or ''}"


def normalize(text: str) -> str:
    """Canonical form of an answer's LaTeX: delimiters, spacing, units and separators removed.

    The result is still LaTeX-like text (``\\frac``, ``\\sqrt``...); percent is kept as a
    trailing ``%`` so that the comparison can decide about it.
    """
    s = text[:MAX_INPUT_CHARS]
    s = _UNICODE_RE.sub(lambda m: _UNICODE[m.group(0)], s)
    for ch, rep in _VULGAR.items():
        if ch in s:
            s = re.sub(r"(\d+)\s*" + ch, r"(\1+" + rep + ")", s).replace(ch, rep)  # 2½ = 5/2
    s = s.replace("\\$", " ").replace("$", " ")
    s = _CURRENCY_RE.sub(" ", s)
    s = re.sub(r"\\\(|\\\)|\\\[|\\\]", " ", s)
    s = re.sub(r"(?<=[\w)}])\s*\*\*\s*(?=[\w({-])", "^", s)  # Python power: x**2
    s = s.replace("**", "")
    if "\\begin" not in s:
        s = re.sub(r"\\\\(?=[a-zA-Z])", r"\\", s)  # an over-escaped command: \\frac
    s = re.sub(r"\\[dtc]frac(?![a-zA-Z])|(?<![a-zA-Z\\])[dt]frac(?![a-zA-Z])", r"\\frac", s)
    s = _THOUSANDS_RE.sub("", s)
    s = _GLUED_CONJ_RE.sub(r" \1 ", s)
    s = _SPACING_RE.sub(" ", s)
    s = re.sub(r"\\pmod\s*\{[^{}]*\}|\\(?:pmod|bmod|mod)\s*\d+", " ", s)
    s = TRIG_DEGREES_RE.sub(_trig_degrees, s)
    s = _DEGREE_RE.sub(" ", s)
    s = _BOXED_RE.sub(r" \1 ", s)
    s = _REALS_RE.sub(r"(-\\infty,\\infty)", s)
    s = _TEXT_AFTER_VALUE_RE.sub(" ", s)
    for _ in range(3):
        s2 = _TEXT_CMD_RE.sub(_unwrap_text, s)
        if s2 == s:
            break
        s = s2
    s = _PERCENT_RE.sub("%", s)
    s = _REPEATING_RE.sub(_repeating, s)
    s = re.sub(r"\\overline\s*\{([A-Za-z]+)\}", r"\1", s)
    s = _EMPTY_SET_RE.sub(r"\\emptyset ", s)
    s = re.sub(r"\\(?:le|leqslant|leqq)(?![a-zA-Z])|<=", r"\\leq ", s)
    s = re.sub(r"\\(?:ge|geqslant|geqq)(?![a-zA-Z])|>=", r"\\geq ", s)
    s = re.sub(r"\\(?:ne)(?![a-zA-Z])|!=", r"\\neq ", s)
    s = re.sub(r"\\(?:lt)(?![a-zA-Z])", "<", s)
    s = re.sub(r"\\(?:gt)(?![a-zA-Z])", ">", s)
    s = s.replace("\\{", "\\lbrace ").replace("\\}", "\\rbrace ")
    s = re.sub(r"\\lbrace(?![a-zA-Z])", "\\\\lbrace ", s)
    s = _FRAC_SHORT_RE.sub(r"\\frac{\1}{\2}", s)
    s = _FRAC_HALF_RE.sub(r"\\frac\1{\2}", s)
    s = _FRAC_HALF2_RE.sub(r"\\frac{\1}\2", s)
    s = _SQRT_SHORT_RE.sub(r"\\sqrt{\1}", s)
    s = re.sub(r"\\(?:ldots|cdots|dots|dotsc|dotsb)(?![a-zA-Z])|\u2026", "...", s)
    s = " ".join(s.split())
    s = s.strip(" ,;:")
    if s.endswith(".") and not s.endswith("..."):
        s = s[:-1].rstrip(" ,;:")
    s = re.sub(r"^\\(?:therefore|implies|Rightarrow)\s*", "", s)
    s = re.sub(r"^\\forall\s*[^,]{1,40},\s*(?=\S)", "", s)  # "\forall x>0, f(x) = 0"
    if s.startswith("\\boxed") and s.count("{") > s.count("}"):  # an unclosed \boxed{
        s = re.sub(r"^\\boxed\s*\{", "", s)
    for _ in range(2):
        s = _TRAILING_UNIT_RE.sub("", s).strip(" ,;:")
        s = _TRAILING_WORDS_RE.sub("", s).strip(" ,;:")
    s = _SHORT_UNIT_RE.sub("", s).rstrip()
    s = s.rstrip("\\").rstrip()
    s = _mixed_number(s)
    if _PLAIN_THOUSANDS_RE.match(s) or _SPACE_THOUSANDS_RE.match(s):
        s = s.replace(",", "").replace(" ", "")
    return s
