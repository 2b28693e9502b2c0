"""Register your own verifiable task, then evaluate and train on it like any built-in id.

    python examples/custom_task.py            # registers r1/Reverse-v0 and grades two answers
    r1agent eval --model runs/demo/pipeline/stage2 --env r1/Reverse-v0 --k 4 --n 50 \
        --import examples/custom_task.py

A task is three methods: ``sample`` (a problem from a seeded RNG), ``prompt`` (the question)
and ``grade`` (is the completion right). Problems are pydantic models, so
``env.reset(options={"problem": {...}})`` validates a user's dict.
"""

from __future__ import annotations

import random

import gymnasium as gym
from pydantic import BaseModel, Field

from r1envs import register_task
from r1envs.core import Grade, Task
from r1envs.formats import final_answer_text


class ReverseProblem(BaseModel):
    word: str = Field(min_length=1)


class ReverseTask(Task[ReverseProblem]):
    """Reverse a word: ``abc`` -> ``cba``."""

    Problem = ReverseProblem

    def sample(self, rng: random.Random) -> ReverseProblem:
        return ReverseProblem(
            word="".join(rng.choice("abcdefgh") for _ in range(rng.randint(3, 6)))
        )

    def prompt(self, problem: ReverseProblem) -> str:
        return f"Write the word '{problem.word}' backwards"

    def grade(
        self, completion: str, problem: ReverseProblem, answer_text: str | None = None
    ) -> Grade:
        answer = answer_text if answer_text is not None else final_answer_text(completion)
        answer = (answer or "").strip().strip("'\"")
        return Grade(correct=answer == problem.word[::-1], extracted_answer=answer or None)


register_task("r1/Reverse-v0", ReverseTask, override=True)

if __name__ == "__main__":
    env = gym.make("r1/Reverse-v0")
    obs, info = env.reset(seed=0)
    word = info["problem"]["word"]
    print(obs)
    for completion in (
        f"<think>reverse it</think> <answer>{word[::-1]}</answer>",
        "<answer>nope</answer>",
    ):
        _, reward, _, _, step_info = env.step(completion)
        print(repr(completion), "->", reward, step_info["correct"])
