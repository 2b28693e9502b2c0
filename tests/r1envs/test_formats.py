from __future__ import annotations

import pytest

from r1envs import formats
from r1envs.formats import REASONING_END, REASONING_START, format_reward, parse


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<think> a </think> <answer> 4 </answer>", 1.0),
        ("<think>a</think><answer>4</answer>", 1.0),
        ("\n<think>\nstep\n</think>\n<answer>\n4\n</answer>\n", 1.0),
        ("<think> a </think> <answer> </answer>", 0.0),  # empty answer
        ("<think> a </think>", 0.0),  # no answer block
        ("<answer>4</answer>", 0.0),  # no think block
        ("<think> a </think> <think> b </think> <answer>4</answer>", 0.0),
        ("<think> a </think> <answer>4</answer> <answer>5</answer>", 0.0),
        ("<think> a </think> text <answer>4</answer>", 0.0),  # stray text between blocks
        ("<think> a </think> <answer>4</answer> trailing", 0.0),
        ("<answer>4</answer> <think> a </think>", 0.0),  # wrong order
        ("", 0.0),
    ],
)
def test_r1_zero_format(text, expected):
    assert format_reward(text, "r1-zero") == expected


def test_prefilled_think_is_detected():
    # The chat template (or prompt) ends with "<think>": the completion starts inside it.
    completion = " reasoning here </think> <answer>4</answer>"
    assert format_reward(completion, "r1-zero") == 1.0
    assert format_reward(completion, "r1-zero", think_prefill=True) == 1.0
    assert format_reward(completion, "r1-zero", think_prefill=False) == 0.0
    # With prefill, a completion that repeats the opening tag is still one block.
    assert format_reward("<think> r </think> <answer>4</answer>", "r1-zero", True) == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{REASONING_START} 2+2=4 {REASONING_END} The answer is \\boxed{{4}}.", 1.0),
        (f"{REASONING_START} 2+2=4 {REASONING_END}   ", 0.0),  # empty summary
        (f"{REASONING_START}  {REASONING_END} 4", 0.0),  # empty reasoning
        (f"intro {REASONING_START} r {REASONING_END} 4", 0.0),  # text before reasoning
        (f"{REASONING_START} r {REASONING_END} {REASONING_END} 4", 0.0),
        ("The answer is 4", 0.0),
    ],
)
def test_r1_format(text, expected):
    assert format_reward(text, "r1") == expected


def test_parse_returns_sections():
    p = parse(f"{REASONING_START} why {REASONING_END} so 4", "r1")
    assert (p.reasoning, p.answer) == (" why ", "so 4")
    p = parse("<think> why </think> <answer> 4 </answer>", "r1-zero")
    assert (p.reasoning, p.answer, p.well_formed) == (" why ", " 4 ", True)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("x <answer> 12 </answer>", "12"),
        ("we get \\boxed{\\frac{1}{2}} done", "\\frac{1}{2}"),
        ("\\boxed{1} then \\boxed{2}", "2"),
        ("<think>\\boxed{3}</think> The answer is 7\n", "The answer is 7"),
        ("line one\n\nlast line  \n", "last line"),
        ("", None),
        ("\\boxed{unclosed", "\\boxed{unclosed"),
    ],
)
def test_final_answer_text(text, expected):
    assert formats.final_answer_text(text) == expected


def test_last_boxed_nested():
    assert formats.last_boxed("\\boxed{\\frac{a}{b^{2}}}") == "\\frac{a}{b^{2}}"
    assert formats.last_boxed("\\fbox{7}") == "7"
    assert formats.last_boxed("{" * 10000) is None


def test_templates():
    assert formats.default_template("r1-zero").endswith("User: {question}. Assistant:")
    assert REASONING_START in formats.default_template("r1")
    with pytest.raises(ValueError, match="output_format"):
        formats.default_template("chatml")


def _reference_r1_zero(text: str) -> bool:
    """The format as a pattern (backtracking; only for short texts)."""
    import re

    counts = [text.count(t) for t in ("<think>", "</think>", "<answer>", "</answer>")]
    shape = re.fullmatch(r"\s*<think>(.*?)</think>\s*<answer>(.*?)</answer>\s*", text, re.DOTALL)
    return counts == [1, 1, 1, 1] and shape is not None and bool(shape.group(2).strip())


def test_r1_zero_format_matches_its_pattern_on_every_short_arrangement():
    import itertools

    pieces = ["<think>", "</think>", "<answer>", "</answer>", " ", "\n", "x"]
    checked = 0
    for n in range(1, 7):
        for combo in itertools.product(pieces, repeat=n):
            text = "".join(combo)
            well_formed = format_reward(text, "r1-zero", think_prefill=False) == 1.0
            assert well_formed == _reference_r1_zero(text), text
            checked += 1
    assert checked > 137_000


ADVERSARIAL = {
    "unclosed answers": "<answer>" * 25_000,
    "unclosed boxed": "\\boxed{" * 25_000,
    "backticks": "`" * 200_000,
    "unclosed thinks": "<think>" * 25_000,
    "closing thinks": "</think>" * 25_000,
    "open and close runs": "<think></think><answer>" * 25_000,
    "reasoning delimiters": REASONING_START * 25_000,
    "near-miss tags": " " * 100_000
    + "<think>"
    + "</thin" * 30_000
    + "</think><answer>"
    + "</answe" * 30_000
    + "</answer>"
    + " " * 100_000
    + "z",
}


@pytest.mark.timeout(30)  # a hang guard: each input takes milliseconds in linear time
@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_pathological_completions_parse(name):
    text = ADVERSARIAL[name]
    for output_format in ("r1-zero", "r1"):
        for prefill in (None, True, False):
            parsed = parse(text, output_format, prefill)
            assert not parsed.well_formed
            assert format_reward(text, output_format, prefill) == 0.0
    assert formats.last_boxed(text) is None
    expected = {"open and close runs": "<answer>", "near-miss tags": "</answe" * 30_000}
    assert formats.final_answer_text(text) == expected.get(name, text.strip())


@pytest.mark.timeout(30)
def test_long_well_formed_completion_is_recognised():
    text = "<think>" + "step. " * 100_000 + "</think>\n" + " " * 50_000 + "<answer>4</answer>\n"
    assert format_reward(text, "r1-zero") == 1.0
    assert parse(text, "r1-zero").answer == "4"
    assert format_reward(text + "x", "r1-zero") == 0.0
    boxed = "\\boxed{" * 25_000 + "7" + "}" * 25_000
    assert formats.last_boxed(boxed) == "7"
    assert formats.final_answer_text("<think>x</think>" + boxed) == "7"
