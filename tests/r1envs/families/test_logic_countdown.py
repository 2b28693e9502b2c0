"""Countdown: rule-checked expressions, difficulty kwargs, pinned-problem validation."""

from __future__ import annotations

import random
from fractions import Fraction

import gymnasium as gym
import pytest

import r1envs  # noqa: F401  (registers the ids)
from r1envs.families.logic.countdown import CountdownTask, evaluate, solve

PINNED = {"numbers": [2, 3, 4, 7], "target": 10}


def _answers(env, texts):
    out = []
    for text in texts:
        env.reset(options={"problem": PINNED})
        out.append(env.step(f"<think>x</think> <answer>{text}</answer>")[4]["correct"])
    return out


def test_any_valid_expression_is_accepted():
    env = gym.make("r1/Countdown-v0")
    assert _answers(env, ["2*3+4", "4 + 3 * 2", "7 + 3", "(7 - 3 / 3)"]) == [
        True,
        True,
        True,
        False,
    ]
    assert _answers(env, ["(7 - 4) * 2 + 4 / 1"]) == [False]  # 1 is not given
    forms = [
        "2 × 3 + 4",
        "2 \\times 3 + 4 = 10",
        "10 = 4 + 2 \\cdot 3",
        "$(7 + 3)$",
        "7 − 3 + 4 + 2",
        "The answer is 7 + 3.",
        "$\\boxed{7 + 3}$",
        "\\frac{4 \\times 7 + 2}{3}",
    ]
    assert _answers(env, forms) == [True] * 8


def test_boxed_and_summary_answers():
    env = gym.make("r1/Countdown-v0", output_format="r1")
    env.reset(options={"problem": PINNED})
    text = (
        f"{r1envs.formats.REASONING_START} try {r1envs.formats.REASONING_END} So \\boxed{{(7+3)}}"
    )
    assert env.step(text)[4]["correct"] is True
    env.reset(options={"problem": PINNED})
    text = f"{r1envs.formats.REASONING_START} 2*3+4 {r1envs.formats.REASONING_END}\nI give up."
    assert env.step(text)[4]["correct"] is False


@pytest.mark.parametrize(
    "text",
    [
        "10",  # a number that is not given
        "2*5",
        "7 + 3 + 0",
        "2**3+2",
        "-2 + 3*4",  # unary minus
        "(2+3)*2",  # 2 used twice
        "4 / (2 - 2) + 10",
        "2.5 * 4",
        "2*3+4 = 11",
        "2*3+4 or 7+3",
        "7+3 = 10 = 10",
        "int(7)+3",
        "7 // 1 + 3",
        "",
    ],
)
def test_invalid_answers_are_rejected(text):
    env = gym.make("r1/Countdown-v0")
    assert _answers(env, [text]) == [False]


def test_exact_arithmetic():
    assert evaluate("(7 - 3 / 4) * 4", [7, 3, 4, 4]) == 25
    assert evaluate("7 / 2", [7, 2]) == Fraction(7, 2)
    assert evaluate("7 7", [7, 7]) is None
    assert evaluate("7 + 7", [7]) is None
    assert solve([2, 3, 4, 7], 10) is not None
    assert solve([1, 1], 100) is None


def test_difficulty_kwargs_change_problems():
    easy = CountdownTask().sample(random.Random(0))
    hard = CountdownTask(
        num_numbers=6, min_value=10, max_value=100, min_target=500, max_target=999
    ).sample(random.Random(0))
    assert len(easy.numbers) == 4 and len(hard.numbers) == 6
    assert all(10 <= n <= 100 for n in hard.numbers) and 500 <= hard.target <= 999
    env = gym.make("r1/Countdown-v0", num_numbers=3, max_value=9)
    _, info = env.reset(seed=0)
    assert len(info["problem"]["numbers"]) == 3 and max(info["problem"]["numbers"]) <= 9


def test_generated_targets_are_in_range_and_not_given():
    task = CountdownTask(min_target=20, max_target=60)
    for seed in range(30):
        p = task.sample(random.Random(seed))
        assert 20 <= p.target <= 60 and p.target not in p.numbers


@pytest.mark.parametrize(
    "problem, field",
    [
        ({"numbers": [], "target": 3}, "numbers"),
        ({"numbers": [5], "target": 5}, "numbers"),
        ({"numbers": [0, 3], "target": 3}, "numbers"),
        ({"numbers": [1, 1], "target": 100}, "target"),
        ({"numbers": [1, 2]}, "target"),
        ({"numbers": [1, 2], "target": 3, "hint": "x"}, "hint"),
    ],
)
def test_malformed_problems_name_the_field(problem, field):
    env = gym.make("r1/Countdown-v0")
    with pytest.raises(ValueError, match=field):
        env.reset(options={"problem": problem})


def test_bad_kwargs_raise():
    with pytest.raises(ValueError, match="num_numbers"):
        CountdownTask(num_numbers=1)
    with pytest.raises(ValueError, match="min_target"):
        CountdownTask(min_target=50, max_target=10)


def test_use_all_rule():
    env = gym.make("r1/Countdown-v0")
    strict = {**PINNED, "use_all": True}
    for text, ok in [("7 + 3", False), ("(7 + 4) - (3 - 2)", True), ("2 * 3 + 4", False)]:
        env.reset(options={"problem": strict})
        assert env.step(f"<think>x</think> <answer>{text}</answer>")[4]["correct"] is ok
    assert evaluate("7 + 3", [2, 3, 4, 7], use_all=True) is None
    with pytest.raises(ValueError, match="target"):
        env.reset(options={"problem": {"numbers": [5, 5, 97], "target": 10, "use_all": True}})
    env = gym.make("r1/Countdown-v0", use_all=True)
    task = env.unwrapped.task
    for seed in range(10):
        _, info = env.reset(seed=seed)
        assert info["problem"]["use_all"] is True and "exactly once" in info["question"]
        text = task.solution(task.validate(info["problem"]))
        assert env.step(text)[4]["correct"] is True


def test_solution_check_works_the_expression_out_again():
    from r1envs.families.logic.countdown import _check_chain

    assert _check_chain("(25 - 5) * 4 + 3") == "(25 - 5) * 4 + 3 = 20 * 4 + 3 = 80 + 3 = 83"
    assert _check_chain("7 - (3 - 2) / 4") == "7 - (3 - 2) / 4 = 7 - 1 / 4 = 7 - (1/4) = 27/4"
    text = CountdownTask().solution(
        CountdownTask().validate({"numbers": [25, 5, 4, 3], "target": 83})
    )
    assert "Check: " in text and "= 83, using" in text
