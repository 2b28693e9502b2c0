"""Checks every logic id passes: determinism, worked solutions, hostile completions, check_env."""

from __future__ import annotations

import random
import time

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import r1envs
from r1envs.families.logic._common import render_solution

LOGIC_IDS = [
    "r1/Countdown-v0",
    "r1/KnightsKnaves-v0",
    "r1/MiniSudoku-v0",
    "r1/GraphColoring-v0",
    "r1/Logic-v0",
]

HOSTILE = [
    "",
    "\x00" * 1000,
    "\ud800 lone surrogate",
    "(" * 5000 + "1" + ")" * 5000,
    "<answer>" + "(" * 3000 + "1" + ")" * 3000 + "</answer>",
    "<answer>" + "9" * 5000 + "</answer>",
    "<answer>2**99999999</answer>",
    "<answer>" + "1*" * 2000 + "1</answer>",
    "<answer>__import__('os').system('true')</answer>",
    "\\boxed{" * 3000,
    "<answer>" + "Alice is a knight, " * 500 + "</answer>",
    "<answer>" + "A=red, " * 2000 + "</answer>",
    "<answer>" + "1 2 3 4\n" * 2000 + "</answer>",
    "random 你好 ∑√ 😀 text\n" * 100,
]


def test_ids_registered():
    assert set(LOGIC_IDS) <= set(r1envs.list_envs("r1"))


@pytest.mark.parametrize("env_id", LOGIC_IDS)
def test_check_env(env_id):
    env = gym.make(env_id)
    check_env(env.unwrapped, skip_render_check=True)
    env.close()


@pytest.mark.parametrize("env_id", LOGIC_IDS)
def test_same_seed_same_problem_and_seeds_vary(env_id):
    env = gym.make(env_id)
    first = [env.reset(seed=s)[1]["problem"] for s in range(8)]
    again = [env.reset(seed=s)[1]["problem"] for s in range(8)]
    assert first == again
    assert len({repr(p) for p in first}) >= 6


@pytest.mark.parametrize("env_id", LOGIC_IDS)
@pytest.mark.parametrize("output_format", ["r1-zero", "r1"])
def test_every_solution_grades_correct(env_id, output_format):
    env = gym.make(env_id, output_format=output_format)
    task = env.unwrapped.task
    for seed in range(25):
        _, info = env.reset(seed=seed)
        problem = task.validate(info["problem"])
        text = task.solution(problem, output_format)
        assert "Check" in text
        _, reward, terminated, _, step_info = env.step(text)
        assert step_info["correct"] is True, (seed, info["problem"], text)
        assert step_info["rewards"]["format"] == 1.0 and terminated
        assert step_info["error"] is None


@pytest.mark.parametrize("env_id", LOGIC_IDS)
def test_pinned_problem_round_trips(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=3)
    obs2, info2 = env.reset(options={"problem": info["problem"]})
    assert obs2 == obs and info2["problem"] == info["problem"]


@pytest.mark.parametrize("env_id", LOGIC_IDS)
def test_hostile_completions_are_bounded_and_score_zero(env_id):
    env = gym.make(env_id)
    task = env.unwrapped.task
    _, info = env.reset(seed=1)
    problem = task.validate(info["problem"])
    for text in [*HOSTILE, "x" * 10_000_000, "<answer>" + "(" * 10_000_000 + "</answer>"]:
        start = time.perf_counter()
        grade = task.grade(text, problem)
        assert time.perf_counter() - start < 1.0, text[:40]
        assert grade.correct is False and grade.error is None
        env.reset(seed=1)
        _, reward, _, _, step_info = env.step(text)
        assert step_info["correct"] is False and step_info["rewards"]["accuracy"] == 0.0


@pytest.mark.parametrize("env_id", LOGIC_IDS)
def test_grading_is_fast(env_id):
    task = r1envs.make_task(env_id)
    rng = random.Random(0)
    cases = []
    for _ in range(20):
        problem = task.sample(rng)
        cases.append((problem, task.solution(problem)))
    start = time.perf_counter()
    for _ in range(10):
        for problem, text in cases:
            assert task.grade(text, problem).correct
    per_grade = (time.perf_counter() - start) / (10 * len(cases))
    assert per_grade < 1e-3, per_grade


def test_render_solution_formats():
    zero = render_solution(["a", "Check: b"], "X", "r1-zero")
    assert zero.startswith("<think>") and zero.endswith("<answer>\nX\n</answer>")
    r1 = render_solution(["a"], "X", "r1", lead="Answer:")
    assert r1.startswith(r1envs.formats.REASONING_START) and r1.endswith("Answer:\nX")
    with pytest.raises(ValueError, match="output_format"):
        render_solution(["a"], "X", "markdown")


@pytest.mark.parametrize("env_id", LOGIC_IDS)
def test_absurdly_nested_problems_raise_value_error(env_id):
    deep: list = [1]
    for _ in range(5000):
        deep = [deep]
    env = gym.make(env_id)
    for key in ("numbers", "statements", "grid", "edges", "nodes"):
        with pytest.raises(ValueError, match="nested deeper"):
            env.reset(options={"problem": {key: deep}})
