"""Held-out pass@1 during training (PeriodicEval) on the tiny model and a known oracle."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from r1agent.eval.evaluate import HELDOUT_SEED, heldout_problems
from r1agent.eval.periodic import PeriodicEval
from r1agent.infra.models import load_model
from r1agent.rollout.engine import Completion
from r1agent.rollout.transformers_engine import generate

ARITH, COUNTDOWN = "r1/Arithmetic-v0", "r1/Countdown-v0"
ENVS = [ARITH, COUNTDOWN]


@pytest.fixture(scope="module")
def policy(tiny):
    model, tokenizer = load_model(str(tiny))
    return model, tokenizer


class Recorder:
    """A generate function that records its calls, the model's mode and draws global RNG."""

    def __init__(self, inner=generate):
        self.inner, self.calls, self.modes = inner, [], []

    def __call__(self, model, tokenizer, prompts, **kw):
        self.calls.append((list(prompts), kw))
        self.modes.append(model.training)
        random.random(), np.random.rand(), torch.rand(4)  # a sampler that uses global RNG
        return self.inner(model, tokenizer, prompts, **kw)


def test_values_problems_weights_and_rng(policy):
    model, tokenizer = policy
    ev = PeriodicEval(ENVS, every=5, problems=6, max_new_tokens=8, seed=3)
    gen = Recorder()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()

    assert ev(7, model, tokenizer, gen) == {}  # not a multiple of 5
    assert gen.calls == []
    torch.manual_seed(11), random.seed(11), np.random.seed(11)
    first = ev(5, model, tokenizer, gen)
    draws = (torch.rand(3), random.random(), np.random.rand())
    second = ev(10, model, tokenizer, gen)

    torch.manual_seed(11), random.seed(11), np.random.seed(11)
    undisturbed = (torch.rand(3), random.random(), np.random.rand())
    torch.testing.assert_close(draws[0], undisturbed[0])  # training's RNG stream is unchanged
    assert draws[1:] == undisturbed[1:]
    assert model.training and gen.modes == [False, False]  # eval mode inside, train mode after
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, weights[k])

    assert set(first) == {
        "eval/pass@1",
        f"eval/pass@1/{ARITH}",
        f"eval/pass@1/{COUNTDOWN}",
        "eval/response_length_mean",
        "eval/truncated",
        "eval/seconds",
    }
    for key in ("eval/pass@1", f"eval/pass@1/{ARITH}", "eval/truncated"):
        assert 0.0 <= first[key] <= 1.0
    assert 0 < first["eval/response_length_mean"] <= 8 and first["eval/seconds"] > 0
    (p1, kw1), (p2, kw2) = gen.calls
    assert p1 == p2 and kw1 == kw2 and len(p1) == 6  # the same problems and sampling seed
    assert kw1["temperature"] == 0.6 and kw1["top_p"] == 0.95 and kw1["max_new_tokens"] == 8
    expected = [p.prompt for p in heldout_problems(ENVS, 6)]
    assert p1 == expected  # env seeds HELDOUT_SEED + i, env ids in turn
    second.pop("eval/seconds"), first.pop("eval/seconds")
    assert second == first  # same weights, problems and seed: the same numbers


def oracle(answers, right):
    """A generate function answering ``answers[prompt]`` when ``right(answer)``, else 'none'."""

    def fn(model, tokenizer, prompts, **kw):
        outs = []
        for p in prompts:
            a = answers.get(p)
            text = f"<think> sum </think> <answer> {a if a and right(a) else 'none'} </answer>"
            outs.append(Completion([1, 2], [5] * (len(p) % 5 + 1), text, None, False))
        return outs

    return fn


def test_pass_at_1_matches_hand_count(policy):
    model, tokenizer = policy
    n = 20
    problems = heldout_problems(ENVS, n)
    answers = {p.prompt: p.info["problem"]["answer"] for p in problems if p.env_id == ARITH}
    even = lambda a: int(a) % 2 == 0  # noqa: E731
    n_arith = sum(p.env_id == ARITH for p in problems)
    n_even = sum(even(a) for a in answers.values())
    assert 0 < n_even < n_arith  # the oracle is right on some problems only

    ev = PeriodicEval(ENVS, every=1, problems=n, max_new_tokens=4, batch_size=3)
    got = ev(1, model, tokenizer, oracle(answers, even))
    assert got[f"eval/pass@1/{ARITH}"] == pytest.approx(n_even / n_arith)
    assert got[f"eval/pass@1/{COUNTDOWN}"] == 0.0
    assert got["eval/pass@1"] == pytest.approx(n_even / n)
    lengths = [len(p.prompt) % 5 + 1 for p in problems]
    assert got["eval/response_length_mean"] == pytest.approx(sum(lengths) / n)

    answers = {p.prompt: p.info["problem"]["answer"] for p in heldout_problems([ARITH], 4)}
    always = PeriodicEval([ARITH], every=1, problems=4, max_new_tokens=4)
    assert always(1, model, tokenizer, oracle(answers, lambda a: True))["eval/pass@1"] == 1.0


def test_shards_split_the_problems(policy):
    model, tokenizer = policy
    shards = [
        PeriodicEval(ENVS, every=2, problems=7, max_new_tokens=4, rank=r, world=3).problems(
            tokenizer
        )
        for r in range(3)
    ]
    seeds = sorted(p.seed for shard in shards for p in shard)
    assert seeds == list(range(HELDOUT_SEED, HELDOUT_SEED + 7))
    assert [len(s) for s in shards] == [3, 2, 2]


def test_off_and_bad_settings(policy):
    model, tokenizer = policy
    off = PeriodicEval(ENVS, every=0, max_new_tokens=4)
    assert not any(off.due(s) for s in range(10)) and off(4, model, tokenizer) == {}
    with pytest.raises(ValueError, match="problems: 0"):
        PeriodicEval(ENVS, every=1, problems=0, max_new_tokens=4)
    with pytest.raises(ValueError, match="every: -1"):
        PeriodicEval(ENVS, every=-1, max_new_tokens=4)
    with pytest.raises(ValueError, match="rank: 2, world: 2"):
        PeriodicEval(ENVS, every=1, max_new_tokens=4, rank=2, world=2)
    with pytest.raises(ValueError, match="env_ids"):
        PeriodicEval([], every=1, max_new_tokens=4)


def test_from_config_reads_the_eval_settings(tmp_path):
    from r1agent.infra.config import GRPOConfig

    c = GRPOConfig(
        model="m",
        output_dir=str(tmp_path),
        envs={ARITH: 1.0, COUNTDOWN: 2.0},
        eval_every=25,
        eval_problems=32,
        max_new_tokens=48,
        seed=7,
    )
    ev = PeriodicEval.from_config(c, rank=1, world=2)
    assert (ev.env_ids, ev.every, ev.n, ev.max_new_tokens, ev.seed) == (ENVS, 25, 32, 48, 7)
    assert (ev.rank, ev.world, ev.temperature, ev.top_p) == (1, 2, 0.6, 0.95)
    assert ev.due(50) and not ev.due(49)
