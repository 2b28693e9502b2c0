"""Small Gymnasium text envs and a tiny-model builder shared by the trainer tests."""

from __future__ import annotations

import math

import gymnasium as gym

from r1envs.spaces import UnicodeText


class DigitEnv(gym.Env):
    """Reward = fraction of characters in ``a..m`` (dense, varied even for a random model).

    ``fail="outage"``: every step reports ``info["error"]`` while ``DigitEnv.down`` is set.
    """

    down = False

    def __init__(self, fail: str | None = None, turns: int = 1) -> None:
        self.observation_space = UnicodeText(1000)
        self.action_space = UnicodeText(100_000)
        self.fail, self.turns, self.t, self.target = fail, turns, 0, "7"

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.fail == "reset" and self.np_random.random() < 0.5:
            raise RuntimeError("problem loader crashed")
        self.target, self.t = str(int(self.np_random.integers(0, 10))), 0
        q = f"Write the digit {self.target} many times:"
        return q, {"messages": [{"role": "user", "content": q}]}

    def step(self, action):
        self.t += 1
        if self.fail == "raise" and self.t == 1 and self.np_random.random() < 0.5:
            raise RuntimeError("verifier crashed")
        score = sum("a" <= ch <= "m" for ch in action) / max(1, len(action))
        info = {"rewards": {"digit": score}, "correct": score > 0.5, "error": None}
        if self.fail == "error" and self.np_random.random() < 0.5:
            info["error"] = "grader timeout"
        if self.fail == "outage" and DigitEnv.down:
            info["error"] = "sandbox unreachable"
        if self.fail == "nan" and self.np_random.random() < 0.5:
            score = math.nan
        done = self.t >= self.turns
        return ("" if done else f"Again, digit {self.target}:"), float(score), done, False, info


def register_test_envs() -> None:
    """Register the test envs (idempotent)."""
    specs = {
        "test/Digit-v0": {},
        "test/DigitRaise-v0": {"fail": "raise"},
        "test/DigitError-v0": {"fail": "error"},
        "test/DigitNaN-v0": {"fail": "nan"},
        "test/DigitResetRaise-v0": {"fail": "reset"},
        "test/DigitTwoTurns-v0": {"turns": 2},
        "test/DigitOutage-v0": {"fail": "outage"},
    }
    for env_id, kwargs in specs.items():
        if env_id not in gym.registry:
            gym.register(env_id, entry_point=DigitEnv, kwargs=kwargs)


def tiny_model(path) -> str:
    """A very small tiny-factory model (fast tests)."""
    from r1agent.infra.tiny import build_tiny_model

    build_tiny_model(
        path, hidden=64, layers=2, heads=4, kv_heads=2, intermediate=128, vocab_size=400
    )
    return str(path)


def base_config(model: str, out, **kw):
    """A tiny, fast GRPO config on the digit env."""
    from r1agent.infra.config import load_config

    data = {
        "model": model,
        "output_dir": str(out),
        "envs": {"test/Digit-v0": 1.0},
        "steps": 2,
        "prompts_per_step": 2,
        "group_size": 4,
        "max_new_tokens": 8,
        "lr": 1e-3,
        "progress": False,
        "tensorboard": False,
        "plots": False,
        "seed": 0,
    }
    data.update(kw)
    return load_config(data)
