from __future__ import annotations

import subprocess
import sys
import time

import gymnasium as gym
import pytest

import r1envs
from r1envs.integrations import reasoning_gym as rg

pytestmark = pytest.mark.skipif(not rg.available(), reason="reasoning-gym is not installed")


def test_env_id_for():
    assert rg.env_id_for("basic_arithmetic") == "r1/RGBasicArithmetic-v0"
    assert rg.env_id_for("puzzle24") == "r1/RGPuzzle24-v0"


def test_curated_ids_registered_without_importing_reasoning_gym():
    code = (
        "import sys, r1envs; ids = r1envs.list_envs(); "
        "assert 'r1/RGKnightsKnaves-v0' in ids, ids; "
        "assert 'reasoning_gym' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert {rg.env_id_for(n) for n in rg.CURATED} <= set(r1envs.list_envs())


@pytest.mark.parametrize("name", ["basic_arithmetic", "knights_knaves", "mini_sudoku"])
def test_gold_answer_scores_full_and_wrong_scores_zero(name):
    env = gym.make(rg.env_id_for(name))
    _, info = env.reset(seed=5)
    problem = info["problem"]
    assert problem["question"] in info["question"]
    again = gym.make(rg.env_id_for(name)).reset(seed=5)[1]["problem"]
    assert again == problem  # same seed, same problem
    _, reward, terminated, _, info = env.step(
        f"<think>work</think> <answer>{problem['answer']}</answer>"
    )
    assert info["correct"] is True and terminated
    assert info["rewards"]["accuracy"] == 1.0 and reward == pytest.approx(1.2)
    env.reset(options={"problem": problem})
    _, reward, *_, info = env.step("<think>work</think> <answer>no idea</answer>")
    assert info["correct"] is False and info["rewards"]["accuracy"] == 0.0


@pytest.fixture
def puzzle24():
    rg.register_reasoning_gym(["puzzle24"])
    yield "r1/RGPuzzle24-v0"
    r1envs.unregister_task("r1/RGPuzzle24-v0")


def test_rule_checked_generator_and_pinned_problem(puzzle24):
    assert "puzzle24" not in rg.CURATED
    env = gym.make(puzzle24)
    _, info = env.reset(seed=1)
    nums = info["problem"]["metadata"]["numbers"]
    assert len(nums) == 4
    env.reset(
        options={
            "problem": {"question": "Make 24 from 4 6 1 1", "metadata": {"numbers": [4, 6, 1, 1]}}
        }
    )
    _, _, _, _, info = env.step("<think>4*6*1*1</think> <answer>4*6*1*1</answer>")
    assert info["correct"] is True


@pytest.mark.parametrize("name", ["spell_backward", "basic_arithmetic"])
def test_no_partial_credit_for_gold_plus_junk_unless_asked(name):
    for partial, expect_partial in ((False, False), (True, True)):
        env = gym.make(rg.env_id_for(name), partial_credit=partial)
        _, info = env.reset(seed=2)
        gold = info["problem"]["answer"]
        _, _, _, _, info = env.step(f"<think>x</think> <answer>{gold} and more text</answer>")
        assert info["correct"] is False
        accuracy = info["rewards"]["accuracy"]
        assert (0.0 < accuracy < 1.0) if expect_partial else accuracy == 0.0


def test_register_more_and_errors():
    ids = rg.register_reasoning_gym(["leg_counting"])
    assert ids == ["r1/RGLegCounting-v0"] and rg.register_reasoning_gym(["leg_counting"]) == []
    env = gym.make("r1/RGLegCounting-v0")
    _, info = env.reset(seed=0)
    assert env.step(f"\\boxed{{{info['problem']['answer']}}}")[4]["correct"] is True
    with pytest.raises(ValueError, match="unknown reasoning-gym generators"):
        rg.register_reasoning_gym(["no_such_generator"])
    with pytest.raises(ValueError, match="bad kwargs"):
        gym.make("r1/RGBasicArithmetic-v0", not_a_field=3)
    r1envs.unregister_task("r1/RGLegCounting-v0")


def test_hanging_scorer_is_bounded_and_recovers(puzzle24):
    # puzzle24's scorer evaluates the answer with sympy: 99999999! never returns in-process
    env = gym.make(puzzle24, timeout=1.0).unwrapped
    assert env.task._worker is not None  # not curated: isolated by default
    env.reset(
        options={
            "problem": {"question": "Make 24 from 4 6 1 1", "metadata": {"numbers": [4, 6, 1, 1]}}
        }
    )
    t0 = time.perf_counter()
    _, reward, *_, info = env.step("\\boxed{99999999!}")
    assert time.perf_counter() - t0 < 5.0
    assert reward == 0.0 and info["correct"] is False and info["error"] is None
    assert env.step("<answer>4*6*1*1</answer>")[4]["correct"] is True  # a fresh helper scores


def test_in_process_scoring_option():
    env = gym.make("r1/RGGcd-v0")
    assert env.unwrapped.task._worker is None  # curated: scored in-process
    assert gym.make("r1/RGGcd-v0", isolate=True).unwrapped.task._worker is not None
    _, info = env.reset(seed=4)
    assert env.step(f"<answer>{info['problem']['answer']}</answer>")[4]["correct"] is True
    with pytest.raises(ValueError, match="timeout must be > 0"):
        gym.make("r1/RGGcd-v0", timeout=0)
