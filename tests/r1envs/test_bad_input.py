"""Hostile completions: every id returns from step() quickly with reward 0 and no error."""

from __future__ import annotations

import random
import time

import gymnasium as gym
import pytest

import r1envs

ENV_IDS = [i for i in r1envs.list_envs("r1") if "Code" not in i]  # code: tests/r1envs/sandbox


def _random_unicode(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        cp = rng.randrange(0x110000)
        if 0xD800 <= cp <= 0xDFFF:
            cp = 0x20
        out.append(chr(cp))
    return "".join(out)


BAD = {
    "10MB": "1 + 1 = 2. " * 1_000_000,
    "tower": "\\boxed{10^{10^{10^{10}}}}",
    "tower_answer": "<answer>10^{10^{10^{10}}}</answer>",
    "factorial": "\\boxed{99999999!}",
    "nested_braces": "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "unbalanced": "\\boxed{" + "{" * 20000,
    "nul": "\x00" * 10000 + "\\boxed{\x00}",
    "surrogate": "\\boxed{\ud800}",
    "random_unicode": _random_unicode(100_000),
    "deep_parens": "<answer>" + "(" * 10000 + "1" + ")" * 10000 + "</answer>",
}


@pytest.mark.parametrize("env_id", ENV_IDS)
@pytest.mark.parametrize("name", sorted(BAD))
def test_hostile_completion(env_id, name):
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    t0 = time.perf_counter()
    _, reward, terminated, truncated, info = env.step(BAD[name])
    elapsed = time.perf_counter() - t0
    assert elapsed < 6.0, f"{env_id} took {elapsed:.1f}s on {name}"
    assert reward == 0.0 and info["correct"] is False
    assert info["error"] is None
    assert terminated and not truncated
