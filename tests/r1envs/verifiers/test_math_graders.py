"""Agreement with a careful grader on cases collected from public graders and their issues.

``data/math_grader_cases.jsonl`` holds (gold, response) pairs taken from other graders'
test suites and issue threads (each line names its ``source``), relabelled by the
careful-grader rule of :mod:`r1envs.verifiers.math` where the source's own expectation
follows a limitation of that grader, plus hand-written cases of the same families.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1envs.verifiers.math import check, decimal_comma

CASES = [
    json.loads(line)
    for line in (Path(__file__).parent / "data" / "math_grader_cases.jsonl")
    .read_text(encoding="utf-8")
    .splitlines()
    if line.strip()
]

# Known disagreements (documented weaknesses): prose with a trailing stray "$ a.." around a
# decimal comma; a gold of two over-escaped boxes joined by "++++++".
KNOWN_MISSES = 2


def test_corpus_is_real_and_labelled():
    assert len(CASES) >= 350
    assert all({"gold", "response", "label", "source"} <= set(c) for c in CASES)
    assert len({c["source"].split("::")[0] for c in CASES}) >= 10
    positives = sum(c["label"] for c in CASES)
    assert 0.5 < positives / len(CASES) < 0.9


def test_agreement_with_the_careful_grader():
    wrong = []
    for c in CASES:
        r = check(c["response"], c["gold"])
        assert r.error is None, (c, r)
        if r.correct != c["label"]:
            wrong.append((c["source"], c["gold"], r.extracted, c["label"]))
    assert len(wrong) <= KNOWN_MISSES, wrong


FILLER = "First, 12 + 30 = 42 and 3 * 1 = 3, so the sum is 45 after adding.\n"


@pytest.mark.parametrize(
    ("gold", "response", "label"),
    [
        # the final sentence, in any language, without a marker
        ("45", FILLER + "So she pays 45 dollars in all.", True),
        ("44", FILLER + "So she pays 45 dollars in all.", False),
        ("45", FILLER + "所以一共需要 45 元。", True),
        ("45", FILLER + "Donc il lui reste 45 €.", True),
        ("45", FILLER + "Итого 45 рублей.", True),
        ("45", FILLER + "Ответ: 45.", True),
        ("45", FILLER + "الإجابة: 45", True),
        ("45", FILLER + "The total is **45**.", True),
        (
            "45",
            FILLER + "So it is 45.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n4",
            True,
        ),
        # never a number from earlier working
        ("45", FILLER + "So she pays 44 dollars in all.", False),
        ("45", FILLER + "Let me check the case n = 45 next.", False),
        ("45", FILLER + "I am not sure what the question asks.", False),
    ],
)
def test_final_sentence_in_any_language(gold, response, label):
    assert check(response, gold).correct is label


def test_strict_mode_still_requires_a_marker():
    assert not check(FILLER + "So she pays 45 dollars in all.", "45", strict=True).correct
    assert not check(FILLER + "所以一共需要 45 元。", "45", strict=True).correct
    assert check(FILLER + "答案：45", "45", strict=True).correct


@pytest.mark.parametrize(
    ("gold", "response", "label"),
    [
        ("C", FILLER + "It can't be A, so it's C.", True),
        ("A", FILLER + "It can't be A, so it's C.", False),
        ("C", FILLER + "C。不是 A", True),
        ("A", FILLER + "C。不是 A", False),
        ("C", FILLER + "(C)", True),
        ("C", "$\\boxed{\\mathcal{C}}$", True),
        ("C", "$\\boxed{\\textbf{(C)}}$", True),
        ("(C) Paris", FILLER + "The answer is (C).", True),
        ("(C) Paris", FILLER + "The answer is Paris.", True),
        ("(C) Paris", FILLER + "The answer is Rome.", False),
    ],
)
def test_choice_letters_in_prose(gold, response, label):
    assert check(response, gold).correct is label


WORKING = "Option A gives 12 and option B gives 15, which is too big.\n"


@pytest.mark.parametrize(
    ("ending", "letter"),
    [
        ("**C**", "C"),
        ("C is correct.", "C"),
        ("Not A, but C.", "C"),
        ("B is wrong, so C.", "C"),
        ("因此选 C。", "C"),
        ("The answer is not C; it is B.", "B"),
        ("So it must be B.", "B"),
    ],
)
def test_the_letter_comes_from_the_end_not_the_working(ending, letter):
    assert check(WORKING + ending, "C").correct is (letter == "C")
    assert check(WORKING + ending, "B").correct is (letter == "B")


@pytest.mark.parametrize(
    ("gold", "answer", "label"),
    [
        ("AB = 5", "5", True),
        ("|AB| = 1", "1", True),
        ("V_1 : V_2 = 3 : 4", "3:4", True),
        ("\\frac{NO}{BO} = \\frac{1}{\\sqrt{6}}", "\\frac{1}{\\sqrt{6}}", True),
        ("x + y = 2", "2", False),
        ("x = 2, y = 3", "(2, 3)", True),
        ("p=2, q=3; p=3, q=2", "(2,3), (3,2)", True),
        ("p=2, q=3; p=3, q=2", "(2,3), (3,4)", False),
        ("(2,3), (3,2)", "p=2, q=3 \\text{ or } p=3, q=2", True),
        ("3:4", "V_1 : V_2 = 3 : 4", True),
        ("7", "m\\angle ABC = 7", True),
        ("0 < x < 1", "(0, 1)", True),
        ("0 < f(x) < 1", "(0, 1)", True),
        ("f(x) = 1 or f(x) = -1", "f(x)=1 \\text{ and } f(x)=-1", True),
        ("(7, 11) or (11, 7)", "(11,7),(7,11)", True),
        ("(7,11)or(11,7)", "(11,7),(7,11)", True),
        ("(1,2),(2,1)", "(1,2),(2,1),(1,2)", True),
        ("(1,2),(2,1)", "(1,2),(1,2)", False),
    ],
)
def test_labelled_answers_on_either_side(gold, answer, label):
    assert check(f"So $\\boxed{{{answer}}}$.", gold).correct is label


def test_gold_of_several_boxes_against_one_box():
    assert check("$\\boxed{-2, 1}$", "\\(\\boxed{1}\\) and \\(\\boxed{-2}\\).").correct
    assert check("$\\boxed{1, 2}$", "\\boxed{1} papers and \\boxed{2} bins").correct
    assert not check("$\\boxed{1, 2}$", "\\boxed{1} no no no no no \\boxed{2}").correct
    both = "$y_1 = \\boxed{-2(x-1)^2+5}$ and $y_2 = \\boxed{3(x+2)^2-2}$"
    assert check(both, "y_1 = -2x^2+4x+3, y_2 = 3x^2+12x+10").correct


@pytest.mark.parametrize(
    ("text", "value"),
    [("3,14", "3.14"), ("1000,99", "1000.99"), ("0,111", "0.111"), ("-2,5", "-2.5")],
)
def test_decimal_comma_where_it_cannot_separate_thousands(text, value):
    assert decimal_comma(text) == value
    assert check(f"$\\boxed{{{text}}}$", value).correct
    assert check(f"$\\boxed{{{value}}}$", text).correct


def test_thousands_separator_stays_a_separator():
    assert decimal_comma("1,000") is None
    assert check("$\\boxed{1,000}$", "1000").correct
    assert not check("$\\boxed{1,000}$", "1.0").correct


@pytest.mark.parametrize(
    ("gold", "answer", "label"),
    [
        ("0.5", "0.460", False),
        ("0.460", "0.5", False),
        ("7.78", "\\frac{70}{9}", False),
        ("\\frac{70}{9}", "7.78", False),
        ("7.7778", "\\frac{70}{9}", True),
        ("\\frac{70}{9}", "7.7778", True),
        ("3.1416", "\\pi", True),
        ("\\pi", "3.1416", True),
        ("\\pi", "3.14", False),
        ("3.14", "\\pi", False),
        ("4.7", "\\frac{14}{3} \\approx 4.7", True),
    ],
)
def test_rounded_decimals_are_judged_the_same_both_ways(gold, answer, label):
    assert check(f"$\\boxed{{{answer}}}$", gold).correct is label
