from __future__ import annotations

import gymnasium as gym
import pytest

import r1envs  # noqa: F401
from r1agent.data.coldstart import format_response, solve_arithmetic, solver_examples, zero_to_r1
from r1envs import formats


def test_solver_steps_and_check():
    steps, answer = solve_arithmetic("What is 47 + 18 - 25?")
    assert steps[:2] == ["47 + 18 = 65", "65 - 25 = 40"]
    assert steps[2] == "Check: 40 + 25 = 65, 65 - 18 = 47."
    assert answer == "40"
    steps, answer = solve_arithmetic("What is 3 + 4 * 5 - 6?")
    assert steps[0] == "4 * 5 = 20" and answer == "17"


def test_solver_rejects_other_text():
    with pytest.raises(ValueError, match="not an arithmetic question"):
        solve_arithmetic("Who wrote Hamlet?")


def test_solver_examples_are_graded_correct_in_the_r1_format():
    examples = solver_examples(["r1/Arithmetic-v0"], 20, seed=0)
    env = gym.make("r1/Arithmetic-v0")
    for i, ex in enumerate(examples):
        obs, _ = env.reset(seed=i)
        assert ex.prompt == obs
        assert formats.parse(ex.response, "r1").well_formed
        _, _, _, _, info = env.step(ex.response)
        assert info["correct"]


def test_r1_zero_format_and_conversion():
    zero = format_response(["1 + 2 = 3"], "3", "r1-zero")
    assert formats.parse(zero, "r1-zero").well_formed
    r1 = zero_to_r1(zero)
    assert r1 is not None and formats.parse(r1, "r1").well_formed
    assert r1.endswith("\\boxed{3}.")
    assert zero_to_r1("no tags here") is None


def test_model_written_zero_outputs_are_rewritten_and_filtered():
    import re

    from r1agent.data.coldstart import model_examples
    from r1agent.rollout.engine import Completion

    question = re.compile(r"User: (What is .*?\?)\.? Assistant:")

    def zero_policy(model, tokenizer, prompts, **kw):
        out = []
        for i, p in enumerate(prompts):
            steps, answer = solve_arithmetic(question.search(p).group(1))
            answer = answer if i % 2 == 0 else "0"  # every other sample wrong
            out.append(Completion([], [1], format_response(steps, answer, "r1-zero"), None, False))
        return out

    examples = model_examples(
        None, None, ["r1/Arithmetic-v0"], 4, source="zero", samples=2, generate_fn=zero_policy
    )
    assert 1 <= len(examples) <= 4
    for ex in examples:
        assert formats.parse(ex.response, "r1").well_formed and "\\boxed{" in ex.response


def test_detailed_solver_splits_tens_and_units_and_stays_correct():
    steps, answer = solve_arithmetic("What is 68 + 64 - 87?", detailed=True)
    assert steps[0] == "68 + 64 = 68 + 60 + 4 = 128 + 4 = 132"
    assert steps[1] == "132 - 87 = 132 - 80 - 7 = 52 - 7 = 45" and answer == "45"
    assert solver_examples(
        ["r1/Arithmetic-v0"], 30, detailed=True
    )  # graded correct (asserted inside)
