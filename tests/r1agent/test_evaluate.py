from __future__ import annotations

import math

import pytest

from r1agent.eval.evaluate import (
    EvalReport,
    _aggregate,
    heldout_problems,
    majority_vote,
    pass_at_k,
    pass_k_values,
)


def test_pass_at_k_hand_values():
    # n=4, c=2, k=2: 1 - C(2,2)/C(4,2) = 1 - 1/6
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)
    # k=1 is the plain success rate
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 0, 3) == 0.0
    assert pass_at_k(5, 3, 3) == 1.0  # n - c < k: every k-subset holds a correct one


def test_pass_at_k_matches_binomials_and_is_stable_for_large_n():
    for n, c, k in [(16, 5, 4), (20, 1, 10), (30, 29, 2)]:
        exact = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(exact)
    value = pass_at_k(100_000, 10, 1000)
    assert 0.0 < value < 1.0 and math.isfinite(value)


@pytest.mark.parametrize("n,c,k", [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_bad_counts(n, c, k):
    with pytest.raises(ValueError, match="need"):
        pass_at_k(n, c, k)


def test_majority_vote():
    assert majority_vote(["4", "4", "5"], [True, True, False])
    assert not majority_vote(["5", "4", "5"], [False, True, False])
    # no answer does not vote; a tie goes to the first seen
    assert majority_vote([None, None, "4"], [False, False, True])
    assert majority_vote(["4", "5"], [True, False])
    assert not majority_vote(["5", "4"], [False, True])
    assert not majority_vote([None, None], [False, False])


def test_pass_k_values():
    assert pass_k_values(16) == [1, 2, 4, 8, 16]
    assert pass_k_values(1) == [1]
    assert pass_k_values(6) == [1, 2, 4, 6]


def _sample(correct, answer, length=10):
    return {
        "correct": correct,
        "answer": answer,
        "format": 1.0,
        "error": None,
        "length": length,
        "truncated": False,
    }


def test_aggregate_and_markdown():
    graded = [
        [_sample(True, "1"), _sample(False, "2")],
        [_sample(False, "3"), _sample(False, "3", length=30)],
    ]
    r = _aggregate("r1/Arithmetic-v0", 2, graded)
    assert r.pass1 == pytest.approx(0.25)
    assert r.pass_k[2] == pytest.approx(0.5)
    assert r.cons_k == pytest.approx(0.5)  # problem 1: tie -> "1" (correct)
    assert r.mean_length == pytest.approx(15.0)
    rep = EvalReport("m", {"k": 2}, [r])
    md = rep.markdown()
    assert "| r1/Arithmetic-v0 | 2 | 0.250 | 0.500 |" in md
    assert rep.to_json()["envs"][0]["pass@2"] == pytest.approx(0.5)


def test_heldout_problems_are_the_checkers_problems():
    import gymnasium as gym

    probs = heldout_problems(["r1/Arithmetic-v0"], 3)
    env = gym.make("r1/Arithmetic-v0")
    for i, p in enumerate(probs):
        obs, _ = env.reset(seed=10_000_000 + i)
        assert p.prompt == obs and p.seed == 10_000_000 + i
