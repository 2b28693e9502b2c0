"""Knights and Knaves: assignments checked against the statements, unique generated puzzles."""

from __future__ import annotations

import random

import gymnasium as gym
import pytest

import r1envs  # noqa: F401  (registers the ids)
from r1envs.families.logic.knights_knaves import (
    KnightsKnavesProblem,
    KnightsKnavesTask,
    describe_claim,
    parse_assignment,
    solutions,
)

# Alice knight -> Bob knave -> Bob's claim false: consistent. Alice knave -> Bob knight ->
# Bob's claim needs Alice a knight: contradiction. Unique: Alice knight, Bob knave.
UNIQUE = {
    "people": ["Alice", "Bob"],
    "statements": [
        {"speaker": "Alice", "claim": ["knave", "Bob"]},
        {"speaker": "Bob", "claim": ["and", ["knight", "Alice"], ["knight", "Bob"]]},
    ],
}
# Both knights or both knaves.
TWO_WAYS = {
    "people": ["Alice", "Bob"],
    "statements": [
        {"speaker": "Alice", "claim": ["knight", "Alice"]},
        {"speaker": "Bob", "claim": ["knight", "Alice"]},
    ],
}


def _correct(problem, answer):
    env = gym.make("r1/KnightsKnaves-v0")
    env.reset(options={"problem": problem})
    return env.step(f"<think>x</think> <answer>{answer}</answer>")[4]["correct"]


@pytest.mark.parametrize(
    "answer",
    [
        "Alice is a knight, Bob is a knave.",
        "Bob is a knave and Alice is a knight",
        "Alice: knight; Bob: knave",
        "alice is a Knight, BOB is a KNAVE",
        "\\boxed{\\text{Alice is a knight, Bob is a knave}}",
    ],
)
def test_consistent_answers_in_several_phrasings(answer):
    assert _correct(UNIQUE, answer) is True


@pytest.mark.parametrize(
    "answer",
    [
        "Alice is a knave, Bob is a knight.",
        "Alice is a knight.",  # Bob left out
        "Alice is a knight, Bob is a knight",
        "Alice is a knight, Bob is not a knight",  # negation
        "Alice is a knight and a knave, Bob is a knave",
        "Alice is a knight, Bob is a knave, Alice is a knave",
        "Knights: Alice. Knaves: Bob.",
        "Alice, Bob",
        "",
    ],
)
def test_wrong_or_unreadable_answers(answer):
    assert _correct(UNIQUE, answer) is False


def test_any_consistent_assignment_is_accepted():
    assert len(solutions(KnightsKnavesProblem.model_validate(TWO_WAYS))) == 2
    assert _correct(TWO_WAYS, "Alice and Bob are knights") is True
    assert _correct(TWO_WAYS, "Alice and Bob are both knaves") is True
    assert _correct(TWO_WAYS, "Alice is a knight, Bob is a knave") is False


def test_group_phrasing():
    assert parse_assignment(
        "Alice and Carol are knights, Bob is a knave", ["Alice", "Bob", "Carol"]
    ) == {
        "Alice": True,
        "Bob": False,
        "Carol": True,
    }


def test_generated_puzzles_have_one_solution():
    for kwargs in ({}, {"num_people": 5, "depth": 2}, {"num_people": 2, "depth": 0}):
        task = KnightsKnavesTask(**kwargs)
        for seed in range(15):
            problem = task.sample(random.Random(seed))
            assert len(solutions(problem)) == 1
            assert len(problem.people) == kwargs.get("num_people", 3)


def test_difficulty_kwargs_change_problems():
    shallow = KnightsKnavesTask(num_people=4, depth=0).sample(random.Random(0))
    deep = KnightsKnavesTask(num_people=4, depth=2).sample(random.Random(0))
    assert all(s.claim[0] in ("knight", "knave") for s in shallow.statements[:4])
    assert any(s.claim[0] not in ("knight", "knave") for s in deep.statements)
    env = gym.make("r1/KnightsKnaves-v0", num_people=6)
    _, info = env.reset(seed=0)
    assert len(info["problem"]["people"]) == 6


def test_claims_read_as_english():
    claim = ["implies", ["knight", "Bob"], ["or", ["knave", "Alice"], ["not", ["knight", "Carol"]]]]
    assert describe_claim(claim, "Alice") == (
        "if Bob is a knight then (I am a knave or Carol is not a knight)"
    )


@pytest.mark.parametrize(
    "problem, field",
    [
        ({**UNIQUE, "statements": [{"speaker": "Zed", "claim": ["knave", "Bob"]}]}, "speaker"),
        (
            {**UNIQUE, "statements": [{"speaker": "Bob", "claim": ["xor", ["knave", "Bob"]]}]},
            "claim",
        ),
        ({**UNIQUE, "statements": [{"speaker": "Bob", "claim": ["knave", "Zed"]}]}, "claim"),
        ({**UNIQUE, "statements": [{"speaker": "Bob", "claim": ["knave", "Bob"]}]}, "statements"),
        ({**UNIQUE, "people": ["Alice", "Alice"]}, "people"),
        ({**UNIQUE, "people": ["Alice"]}, "people"),
        ({**UNIQUE, "statements": []}, "statements"),
        ({**UNIQUE, "answer": "x"}, "answer"),
    ],
)
def test_malformed_problems_name_the_field(problem, field):
    env = gym.make("r1/KnightsKnaves-v0")
    with pytest.raises(ValueError, match=field):
        env.reset(options={"problem": problem})


def test_deep_claims_are_rejected():
    claim = ["knight", "Bob"]
    for _ in range(50):
        claim = ["not", claim]
    env = gym.make("r1/KnightsKnaves-v0")
    bad = {**UNIQUE, "statements": [{"speaker": "Bob", "claim": claim}]}
    with pytest.raises(ValueError, match="claim"):
        env.reset(options={"problem": bad})


def test_non_name_arguments_raise_value_error():
    for claim in (["knight", ["Bob"]], ["knight", {"a": 1}], [["and"], 1], "Bob is a knight"):
        bad = {**UNIQUE, "statements": [{"speaker": "Alice", "claim": claim}]}
        with pytest.raises(ValueError, match="claim"):
            gym.make("r1/KnightsKnaves-v0").reset(options={"problem": bad})
