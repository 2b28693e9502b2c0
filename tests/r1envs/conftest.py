from __future__ import annotations

import random

import pytest
from pydantic import BaseModel, ConfigDict

from r1envs import Grade, Task
from r1envs.formats import final_answer_text


class EchoProblem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    question: str
    answer: str


class EchoTask(Task[EchoProblem]):
    """Exact-match task for testing the core without a real verifier."""

    Problem = EchoProblem

    def sample(self, rng: random.Random) -> EchoProblem:
        n = rng.randint(0, 999)
        return EchoProblem(question=f"Repeat {n}", answer=str(n))

    def prompt(self, problem: EchoProblem) -> str:
        return problem.question

    def grade(self, completion, problem, answer_text=None):
        got = final_answer_text(completion)
        return Grade(
            correct=got == problem.answer,
            extracted_answer=got,
            feedback=f"expected a number, got {got!r}",
        )


@pytest.fixture
def echo_task() -> EchoTask:
    return EchoTask()
