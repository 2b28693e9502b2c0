from __future__ import annotations

import multiprocessing as mp

from gymnasium.vector.utils import shared_memory as sm

from r1envs.spaces import UnicodeText


def test_contains_any_unicode():
    space = UnicodeText(100)
    assert space.contains("∀x ∈ ℝ: 你好 😀 \x00")
    assert not space.contains("x" * 101) and not space.contains(3)
    assert all(space.contains(space.sample()) for _ in range(20))


def test_shared_memory_roundtrip():
    space = UnicodeText(64)
    mem = sm.create_shared_memory(space, n=3, ctx=mp)
    texts = ["∨ ∧ ¬ 你好 😀", "", "x" * 64]
    for i, t in enumerate(texts):
        sm.write_to_shared_memory(space, i, t, mem)
    assert sm.read_from_shared_memory(space, mem, n=3) == tuple(texts)
    sm.write_to_shared_memory(space, 0, "short", mem)
    assert sm.read_from_shared_memory(space, mem, n=3)[0] == "short"
