"""r1/Logic-v0: the logic families mixed by weight."""

from __future__ import annotations

import gymnasium as gym
import pytest

import r1envs  # noqa: F401  (registers the ids)
from r1envs.families.logic import FAMILIES, LogicTask


def test_all_families_appear_and_info_names_them():
    env = gym.make("r1/Logic-v0")
    seen = {env.reset(seed=s)[1]["family"] for s in range(40)}
    assert seen == set(FAMILIES)


def test_weights_and_family_kwargs():
    env = gym.make(
        "r1/Logic-v0",
        weights={"countdown": 1.0, "knights_knaves": 0, "mini_sudoku": 0, "graph_coloring": 0},
        families={"countdown": {"num_numbers": 3}},
    )
    for s in range(10):
        _, info = env.reset(seed=s)
        assert info["family"] == "countdown" and len(info["problem"]["numbers"]) == 3


def test_pinned_problem_with_and_without_family():
    env = gym.make("r1/Logic-v0")
    problem = {"numbers": [2, 3, 4], "target": 10}
    _, info = env.reset(options={"problem": {"family": "countdown", **problem}})
    assert info["family"] == "countdown"
    _, info = env.reset(options={"problem": problem})
    assert info["family"] == "countdown"
    assert env.step("<think>x</think> <answer>2*3+4</answer>")[4]["correct"] is True
    with pytest.raises(ValueError, match="family"):
        env.reset(options={"problem": {"family": "chess", **problem}})
    with pytest.raises(ValueError, match="fits no family"):
        env.reset(options={"problem": {"numbers": [2, 3]}})


def test_unknown_family_kwargs_raise():
    with pytest.raises(ValueError, match="chess"):
        LogicTask(families={"chess": {}})
    with pytest.raises(ValueError, match="weights"):
        LogicTask(weights={"chess": 1.0})


def test_difficulty_presets():
    easy, hard = LogicTask(difficulty="easy"), LogicTask(difficulty="hard")
    assert easy.tasks["countdown"].num_numbers == 3 and hard.tasks["countdown"].num_numbers == 5
    assert hard.tasks["mini_sudoku"].size == 6
    mixed = LogicTask(difficulty="hard", families={"mini_sudoku": {"size": 4}})
    assert mixed.tasks["mini_sudoku"].size == 4 and mixed.tasks["mini_sudoku"].num_blanks == 10
    assert mixed.tasks["knights_knaves"].depth == 2
    env = gym.make("r1/Logic-v0", difficulty="hard")
    for s in range(8):
        _, info = env.reset(seed=s)
        text = env.unwrapped.task.solution(env.unwrapped.task.validate(info["problem"]))
        assert env.step(text)[4]["correct"] is True
    with pytest.raises(ValueError, match="difficulty"):
        LogicTask(difficulty="insane")


def test_non_string_family_raises_value_error():
    env = gym.make("r1/Logic-v0")
    with pytest.raises(ValueError, match="family"):
        env.reset(options={"problem": {"family": ["countdown"], "numbers": [2, 3], "target": 5}})
