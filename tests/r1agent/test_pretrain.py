from __future__ import annotations

import random
import re

from r1agent.recipes.pretrain import arithmetic_sentence, synthetic_corpus


def operands(text: str) -> list[int]:
    return [int(b) for b in re.findall(r"[+-] (\d+) =", text)]


def test_arithmetic_sentence_facts_are_true_and_bounded():
    rng = random.Random(0)
    for _ in range(50):
        line = arithmetic_sentence(rng, max_value=9)
        for a, op, b, c in re.findall(r"(-?\d+) ([+-]) (\d+) = (-?\d+)\.", line):
            assert int(c) == (int(a) + int(b) if op == "+" else int(a) - int(b))
        assert operands(line) and max(operands(line)) <= 9


def test_synthetic_corpus_max_value_bounds_the_arithmetic_text():
    docs = synthetic_corpus(60, env_ids=["r1/ArithmeticEasy-v0"], seed=1, max_value=9)
    facts = [d for d in docs if re.match(r"^-?\d+ [+-] \d+ = ", d)]
    prompts = [d for d in docs if "User:" in d]
    assert facts and prompts and len(docs) == 60
    assert max(b for d in facts for b in operands(d)) <= 9
    wide = synthetic_corpus(60, env_ids=["r1/ArithmeticEasy-v0"], seed=1)
    assert max(b for d in wide if re.match(r"^-?\d+ [+-] \d+ = ", d) for b in operands(d)) > 9
