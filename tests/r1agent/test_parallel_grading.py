"""Grading the episodes of a batch in a pool: same episodes as one after another, a hanging
or raising env costs only its own episode, multi-turn envs keep working, settings validated."""

from __future__ import annotations

import os
import time
from collections import Counter

import gymnasium as gym
import pytest
from pydantic import ValidationError

from r1agent.infra.config import RolloutConfig
from r1agent.rewards import chat_env
from r1agent.rollout.engine import Completion
from r1agent.rollout.episodes import EnvPool, collect_episodes
from r1envs.spaces import UnicodeText
from tests.r1agent.grpo_helpers import register_test_envs
from tests.r1envs.families.data.code_reference import PROBLEMS

register_test_envs()
SOLUTIONS = {p["id"]: p["solution"] for p in PROBLEMS}
ANSWER = "<think>\nworking\n</think>\n<answer>\n{}\n</answer>"


class HangEnv(gym.Env):
    """Reward 1; a step whose action contains ``hang`` never returns, ``exit`` ends the
    process."""

    def __init__(self) -> None:
        self.observation_space = UnicodeText(1000)
        self.action_space = UnicodeText(100_000)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return "Say anything:", {}

    def step(self, action):
        if action == "exit":
            os._exit(3)
        while "hang" in action:
            time.sleep(3600)
        return "", 1.0, True, False, {"rewards": {"accuracy": 1.0}, "correct": True}


if "test/Hang-v0" not in gym.registry:
    gym.register("test/Hang-v0", entry_point=HangEnv)


class CharTokenizer:
    """One id per character (decodable), enough for ``collect_episodes``."""

    bos_token = None
    eos_token_id = 0

    def __call__(self, text, add_special_tokens=True):
        return {"input_ids": [ord(c) for c in text]}

    @staticmethod
    def decode(ids):
        return "".join(chr(i) for i in ids)


class Scripted:
    """A generate_fn: the n-th completion asked for a prompt is ``script(prompt, n)``."""

    def __init__(self, script):
        self.script, self.seen = script, Counter()

    def __call__(self, model, tokenizer, prompts, **kw):
        out = []
        for ids in prompts:
            prompt = CharTokenizer.decode(ids)
            text = self.script(prompt, self.seen[prompt])
            self.seen[prompt] += 1
            out.append(Completion(list(ids), [ord(c) for c in text] + [0], text, None, False))
        return out


def _answers(pool, problems):
    """Right and wrong completions per prompt of the mixed batch."""
    by_prompt = {}
    for env_id, seed in problems:
        env = pool.acquire(env_id)
        obs, info = env.reset(seed=seed)
        pool.release(env_id, env)
        prob = info["problem"]
        if env_id == "r1/Code-v0":
            entry = prob.get("entry_point") or "f"
            right = f"```python\n{SOLUTIONS[prob['id']]}\n```"
            wrong = "```python\nprint(0)\n```" if entry == "f" else f"```python\n{entry} = 0\n```"
        elif env_id == "r1/Math-v0":
            right, wrong = f"\\boxed{{{prob['answer']}}}", "\\boxed{\\sqrt{7}+x}"
        else:
            right, wrong = "A is a knight", "42"
        by_prompt[obs] = [ANSWER.format(right), ANSWER.format(wrong), wrong]
    return lambda prompt, n: by_prompt[prompt][n % 3]


def _collect(problems, env_kwargs=None, max_turns=1, script=None, group_size=3, **grading):
    pool = EnvPool(env_kwargs or {})
    try:
        return collect_episodes(
            None,
            CharTokenizer(),
            pool,
            problems,
            group_size=group_size,
            prompt_format="observation",
            max_new_tokens=8,
            max_turns=max_turns,
            generate_fn=Scripted(script or _answers(pool, problems)),
            **grading,
        )
    finally:
        pool.close()


def _view(eps):
    return [
        (e.env_id, e.reward, e.components, e.correct, e.error, e.completions, e.response_ids)
        for e in eps
    ]


MIXED = [("r1/Math-v0", 3), ("r1/Code-v0", 1), ("r1/Code-v0", 6), ("r1/Logic-v0", 2)]


def test_pool_grades_a_mixed_batch_as_one_after_another():
    want = _view(_collect(MIXED, grading_workers=0))
    assert any(v[3] for v in want) and not all(v[3] for v in want)  # right and wrong answers
    assert all(v[4] is None for v in want)
    assert _view(_collect(MIXED, grading_workers=4, grading_pool="thread")) == want
    assert _view(_collect(MIXED, grading_workers=2, grading_pool="process")) == want


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_a_hanging_env_fails_only_its_episode(kind):
    problems = [("test/Digit-v0", 1), ("test/Hang-v0", 0), ("test/Digit-v0", 2)]
    script = lambda prompt, n: "hang" if prompt.startswith("Say") else "abc"  # noqa: E731
    t0 = time.monotonic()
    eps = _collect(problems, script=script, group_size=1, grading_timeout=3.0, grading_pool=kind)
    assert time.monotonic() - t0 < 20
    assert "timed out after 3 s" in eps[1].error and "test/Hang-v0" in eps[1].error
    assert eps[1].done and eps[1].reward == 0
    assert all(e.error is None and e.reward > 0 and e.done for e in (eps[0], eps[2]))


def test_a_worker_process_that_dies_fails_only_its_episode():
    problems = [("test/Hang-v0", 0), ("test/Digit-v0", 1), ("test/Digit-v0", 2)]
    script = lambda prompt, n: "exit" if prompt.startswith("Say") else "abc"  # noqa: E731
    eps = _collect(problems, script=script, group_size=1, grading_pool="process")
    assert "grading worker died (env test/Hang-v0): exit code 3" in eps[0].error
    assert all(e.error is None and e.reward > 0 for e in eps[1:])


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_an_env_raising_in_the_pool_fails_its_episode(kind):
    problems = [("test/DigitRaise-v0", 0), ("test/Digit-v0", 1)]
    script = lambda prompt, n: "abc"  # noqa: E731
    want = _view(_collect(problems, script=script, grading_workers=0))
    got = _view(_collect(problems, script=script, grading_workers=2, grading_pool=kind))
    assert got == want
    assert all(v[4] and v[4].startswith("RuntimeError") for v in got[:3])
    assert all(v[4] is None for v in got[3:])


@pytest.mark.parametrize("kind", ["thread", "process"])
def test_multi_turn_episodes_are_the_same_in_the_pool(kind):
    """A code env with feedback: a wrong first attempt, then the solution; and the digit env
    that always asks again."""
    env = gym.make("r1/Code-v0")
    obs, info = env.reset(seed=1)
    right = ANSWER.format(f"```python\n{SOLUTIONS[info['problem']['id']]}\n```")

    def script(prompt, n):
        if prompt.startswith(obs):
            return right if "\n" in prompt[len(obs) :] and n % 2 == 0 else "no code"
        return "abc"

    problems = [("r1/Code-v0", 1), ("test/DigitTwoTurns-v0", 2)]
    kw = {"env_kwargs": {"r1/Code-v0": {"max_turns": 2}}, "max_turns": 3, "script": script}
    want = _view(_collect(problems, grading_workers=0, **kw))
    assert any(len(v[5]) == 2 and v[3] for v in want[:3])  # solved on the second turn
    assert all(len(v[5]) == 2 for v in want[3:])
    assert _view(_collect(problems, grading_workers=3, grading_pool=kind, **kw)) == want


class CountingJudge:
    """Scores by length; records the size of every ``score`` call."""

    def __init__(self):
        self.calls = []

    def score(self, prompts, responses):
        self.calls.append(len(responses))
        return [len(r) / 100 for r in responses]


def test_judge_envs_are_scored_in_one_call_per_judge():
    judge = CountingJudge()
    chat_env._JUDGES["test:counting"] = judge
    kw = {"env_kwargs": {"r1agent/Chat-v0": {"helpfulness": "test:counting"}}}
    problems = [("r1agent/Chat-v0", s) for s in range(4)]
    script = lambda prompt, n: "x" * (n + 1)  # noqa: E731
    want = _view(_collect(problems, script=script, grading_workers=0, **kw))
    assert judge.calls == [1] * 24  # one after another: two calls per episode
    judge.calls.clear()
    got = _view(_collect(problems, script=script, grading_workers=4, **kw))
    assert judge.calls == [12, 12] and got == want


@pytest.mark.parametrize(
    ("field", "value"),
    [("grading_workers", -1), ("grading_timeout", 0), ("grading_pool", "fork")],
)
def test_bad_grading_settings_are_rejected_naming_the_value(field, value):
    with pytest.raises(ValidationError, match=field) as err:
        RolloutConfig(**{field: value})
    assert repr(value) in str(err.value) or str(value) in str(err.value)
    with pytest.raises(ValueError, match=repr(value)):
        _collect([("test/Digit-v0", 0)], script=lambda p, n: "a", **{field: value})
