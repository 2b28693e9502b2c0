from __future__ import annotations

import pytest

from r1envs.rewards import (
    language_consistency,
    overlong_penalty,
    repetition_penalty,
    words_by_script,
)


def test_language_consistency_english_and_chinese():
    assert language_consistency("First add the numbers, then check.", "en") == 1.0
    assert language_consistency("首先把数字相加然后检查", "zh") == 1.0
    mixed = "First 我们 add"  # 2 English words, 2 Chinese words
    assert language_consistency(mixed, "en") == pytest.approx(0.5)
    assert language_consistency(mixed, "zh") == pytest.approx(0.5)


def test_language_consistency_ignores_math_and_latex():
    assert language_consistency("12 + 34 = 46, \\frac{1}{2} \\cdot 3", "zh") == 1.0
    assert language_consistency("因为 \\frac{1}{2} + x = 3 所以", "zh") == 1.0
    assert language_consistency("因为 x 所以 so", "zh") == pytest.approx(0.8)
    assert words_by_script("\\sqrt{2} hello 你好") == {"latin": 1, "han": 2}


def test_language_consistency_empty():
    assert language_consistency(None) == 0.0
    assert language_consistency("   ") == 0.0
    with pytest.raises(ValueError, match="language"):
        language_consistency("x", "klingon")


@pytest.mark.parametrize(
    ("length", "expected"), [(0, 0.0), (80, 0.0), (90, -0.5), (100, -1.0), (500, -1.0)]
)
def test_overlong_penalty(length, expected):
    assert overlong_penalty(length, max_length=100, buffer=20) == pytest.approx(expected)


def test_overlong_penalty_validates():
    with pytest.raises(ValueError, match="buffer"):
        overlong_penalty(1, 100, 0)


def test_repetition_penalty():
    assert repetition_penalty("a b c d e f g") == 0.0
    assert repetition_penalty("go go go go go go go go go go", ngram=2) < -0.8
    assert repetition_penalty("short") == 0.0
