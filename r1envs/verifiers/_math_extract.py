"""Final-answer extraction, as a careful grader reads a completion.

1. Only the response is read: text after a chat-template token the model ran on into
   (``<|im_start|>``, ``<|eot_id|>``, ``<end_of_turn>``, ``</s>``...) is dropped, and when a
   ``</think>`` (or the r1 reasoning end) is followed by more text, only that text is read —
   a ``\\boxed{}`` in the thinking does not count when a different final answer follows it.
2. The LAST explicit final-answer marker wins: ``\\boxed{}``/``\\fbox{}``, ``<answer>…</answer>``,
   "final answer …", "the answer is …", "answer: …", ``#### n``, and the same markers in
   other languages (``答案：``, ``Réponse :``, ``Antwort:``, ``Ответ:``, ``الإجابة`` …, see
   :mod:`._math_prose`).
3. Without a marker (non-strict mode), the answer stated in the last sentence that states
   one (filler such as "I hope it is correct." is skipped; a last sentence that announces
   more work or says it is unsure gives no answer). In that sentence: the value after its
   last cue ("is", "=", "是", "est"...), its bold ``**45**``, or — when it concludes ("So ...",
   "... in all", "所以", "Итого") — its only number. Sentences end at ``.!?`` and ``。！？``.
   Never a number from earlier working.
4. Several boxes in the final statement (``\\boxed{-2} and \\boxed{1}``, or boxes joined by
   labels and words: ``\\text{ for part (a) and }``, ``y_2 =``) are returned together as a
   multi-part answer; the comparison decides whether the gold has that many parts
   (otherwise it is answer spraying and wrong).

Every scan is linear in the input (boxes are matched with one pass over the braces, the
last ``<answer>`` tag is found with ``rfind``, math spans are searched in bounded windows),
so runs of backticks, unclosed tags or ``\\boxed{`` return within the verifier's budget.
"""

from __future__ import annotations

import re

from r1envs.verifiers._math_prose import (
    SENTENCE_END,
    bold_answer,
    conclusion,
    lone_number,
    marker_spans,
)

MAX_SCAN_CHARS = 200_000
MAX_BOX_CHARS = 4000
MAX_ANSWER_CHARS = 1500
MAX_PARTS = 64

_TURN_END_RE = re.compile(
    r"<\|im_start\|>|<\|im_end\|>|<\|endoftext\|>|<\|eot_id\|>|<\|user\|>|<\|start_header_id\|>"
    r"|<\|end\|>|<\|assistant\|>|<\|system\|>|<end_of_turn>|<start_of_turn>|</s>|\[INST\]"
    r"|<\|end_of_text\|>|<\|return\|>|<\|start\|>"
    "|<\uff5cend\u2581of\u2581sentence\uff5c>|<\uff5cUser\uff5c>|<\uff5cAssistant\uff5c>"
)
_BAD_CHARS_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_BOX_RE = re.compile(r"\\(?:boxed|fbox|framebox)\s*")
# Answer phrases are found from the word "answer" (a fast literal scan), then checked
# around it: "final answer[:]", "the answer is", "answer:", "answer $...$".
_ANSWER_WORD_RE = re.compile(r"[Aa][Nn][Ss][Ww][Ee][Rr][Ss]?(?![a-zA-Z])")
_FINAL_BEFORE_RE = re.compile(r"(?i)(?<![a-z])final\s*(?:\*\*)?\s*$")
_AFTER_FINAL_RE = re.compile(r"(?i)(?:\s*\*\*)?\s*(?:(?:is|are)(?![a-z])|:|=)?\s*:?")
_AFTER_VERB_RE = re.compile(
    r"(?i)\s+(?:is|are|(?:will|should|would|must|has\s+to|have\s+to)\s+be)(?![a-z])\s*:?"
)
_AFTER_COLON_RE = re.compile(r"\s*(?:\*\*)?\s*:")
_AFTER_MATH_RE = re.compile(r"\s*(?=\$|\\\[|\\\()")


def _phrases(text: str) -> list[tuple[int, int]]:
    """``(start, end)`` of every answer phrase ("The final answer is", ``####``...), in order."""
    found: list[tuple[int, int]] = []
    for m in _ANSWER_WORD_RE.finditer(text):
        if m.start() and (text[m.start() - 1].isalpha()):
            continue
        pre = text[max(0, m.start() - 12) : m.start()]
        if _FINAL_BEFORE_RE.search(pre):
            tail = _AFTER_FINAL_RE.match(text, m.end())
            found.append((m.start(), tail.end() if tail else m.end()))
            continue
        for after in (_AFTER_VERB_RE, _AFTER_COLON_RE, _AFTER_MATH_RE):
            tail = after.match(text, m.end())
            if tail is not None:
                found.append((m.start(), tail.end()))
                break
    k = text.rfind("####")
    if k >= 0:
        found.append((k, k + 4))
    found.extend(marker_spans(text))
    return sorted(found)


_MATH_SEG_RE = re.compile(
    r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.S
)
_FILLER_RE = re.compile(
    r"(?i)^\s*(?:i\s+hope|hope\s+(?:it|this)|let\s+me\s+know|feel\s+free|if\s+you\s+have|"
    r"thank|note\b|please|this\s+is\s+(?:the\s+)?(?:correct|final)|good\s+luck|"
    r"i\s+apologi|\[note)"
)
# A last sentence that announces more work: the response stops before its answer.
_UNFINISHED_RE = re.compile(
    r"(?i)^\s*(?:let(?:'s|\s+us|\s+me)\s+(?:check|verify|try|see|consider|look|compute|now|think|re)"
    r"|next,?\s+(?:we|i)\b|now\s+(?:we|i)\s+(?:need|will|must)|wait\b)"
)
_UNSURE_RE = re.compile(
    r"(?i)\b(?:i\s+am|i'm)\s+not\s+sure|\bi\s+(?:do\s+not|don't)\s+know|\bcannot\s+(?:determine|"
    r"be\s+determined|solve)|\bno\s+way\s+to\s+(?:know|tell)"
)
_COPULA_RE = re.compile(
    r"(?i)(?<![a-z])(?:is|are|was|were|be|equals?|gives|get|becomes|yields|of|by|est|ist|sont"
    r"|sind|es|son|são|égale?s?|gleich|равн[оаы]|составляет|(?:it|that|this|which)['’]s)(?![a-z])"
    r"\s*:?|=|:|是|为|為|：|共|等于"
)
_NUMBER_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9_.])[-+]?\d[\d,]*(?:\.\d+)?(?:\s*%)?(?![A-Za-z0-9_])")
_LATIN_WORD_RE = re.compile(r"[a-zA-Z]{3,}")
_WORD2_RE = re.compile(r"(?<![A-Za-z])[A-Za-z]{2,}")
_ENV_NAME_RE = re.compile(r"\\(?:begin|end)\s*\{[^{}]*\}|\\[a-zA-Z]+")
# A line that is only a number and a word or two: "28 percent", "64 square feet".
_VALUE_LINE_RE = re.compile(r"^[-+]?\d[\d,.]*\s*(?:[A-Za-z%]+\.?\s*){1,2}$")


def _wordy(s: str) -> bool:
    """Whether ``s`` holds a word, in any script (Greek letters are math, not words)."""
    if _LATIN_WORD_RE.search(s):
        return True
    return not s.isascii() and any(c.isalpha() and ord(c) > 0x3FF for c in s)


_GAP_OK_RE = re.compile(
    r"^(?:\s|\$|\\\]|\\\[|\\\)|\\\(|,|;|\.|and|or|\\quad|\\qquad|\\text\{\s*(?:and|or)?\s*\}"
    r"|&|\\\\)*$",
    re.IGNORECASE,
)


def clean_text(text: str) -> str:
    """Drop control characters and lone surrogates; keep the last ``MAX_SCAN_CHARS``."""
    if len(text) > MAX_SCAN_CHARS:
        text = text[-MAX_SCAN_CHARS:]
    return _BAD_CHARS_RE.sub("", text)


def response_region(text: str) -> str:
    """The part of a completion a grader reads (see the module docstring)."""
    m = _TURN_END_RE.search(text)
    if m is not None and text[: m.start()].strip():
        text = text[: m.start()]
    for end_tag in ("<|end_of_reasoning|>", "</think>"):
        k = text.rfind(end_tag)
        if k >= 0 and text[k + len(end_tag) :].strip():
            return text[k + len(end_tag) :]
    return text


_BRACE_RE = re.compile(r"(?<!\\)[{}]")
_BOX_WORD_RE = re.compile(r"[^\s$]+")


def _brace_ends(text: str) -> dict[int, int]:
    """The index of the matching ``}`` for every ``{`` that has one, in one pass."""
    ends: dict[int, int] = {}
    stack: list[int] = []
    for m in _BRACE_RE.finditer(text):
        if m.group(0) == "{":
            stack.append(m.start())
        elif stack:
            ends[stack.pop()] = m.start()
    return ends


def boxes(text: str) -> list[tuple[int, int, str]]:
    """Every ``\\boxed{...}`` as ``(start, end, content)``, in order (linear time)."""
    out: list[tuple[int, int, str]] = []
    ends: dict[int, int] | None = None
    for m in _BOX_RE.finditer(text):
        if out and m.start() < out[-1][1]:
            continue  # a box inside a box
        j = m.end()
        if j < len(text) and text[j] == "{":
            if ends is None:
                ends = _brace_ends(text)
            k = ends.get(j)
            if k is not None and k - j < MAX_BOX_CHARS:
                out.append((m.start(), k + 1, text[j + 1 : k]))
        elif j < len(text):
            t = _BOX_WORD_RE.match(text, j)
            if t and m.group(0).endswith(" "):
                out.append((m.start(), t.end(), t.group(0)))
    return out


def last_answer_tag(text: str) -> tuple[int, str] | None:
    """``(start, content)`` of the last ``<answer>...</answer>`` (linear time)."""
    close = text.rfind("</answer>")
    if close < 0:
        return None
    prev = text.rfind("</answer>", 0, close)
    start = text.find("<answer>", prev + 9 if prev >= 0 else 0, close)
    if start < 0:
        return None
    return start, text[start + 8 : close]


# Between two boxed parts: a label of the next part ("y_2 ="), a part name ("(a)"), words.
_GAP_LABEL_RE = re.compile(
    r"[A-Za-z](?:_\{?\w{1,4}\}?)?\s*=|\(\s*[a-z]\s*\)|\\text\s*\{|\\q?quad|[{}$]|\\[()\[\]]"
)
_CONJ_RE = re.compile(r"(?i)(?<![a-z])(?:and|or|und|oder|et|ou|y|e|и|или)(?![a-z])|和|及|与|或")


def joins_parts(gap: str) -> bool:
    """Whether the text between two boxes joins parts of one answer.

    Punctuation and "and"/"or" do; so do a few words with a conjunction
    (``\\text{ for part (a) and }``, "papers and") and labels (``\\) and \\( y_2 =``),
    but never a number.
    """
    if len(gap) > 60:
        return False
    if _GAP_OK_RE.match(gap):
        return True
    rest = _GAP_LABEL_RE.sub(" ", gap)
    return not re.search(r"\d|[=<>+^]", rest) and bool(_CONJ_RE.search(rest))


def _last_box_group(text: str, bx: list[tuple[int, int, str]]) -> list[str]:
    group = [bx[-1]]
    for prev in reversed(bx[-MAX_PARTS:-1]):
        gap = text[prev[1] : group[0][0]]
        if not joins_parts(gap):
            break
        group.insert(0, prev)
    return [g[2].strip() for g in group]


def _sentence(text: str) -> str:
    """``text`` up to the end of its first sentence (math spans are never split)."""
    text = text[: 2 * MAX_ANSWER_CHARS]  # bounds every math-span scan below
    out, i, n = [], 0, min(len(text), MAX_ANSWER_CHARS)
    while i < n:
        m = _MATH_SEG_RE.match(text, i)
        if m is not None:
            out.append(m.group(0))
            i = m.end()
            continue
        c = text[i]
        if c == "\n" and "".join(out).strip():
            break
        if c in SENTENCE_END:
            break
        if c in ".!?" and (i + 1 >= len(text) or text[i + 1].isspace()):
            prev = text[i - 1] if i else ""
            if not (c == "!" and prev.isdigit()):
                break
        out.append(c)
        i += 1
    return "".join(out)


def _math_spans(s: str) -> list[tuple[int, int, str]]:
    return [
        (m.start(), m.end(), next(g for g in m.groups() if g is not None))
        for m in _MATH_SEG_RE.finditer(s)
    ]


_VALUE_AFTER_RE = re.compile(r"[\d$\\]|(?<![A-Za-z])\(?[A-H]\)?(?![A-Za-z])")
# A trailing clause that qualifies the answer: "24, attained when x = 2", "3 at x = 1".
_CLAUSE_RE = re.compile(
    r"(?i)(?<=\S)\s*,?\s+(?:when|whenever|where|if|since|because|attained|achieved|"
    r"occurring|at|for|so\s+that)(?![a-z])"
)
_LEAD_FILLER_RE = re.compile(
    r"(?i)^(?:\s*(?:therefore|thus|hence|then|so|about|approximately|roughly|exactly|just|"
    r"only|equal\s+to|simply|now|finally)(?![a-z]),?)+\s*"
)
_TAIL_CUT_RE = re.compile(
    r"(?i),\s*(?:i\.e\.?|e\.g\.?)|,\s+(?!and\b|or\b)[a-z]{2,}|\s+\((?=[a-z]{2,})"
)
_NUMBER_OR_FRACTION_RE = re.compile(
    r"(?<![A-Za-z0-9_.])[-+]?\d[\d,]*(?:\.\d+)?(?:/\d+)?(?:\s*%)?(?![A-Za-z0-9_])"
)


def _last_cue(s: str, spans: list[tuple[int, int, str]]) -> int:
    """End of the last cue ("is", "=", ":"...) outside math that a value follows, or 0."""
    cut = 0
    for m in _COPULA_RE.finditer(s):
        if any(a <= m.start() < b for a, b, _ in spans):
            continue
        if _VALUE_AFTER_RE.search(s, m.end()):
            cut = m.end()
    return cut


# Words after "the answer is" that judge or point rather than answer.
_NOT_AN_ANSWER_RE = re.compile(
    r"(?i)^(?:not\b|correct|incorrect|right|wrong|above|below|as\s+follows|given|shown|clear"
    r"|unclear|this|that|these|here|there|simple|obvious|the\s+same|same|unknown|confirmed"
    r"|verified|indeed|still|also|then|now|:)"
)


def statement_answer(s: str, *, need_cue: bool = False) -> str | None:
    """The answer a statement gives: ``"... is $\\frac12$."`` -> ``\\frac12``.

    With ``need_cue`` (a final sentence without a marker), a number in plain text counts
    only after a cue such as "is", "=", "get", "by".
    """
    s = s.strip().strip("*").strip()
    if not s:
        return None
    m = _CLAUSE_RE.search(s)
    if m is not None and not any(a <= m.start() < b for a, b, _ in _math_spans(s)):
        head = s[: m.start()]
        if _last_cue(head, _math_spans(head)) or not need_cue:
            s = head
    spans = _math_spans(s)
    cut = _last_cue(s, spans)
    tail = s[cut:] if cut else s
    if cut:
        spans = _math_spans(tail)
    if spans:
        first, last = spans[0], spans[-1]
        between = tail[first[1] : last[0]] if len(spans) > 1 else ""
        lead = tail[: first[0]]
        if len(spans) > 1 and _GAP_OK_RE.match(re.sub(r"\$[^$]*\$", "", between) or " "):
            return ", ".join(sp[2] for sp in spans)
        if re.search(r"\d", lead) and not lead.strip().endswith(("is", "are")):
            nums = _NUMBER_TOKEN_RE.findall(lead)
            if len(nums) == 1 and not re.search(r"\d", tail[first[1] :]):
                return nums[0]
        return first[2]
    if need_cue and not cut:
        return None
    plain = _LEAD_FILLER_RE.sub("", tail.strip().rstrip("."))
    plain = _TAIL_CUT_RE.split(plain, 1)[0].strip()
    if len(plain) <= 40 and not _wordy(re.sub(r"\\[a-zA-Z]+", "", plain)):
        return plain or None
    nums = _NUMBER_OR_FRACTION_RE.findall(plain)
    if len(nums) == 1:
        return nums[0]
    if len(nums) > 1 and re.match(r"^\s*[-+]?\d", plain):
        lead = _NUMBER_OR_FRACTION_RE.match(plain.strip())
        rest = plain.strip()[lead.end() :] if lead else ""
        if lead and not re.match(r"\s*(?:,|and\b|or\b|to\b|-)", rest):
            return lead.group(0)  # "73 after checking 5 cases"
        return plain if len(plain) <= 80 else None  # "12, 13 or 14": several answers
    if not nums and not need_cue and len(plain) <= 40 and len(plain.split()) <= 3:
        if not _NOT_AN_ANSWER_RE.match(plain):
            return plain  # a word answer after an answer phrase: "the answer is Paris"
    return plain if len(plain) <= 40 and nums else None


_CHOICE_PHRASE_RE = re.compile(
    r"(?i:answer|option|choice)\s*(?i:is|:)?\s*(?:\*\*)?\s*\(?([A-H])\)?(?![A-Za-z])"
)


def choice_in_text(text: str) -> str | None:
    """The option letter of the last "answer is (B)" / "option C" in the response."""
    region = response_region(clean_text(text))
    found = None
    for m in _CHOICE_PHRASE_RE.finditer(region[-4000:]):
        found = m.group(1).upper()
    return found


_SENTENCE_SPLIT_RE = re.compile(r"(?<=[.!?])\s+(?![a-z])|(?<=[\u3002\uff01\uff1f])\s*|\n+")


def _final_sentence(text: str) -> str | None:
    """The answer stated in the last sentence that states one (non-strict mode)."""
    tail = _DISPLAY_RE.sub(lambda m: m.group(0).replace("\n", " "), text.strip()[-4000:])
    for sent in reversed(_SENTENCE_SPLIT_RE.split(tail)):
        if not sent.strip() or _FILLER_RE.match(sent):
            continue
        if _UNFINISHED_RE.match(sent) or _UNSURE_RE.search(sent[:300]):
            return None
        if not re.search(r"[\d$=]|\\[a-zA-Z]", sent):
            continue
        bare = _BARE_WRAP_RE.sub("", sent).strip().rstrip(".").strip()
        plain = _ENV_NAME_RE.sub("", bare)
        if bare and len(bare) <= 60 and not _wordy(plain) and len(_WORD2_RE.findall(plain)) < 2:
            return bare  # a final line that is only the answer: "**73**", "\\[ 73 \\]"
        if _VALUE_LINE_RE.match(bare):
            return bare  # a final line that is a value and its unit: "64 square feet"
        return sentence_value(sent)
    return None


def sentence_value(sent: str) -> str | None:
    """The value a final sentence without a marker states (see :mod:`._math_prose`)."""
    s = _sentence(conclusion(sent) + " ")
    bold = bold_answer(s)
    if bold is not None:
        return bold
    ans = statement_answer(s, need_cue=True)
    return ans if ans is not None else lone_number(s)


_DISPLAY_RE = re.compile(r"\\\[.*?\\\]|\$\$.*?\$\$", re.S)
_BARE_WRAP_RE = re.compile(r"\*\*|\$|\\\[|\\\]|\\\(|\\\)")


def extract_parts(text: str, *, strict: bool = False) -> list[str] | None:
    """The final answer of ``text`` as a list of parts (usually one), or ``None``."""
    region = response_region(clean_text(text))
    candidates: list[tuple[int, list[str] | None]] = []
    bx = boxes(region)
    if bx:
        candidates.append((bx[-1][0], _last_box_group(region, bx)))
    tag = last_answer_tag(region)
    if tag is not None:
        inner = tag[1]
        inner_bx = boxes(inner)
        if inner_bx:
            parts: list[str] | None = _last_box_group(inner, inner_bx)
        else:
            parts = extract_parts(inner, strict=True) or _tag_answer(inner)
        candidates.append((tag[0] + (len(region) if inner_bx else 0), parts))
    phrases = _phrases(region)
    for start, end in reversed(phrases[-8:]):  # the last phrase that states a value
        if bx and bx[-1][0] > start:
            break
        ans = statement_answer(_sentence(region[end:]))
        if ans:
            candidates.append((start, [ans]))
            break
    candidates = [c for c in candidates if c[1]]
    if candidates:
        return _tidy(max(candidates, key=lambda c: c[0])[1])
    if strict:
        return None
    if phrases and _wordy(region[phrases[-1][1] : phrases[-1][1] + 80]):
        region = region[phrases[-1][0] :]  # "the answer is Paris": nothing before it counts
    short = region.strip()
    if len(short) <= 200 and "\n\n" not in short:
        words = len(re.findall(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}", short))
        if not short.isascii() and _wordy(short):
            words += 4  # prose in another script
        outside = _MATH_SEG_RE.sub(" ", short)
        if (
            words <= 3
            and not re.search(r"(?i)(?<![a-z])(?:is|are|was|equals?)(?![a-z])", short)
            and (outside == short or not re.search(r"[A-Za-z]{2,}", outside))
        ):
            return _tidy([short])  # a bare answer: "f(x) = 2x", "1:2", "4 4/9"
        if words > 3:
            ans = _final_sentence(short)
        else:
            ans = statement_answer(short) or short  # a bare answer: "odd", a matrix
        return _tidy([ans]) if ans else None
    ans = _final_sentence(region)
    return _tidy([ans]) if ans else None


def _tidy(parts: list[str] | None) -> list[str] | None:
    """Parts without surrounding whitespace or markdown bold."""
    if parts is None:
        return None
    out = []
    for p in parts:
        p = p.strip()
        if p.startswith("**") or p.endswith("**"):
            p = p.replace("**", "").strip()
        out.append(p)
    return out if any(out) else None


def _tag_answer(inner: str) -> list[str] | None:
    s = inner.strip()
    if not s:
        return None
    if len(s) <= 200 and not re.search(r"[A-Za-z]{3,}", re.sub(r"\\[a-zA-Z]+(\{[^{}]*\})?", "", s)):
        return [s]
    ans = _final_sentence(s) or statement_answer(_sentence(s))
    return [ans] if ans else None
