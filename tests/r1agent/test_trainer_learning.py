"""The trainer learns: GRPO raises held-out reward of a briefly SFT-ed tiny model."""

from __future__ import annotations

import re

import gymnasium as gym
import numpy as np
import torch

from r1agent.infra.models import load_model
from r1agent.recipes.grpo import train_grpo
from r1agent.rollout.episodes import EnvPool, collect_episodes
from r1envs.spaces import UnicodeText
from tests.r1agent.grpo_helpers import base_config, tiny_model

HELDOUT = 10_000_000


class AddEnv(gym.Env):
    """``a+b=`` with a, b in 0..9; reward 1 when the first number of the completion is a+b."""

    def __init__(self) -> None:
        self.observation_space = UnicodeText(100)
        self.action_space = UnicodeText(10_000)
        self.a = self.b = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.a, self.b = (int(x) for x in self.np_random.integers(0, 10, size=2))
        q = f"{self.a}+{self.b}="
        return q, {"messages": [{"role": "user", "content": q}]}

    def step(self, action):
        m = re.match(r"\s*(\d+)", action)
        ok = bool(m) and int(m.group(1)) == self.a + self.b
        info = {"rewards": {"accuracy": float(ok)}, "correct": ok, "error": None}
        return "", float(ok), True, False, info


if "test/Add-v0" not in gym.registry:
    gym.register("test/Add-v0", entry_point=AddEnv)


def sft(model, tok, steps, seed=0):
    """Teacher forcing on 'a+b=' -> 'S<eos>' (loss on the answer only)."""
    torch.set_num_threads(1)  # a small model: see r1agent.models.small_model_threads
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        rows = []
        for _ in range(32):
            a, b = rng.integers(0, 10, size=2)
            p = tok(f"{a}+{b}=")["input_ids"]
            c = tok(f"{a + b}")["input_ids"] + [tok.eos_token_id]
            rows.append((p, c))
        n = max(len(p) + len(c) for p, c in rows)
        ids = torch.full((len(rows), n), tok.pad_token_id)
        labels = torch.full((len(rows), n), -100)
        for i, (p, c) in enumerate(rows):
            ids[i, : len(p) + len(c)] = torch.tensor(p + c)
            labels[i, len(p) : len(p) + len(c)] = torch.tensor(c)
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def heldout_reward(model, tok, n=400):
    eps = collect_episodes(
        model,
        tok,
        EnvPool(),
        [("test/Add-v0", HELDOUT + i) for i in range(n)],
        group_size=1,
        prompt_format="observation",
        max_new_tokens=4,
        temperature=1.0,
        seed=123,
    )
    return float(np.mean([e.reward for e in eps]))


def test_grpo_raises_heldout_reward(tmp_path):
    torch.manual_seed(0)
    path = tiny_model(tmp_path / "tiny")
    model, tok = load_model(path)
    sft(model, tok, steps=150)  # held-out reward about 0.5: room to learn
    before = heldout_reward(model, tok)
    cfg = base_config(
        path,
        tmp_path / "run",
        envs={"test/Add-v0": 1.0},
        steps=200,
        prompts_per_step=16,
        group_size=8,
        max_new_tokens=4,
        lr=3e-4,
        seed=0,
    )
    summary = train_grpo(cfg, model=model, tokenizer=tok)
    after = heldout_reward(model, tok)
    print(f"held-out mean reward: before {before:.3f} after {after:.3f}")
    # 400 held-out problems at T=1: the std of a difference of two means is about 0.035
    assert after > before + 0.08, (before, after)
    rewards = [r["charts/reward"] for r in summary["history"]]
    assert np.mean(rewards[-40:]) > np.mean(rewards[:40]) + 0.05
