from __future__ import annotations

import pytest
import torch

from r1agent.infra.models import load_model
from r1agent.rl.grpo import token_logprobs
from r1agent.rollout.episodes import EnvPool, collect_episodes
from r1agent.rollout.transformers_engine import generate, sample_tokens
from tests.r1agent.grpo_helpers import register_test_envs, tiny_model

register_test_envs()


@pytest.fixture(scope="module")
def mt(tmp_path_factory):
    return load_model(tiny_model(tmp_path_factory.mktemp("tiny")))


def test_generate_order_lengths_and_seed(mt):
    model, tok = mt
    prompts = ["a", "a longer prompt here", "x y", [5, 6, 7]]
    out = generate(model, tok, prompts, max_new_tokens=6, seed=3, batch_size=3)
    assert len(out) == 4
    assert out[3].prompt_ids == [5, 6, 7]
    assert out[1].prompt_ids == tok("a longer prompt here")["input_ids"]
    for o in out:
        assert 1 <= len(o.completion_ids) <= 6 and len(o.logprobs) == len(o.completion_ids)
        assert o.truncated == (tok.eos_token_id not in o.completion_ids)
    again = generate(model, tok, prompts, max_new_tokens=6, seed=3, batch_size=3)
    assert [o.completion_ids for o in out] == [o.completion_ids for o in again]


def test_min_new_tokens_and_eos(mt):
    model, tok = mt
    eos = tok.eos_token_id

    def hook(_module, _inputs, out):  # make eos overwhelmingly likely
        out = out.clone()
        out[..., eos] += 1000.0
        return out

    handle = model.lm_head.register_forward_hook(hook)
    try:
        out = generate(model, tok, ["hi"] * 3, max_new_tokens=5, temperature=0)
        assert all(o.completion_ids == [eos] and not o.truncated and o.text == "" for o in out)
        out = generate(model, tok, ["hi"] * 3, max_new_tokens=5, min_new_tokens=3, temperature=1.0)
        assert all(len(o.completion_ids) == 4 and o.completion_ids[-1] == eos for o in out)
    finally:
        handle.remove()


def test_logprobs_match_a_full_forward(mt):
    model, tok = mt
    out = generate(
        model, tok, ["hello", "some other text"], max_new_tokens=7, temperature=0.7, seed=0
    )
    for o in out:
        ids = torch.tensor([o.prompt_ids + o.completion_ids])
        with torch.no_grad():
            logits = model(ids).logits[:, len(o.prompt_ids) - 1 : -1]
        ref = token_logprobs(logits, ids[:, len(o.prompt_ids) :], temperature=0.7)[0]
        torch.testing.assert_close(torch.tensor(o.logprobs), ref, atol=1e-4, rtol=1e-4)


def test_sample_tokens_top_p_keeps_nucleus():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.05, 0.05]]))
    g = torch.Generator().manual_seed(0)
    picks = {
        int(sample_tokens(logits, temperature=1.0, top_p=0.8, generator=g)[0]) for _ in range(200)
    }
    assert picks == {0, 1}
    tok, lp = sample_tokens(logits, temperature=0, top_p=1.0, generator=None)
    assert int(tok) == 0 and float(lp) == pytest.approx(float(torch.log(torch.tensor(0.6))))


def test_multiturn_env_tokens_are_masked(mt):
    model, tok = mt
    eps = collect_episodes(
        model,
        tok,
        EnvPool(),
        [("test/DigitTwoTurns-v0", 1)],
        group_size=2,
        prompt_format="observation",
        max_new_tokens=4,
        max_turns=3,
        seed=0,
    )
    for ep in eps:
        assert len(ep.completions) == 2 and ep.done
        zeros = [i for i, m in enumerate(ep.loss_mask) if m == 0]
        assert zeros, "the env's reply must be in the response and masked"
        reply = tok.decode([ep.response_ids[i] for i in zeros])
        assert reply.startswith("Again, digit")
        assert len(ep.loss_mask) == len(ep.response_ids) == len(ep.gen_logprobs)
        assert sum(ep.loss_mask) == sum(1 for m in ep.loss_mask if m)  # policy tokens: weight 1


def test_group_members_share_the_problem(mt):
    model, tok = mt
    eps = collect_episodes(
        model,
        tok,
        EnvPool(),
        [("test/Digit-v0", 1), ("test/Digit-v0", 2)],
        group_size=3,
        prompt_format="chat",
        max_new_tokens=3,
        seed=0,
    )
    assert [e.group for e in eps] == [0, 0, 0, 1, 1, 1]
    assert len({e.prompt for e in eps[:3]}) == 1 and eps[0].prompt.startswith("<|im_start|>user")
