"""Rule-based reward components besides accuracy and format.

* ``language_consistency`` — DeepSeek-R1's language-consistency reward: the share of the
  chain of thought's words that are in the target language. Words are runs of letters of
  one script; each CJK ideograph (and kana / hangul syllable) counts as one word, since
  those scripts do not separate words with spaces. Numbers, LaTeX commands, symbols and
  single letters of alphabetic scripts (variables such as ``x``) are not words.
* ``overlong_penalty`` — DAPO's soft overlong punishment: 0 up to ``max_length - buffer``,
  then linearly down to -1 at ``max_length`` (and -1 beyond).
* ``repetition_penalty`` — the share of repeated n-grams, negated (0 for no repetition,
  towards -1 for a completion that loops).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

LANGUAGES: dict[str, str] = {
    "en": "Latin-script words (English and other Latin-alphabet text)",
    "zh": "Chinese: CJK ideographs",
    "ja": "Japanese: kana and CJK ideographs",
    "ko": "Korean: hangul",
    "ru": "Russian: Cyrillic-script words",
}

# A "word": a run of letters, or one CJK/kana/hangul character. LaTeX commands are removed
# first so `\frac` is not an English word.
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def _script(ch: str) -> str:
    code = ord(ch)
    if 0x4E00 <= code <= 0x9FFF or 0x3400 <= code <= 0x4DBF or 0x20000 <= code <= 0x2FA1F:
        return "han"
    if 0x3040 <= code <= 0x30FF:
        return "kana"
    if 0xAC00 <= code <= 0xD7AF or 0x1100 <= code <= 0x11FF:
        return "hangul"
    if 0x0400 <= code <= 0x04FF:
        return "cyrillic"
    if code < 0x250 or 0x1E00 <= code <= 0x1EFF:
        return "latin"
    try:
        return unicodedata.name(ch).split(" ")[0].lower()
    except ValueError:
        return "other"


_TARGET_SCRIPTS: dict[str, frozenset[str]] = {
    "en": frozenset({"latin"}),
    "zh": frozenset({"han"}),
    "ja": frozenset({"kana", "han"}),
    "ko": frozenset({"hangul"}),
    "ru": frozenset({"cyrillic"}),
}
_SPLIT_SCRIPTS = frozenset({"han", "kana", "hangul"})


def check_language(language: str) -> str:
    """Validate a target language code.

    Raises:
        ValueError: if ``language`` is not one of :data:`LANGUAGES`.
    """
    if language not in _TARGET_SCRIPTS:
        raise ValueError(f"language must be one of {sorted(LANGUAGES)}, language: {language!r}")
    return language


def words_by_script(text: str) -> dict[str, int]:
    """Count the words of ``text`` per script (see the module docstring for what a word is)."""
    counts: dict[str, int] = {}
    for run in _WORD.findall(_LATEX_COMMAND.sub(" ", text)):
        current, length = None, 0
        for ch in run:
            script = _script(ch)
            if script in _SPLIT_SCRIPTS:
                if current is not None and length > 1:
                    counts[current] = counts.get(current, 0) + 1
                current, length = None, 0
                counts[script] = counts.get(script, 0) + 1
            elif script != current:
                if current is not None and length > 1:
                    counts[current] = counts.get(current, 0) + 1
                current, length = script, 0
            length += 1
        if current is not None and length > 1:
            counts[current] = counts.get(current, 0) + 1
    return counts


def language_consistency(text: str | None, language: str = "en") -> float:
    """Share of the words of ``text`` that are in ``language`` (0..1).

    Text with no words at all (pure arithmetic) is consistent: 1.0. ``None`` or blank text
    (no chain of thought) scores 0.0.
    """
    target = _TARGET_SCRIPTS[check_language(language)]
    if text is None or not text.strip():
        return 0.0
    counts = words_by_script(text)
    total = sum(counts.values())
    if total == 0:
        return 1.0
    return sum(n for script, n in counts.items() if script in target) / total


def overlong_penalty(length: int, max_length: int, buffer: int) -> float:
    """DAPO soft overlong punishment for a completion of ``length`` units (0 .. -1)."""
    if buffer <= 0 or max_length <= 0:
        raise ValueError(
            f"overlong penalty needs max_length > 0 and buffer > 0, "
            f"max_length: {max_length}, buffer: {buffer}"
        )
    start = max_length - buffer
    if length <= start:
        return 0.0
    if length >= max_length:
        return -1.0
    return -(length - start) / buffer


def repetition_penalty(text: str, ngram: int = 3, max_words: int = 20_000) -> float:
    """Negated share of repeated word n-grams in ``text`` (0 = no repetition, -1 = all repeats)."""
    words = text.split()[:max_words]
    if len(words) < ngram + 1:
        return 0.0
    grams = [tuple(words[i : i + ngram]) for i in range(len(words) - ngram + 1)]
    return -(1.0 - len(set(grams)) / len(grams))


LengthFn = Callable[[str], int]


def char_length(text: str) -> int:
    """Length in characters (the default unit of the overlong penalty)."""
    return len(text)
