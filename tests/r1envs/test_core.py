from __future__ import annotations

import math

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import r1envs
from r1envs import ReasoningEnv
from r1envs.core import Grade, MixTask

from .conftest import EchoTask

GOOD = "<think> I repeat it. </think> <answer>{}</answer>"


def test_reset_same_seed_same_problem(echo_task):
    env = ReasoningEnv(echo_task)
    a, ia = env.reset(seed=7)
    b, ib = env.reset(seed=7)
    c, _ = ReasoningEnv(EchoTask()).reset(seed=7)
    assert a == b == c and ia["problem"] == ib["problem"]
    others = {ReasoningEnv(EchoTask()).reset(seed=s)[0] for s in range(20)}
    assert len(others) > 10


def test_step_info_contract(echo_task):
    env = ReasoningEnv(echo_task)
    obs, info = env.reset(seed=1)
    assert info["messages"][-1] == {"role": "user", "content": info["question"]}
    assert info["messages"][0]["role"] == "system"
    answer = info["problem"]["answer"]
    _, reward, terminated, truncated, info = env.step(GOOD.format(answer))
    assert (terminated, truncated) == (True, False)
    assert info["correct"] is True and info["error"] is None
    assert info["extracted_answer"] == answer
    assert info["rewards"] == {"accuracy": 1.0, "format": 1.0, "language": 1.0}
    assert isinstance(reward, float) and reward == pytest.approx(1.2)


def test_correct_regardless_of_format(echo_task):
    env = ReasoningEnv(echo_task)
    _, info = env.reset(seed=1)
    _, reward, _, _, info = env.step(f"\\boxed{{{info['problem']['answer']}}}")
    assert info["correct"] is True and info["rewards"]["format"] == 0.0
    assert reward == pytest.approx(1.0)


def test_pinned_problem_and_validation_error(echo_task):
    env = ReasoningEnv(echo_task)
    obs, info = env.reset(options={"problem": {"question": "Repeat 5", "answer": "5"}})
    assert "Repeat 5" in obs
    with pytest.raises(ValueError, match="answer"):
        env.reset(options={"problem": {"question": "Repeat 5"}})
    with pytest.raises(ValueError, match="bogus"):
        env.reset(options={"problem": {"question": "q", "answer": "a", "bogus": 1}})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"nope": 1})


def test_reward_weights_and_unknown_component(echo_task):
    env = ReasoningEnv(echo_task, reward_weights={"format": 0.0, "language": 0.5})
    _, info = env.reset(seed=3)
    _, reward, *_ = env.step(GOOD.format(info["problem"]["answer"]))
    assert reward == pytest.approx(1.5)
    with pytest.raises(ValueError, match="nope"):
        ReasoningEnv(echo_task, reward_weights={"nope": 1.0})
    with pytest.raises(ValueError, match="output_format"):
        ReasoningEnv(echo_task, output_format="xml")
    with pytest.raises(ValueError, match="language"):
        ReasoningEnv(echo_task, language="xx")


def test_optional_penalties(echo_task):
    env = ReasoningEnv(echo_task, overlong=(100, 50), repetition_ngram=2)
    _, info = env.reset(seed=3)
    text = GOOD.format(info["problem"]["answer"]) + " la la la la la la" * 10
    _, _, _, _, info = env.step(text)
    assert info["rewards"]["overlong"] == -1.0
    assert info["rewards"]["repetition"] < -0.5


def test_grader_exception_is_error_not_crash(echo_task):
    class Boom(EchoTask):
        def grade(self, completion, problem, answer_text=None):
            raise RuntimeError("sandbox down")

    env = ReasoningEnv(Boom())
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step("anything")
    assert info["error"] == "RuntimeError: sandbox down"
    assert info["correct"] is False and terminated
    assert math.isfinite(reward)


@pytest.mark.parametrize(
    "action",
    ["", "\x00" * 1000, "\ud800 lone surrogate", "{" * 5000, b"bytes", None, 12, "x" * 2_000_000],
)
def test_bad_actions_never_raise(echo_task, action):
    env = ReasoningEnv(echo_task)
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(action)
    assert reward == 0.0 and terminated and info["correct"] is False


def test_multi_turn_feedback(echo_task):
    env = ReasoningEnv(echo_task, max_turns=3)
    _, info = env.reset(seed=2)
    obs, _, terminated, _, step_info = env.step("<answer>wrong</answer>")
    assert not terminated and "expected a number" in obs and step_info["turn"] == 1
    obs, _, terminated, _, step_info = env.step(GOOD.format(info["problem"]["answer"]))
    assert terminated and step_info["correct"]
    env.reset(seed=2)
    for _turn in range(3):
        _, _, terminated, _, _ = env.step("no")
    assert terminated


def test_think_prefill(echo_task):
    env = ReasoningEnv(echo_task, think_prefill=True)
    obs, info = env.reset(seed=2)
    assert obs.endswith("<think>")
    _, _, _, _, step_info = env.step(
        f" reasoning </think> <answer>{info['problem']['answer']}</answer>"
    )
    assert step_info["rewards"]["format"] == 1.0


def test_mix_task(echo_task):
    class Other(EchoTask):
        def prompt(self, problem):
            return "Other: " + problem.question

    mix = MixTask({"echo": echo_task, "other": Other()}, {"echo": 1.0, "other": 1.0})
    env = ReasoningEnv(mix)
    families = {env.reset(seed=s)[1]["family"] for s in range(30)}
    assert families == {"echo", "other"}
    obs, info = env.reset(options={"problem": {"family": "other", "question": "q", "answer": "1"}})
    assert obs.endswith("User: Other: q. Assistant:") and info["family"] == "other"
    with pytest.raises(ValueError, match="family"):
        env.reset(options={"problem": {"family": "nope", "question": "q", "answer": "1"}})
    with pytest.raises(ValueError, match="weights"):
        MixTask({"echo": echo_task}, {"echo": -1.0})


def test_check_env_on_custom_task(echo_task):
    check_env(ReasoningEnv(echo_task), skip_render_check=True)


def test_register_task_roundtrip():
    r1envs.register_task("test/EchoCore-v0", EchoTask)
    try:
        with pytest.raises(ValueError, match="already registered"):
            r1envs.register_task("test/EchoCore-v0", EchoTask)
        with pytest.raises(ValueError, match="env_id"):
            r1envs.register_task("bad id", EchoTask)
        env = gym.make("test/EchoCore-v0", output_format="r1", max_turns=2)
        assert env.unwrapped.output_format == "r1" and env.unwrapped.max_turns == 2
        assert "test/EchoCore-v0" in r1envs.list_envs()
        with pytest.raises(ValueError, match="bad kwargs"):
            gym.make("test/EchoCore-v0", difficulty=3)
    finally:
        r1envs.unregister_task("test/EchoCore-v0")


def test_grade_defaults():
    g = Grade(correct=True)
    assert g.score is None and g.extra == {} and g.error is None


def test_malformed_pinned_problems_raise_value_error(echo_task):
    env = ReasoningEnv(echo_task)
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(ValueError, match="question"):
        env.reset(options={"problem": {"question": deep, "answer": "1"}})
    mix = ReasoningEnv(MixTask({"echo": echo_task}))
    with pytest.raises(ValueError, match="family"):
        mix.reset(options={"problem": {"family": ["echo"], "question": "q", "answer": "1"}})


def test_prompt_punctuation(echo_task):
    env = ReasoningEnv(echo_task)
    obs, _ = env.reset(options={"problem": {"question": "What is 2 + 2?", "answer": "4"}})
    assert obs.endswith("User: What is 2 + 2? Assistant:")
    obs, _ = env.reset(options={"problem": {"question": "Add 2 and 2", "answer": "4"}})
    assert obs.endswith("User: Add 2 and 2. Assistant:")
