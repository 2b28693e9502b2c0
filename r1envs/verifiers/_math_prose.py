"""Reading an answer out of prose, in any language (the non-strict extraction mode).

A careful grader reads a response without an explicit ``\\boxed{}`` the way a person
does; this module holds the pieces of that reading that :mod:`._math_extract` uses:

* final-answer markers in other languages (``答案：``, ``Réponse :``, ``Antwort:``,
  ``Ответ:``, ``الإجابة``...), found like "Answer:";
* sentence ends of other scripts (``。``, ``！``, ``？``);
* the conclusion of a run-on final sentence: what follows its last "Therefore", "So",
  "所以", "Donc", "Итого"...;
* the value a final sentence states without a cue word ("So she pays 45 dollars in all."
  gives 45): its only number, or its bold span (``**45**``);
* a multiple-choice letter stated in prose ("It can't be A, so it's C", "C。不是 A",
  ``\\textbf{(C)}``): the last letter that is not ruled out.

Every pattern here is linear in its input (no nested quantifiers, bounded look-behind).
"""

from __future__ import annotations

import re

# Markers in other languages: a word for "answer" then a colon or a copula.
_MARKER_WORDS = (
    "最终答案|最后答案|正确答案|答案|答曰|答复|解答|回答|答え|最終解答|정답|답변|답"
    "|réponse(?:\\s+finale)?|antwort|ответ|respuesta(?:\\s+final)?|risposta|resposta|jawaban"
    "|jawabannya|jibu|คำตอบ|సమాధానం|odpowied[zź]|cevap|đáp\\s+án|उत्तर|উত্তর|الإجابة(?:\\s+النهائية)?|الجواب|إجابة"
)
MARKER_RE = re.compile(
    r"(?i)(?:" + _MARKER_WORDS + r")(?:\s*\*\*)?\s*"
    r"(?:[:：]|是|为|為|は|는|은|est\b|ist\b|es\b|è\b|é\b|adalah\b|là\b|هي|هو|—|-\s)\s*(?:\*\*)?\s*:?"
)
_ASCII_MARKERS = ("antwort", "respuesta", "risposta", "resposta", "jawaban", "jibu", "cevap")
MARKER_WINDOW = 6000
"""Markers in other languages are looked for in the last this many characters."""


def marker_spans(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the answer markers in other languages near the end of ``text``."""
    base = max(0, len(text) - MARKER_WINDOW)
    tail = text[base:]
    if tail.isascii():
        low = tail.lower()
        if not any(w in low for w in _ASCII_MARKERS):
            return []
    return [(base + m.start(), base + m.end()) for m in MARKER_RE.finditer(tail)]


SENTENCE_END = "\u3002\uff01\uff1f"  # 。！？
# Words that open the conclusion of a sentence (capitalised, or in a script without case).
_CONCLUSION_RE = re.compile(
    r"(?<![\w])(?:Therefore|Thus|Hence|So|Finally|Consequently|In\s+conclusion|In\s+total"
    r"|Altogether|Overall|All\s+in\s+all|Donc|Ainsi|Au\s+total|Daher|Also|Somit|Insgesamt"
    r"|Por\s+lo\s+tanto|Entonces|Portanto|Quindi|Итак|Итого|Таким\s+образом|Значит|Поэтому"
    r"|Следовательно|所以|因此|故|综上|總共|总共|一共|因而|于是|よって|したがって|따라서)"
    r"(?![\w])"
)
_BOLD_RE = re.compile(r"\*\*([^*\n]{1,80})\*\*")
_NUMBER_RE = re.compile(
    r"(?<![A-Za-z0-9_.])[-+\u2212]?\d[\d,]*(?:\.\d+)?(?:/\d+)?(?:\s*%)?(?![A-Za-z0-9_])"
)
_MATH_RE = re.compile(r"\$[^$]{1,400}\$|\\\(.{1,400}?\\\)|\\\[.{1,400}?\\\]", re.S)


def conclusion(sentence: str) -> str:
    """The part of ``sentence`` after its last conclusion word, when that part states a value."""
    last = None
    for m in _CONCLUSION_RE.finditer(sentence):
        last = m
    if last is None or last.start() == 0:
        return sentence
    rest = sentence[last.start() :]
    return rest if re.search(r"[\d$\\]", rest) else sentence


def bold_answer(sentence: str) -> str | None:
    """The last bold span of ``sentence`` that holds a value (``**45**``, ``**45 dollars**``)."""
    found = None
    for m in _BOLD_RE.finditer(sentence):
        if re.search(r"[\d$\\]", m.group(1)):
            found = m.group(1)
    return found


# What makes a sentence without a cue word conclude: "So ...", "... in all", "一共", "Итого".
_CONCLUDES_RE = re.compile(
    r"(?i)(?<![a-z])(?:so|therefore|thus|hence|finally|in\s+(?:all|total)|total|altogether"
    r"|overall|donc|ainsi|au\s+total|en\s+tout|also|insgesamt|somit|daher|por\s+lo\s+tanto"
    r"|en\s+total|entonces|portanto|quindi|in\s+tutto|итак|итого|всего|значит|поэтому"
    r"|таким\s+образом)(?![a-z\u0400-\u04ff])|所以|因此|一共|总共|總共|共|故|综上|よって|따라서"
)
_STEP_RE = re.compile(r"(?i)^\s*(?:first|next|then|now|step|to\s+find|we\s+(?:need|want|start))\b")
_HEDGE_RE = re.compile(r"(?i)\?|not\s+sure|maybe|perhaps|guess|earlier|unsure|unclear")


def lone_number(sentence: str) -> str | None:
    """The only number a final sentence states ("So she pays 45 dollars in all.").

    The sentence must not hedge ("not sure", a question) nor read as a step of working
    ("First, ...", "Next, ...") unless it concludes ("so", "in all", "所以", "Итого"); its
    math spans count as values too.
    """
    if _HEDGE_RE.search(sentence) or (
        _STEP_RE.match(sentence) and not _CONCLUDES_RE.search(sentence)
    ):
        return None
    maths = _MATH_RE.findall(sentence)
    nums = _NUMBER_RE.findall(_MATH_RE.sub(" ", sentence))
    if len(nums) == 1 and not maths:
        return nums[0]
    if len(maths) == 1 and not nums:
        return maths[0]
    return None


_LETTER_RE = re.compile(
    r"\\(?:mathcal|mathbf|mathrm|mathscr|textbf|textit|text|boxed)\s*\{\s*\(?\s*([A-H])\s*\)?\s*\}"
    r"|\(\s*([A-H])\s*\)"
    r"|(?<![A-Za-z0-9\\_^{])([B-H]|A(?!\s+(?!is\b|was\b)[a-z]{2,}))(?![A-Za-z0-9_'(])"
)
_NEG_BEFORE_RE = re.compile(
    r"(?i)(?:\bnot|n't|\bnever|\bno|\brules?\s+out|\beliminat\w*|\bexclud\w*|\bwrong|\bnor"
    r"|不是|不|非|排除|pas|ni|не|нет|kein\w*|nicht)"
    r"\s*(?:be|option|choice|answer|the|it|is|as|:|,)?\s*(?:\*\*)?\s*\$?\s*$"
)
_NEG_AFTER_RE = re.compile(
    r"(?i)^\s*\$?\s*(?:\)|\.)?\s*(?:is|are|was|would\s+be|seems)\s+(?:also\s+)?"
    r"(?:not|wrong|incorrect|false|impossible|ruled|eliminated|out)"
    r"|^\s*(?:不对|错|不正确|不成立)"
)


def _letters(sentence: str) -> list[tuple[int, str]]:
    out = []
    for m in _LETTER_RE.finditer(sentence):
        letter = m.group(1) or m.group(2) or m.group(3)
        before = sentence[max(0, m.start() - 24) : m.start()]
        after = sentence[m.end() : m.end() + 24]
        negated = _NEG_BEFORE_RE.search(before) or _NEG_AFTER_RE.search(after)
        out.append((m.start(), "" if negated else letter))
    return out


def letter_in_prose(region: str) -> str | None:
    """The option letter the end of a response settles on, or ``None``.

    Sentences are read from the last; in the last one that names a letter not ruled out,
    a letter after its conclusion word wins, else its last such letter.
    """
    tail = region[-1500:]
    sentences = re.split(r"(?<=[.!?])\s+|[\u3002\uff01\uff1f\n]+", tail)
    for sent in reversed(sentences[-6:]):
        found = _letters(sent)
        kept = [(k, x) for k, x in found if x]
        if not kept:
            continue
        cut = None
        for m in _CONCLUSION_RE.finditer(sent):
            cut = m.start()
        if cut is not None:
            after = [x for k, x in kept if k >= cut]
            if after:
                return after[0]
        return kept[-1][1]
    return None
