"""The ``forward`` setting: auto | hf | fast, one choice for policy, reference and rollouts."""

from __future__ import annotations

import pydantic
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from r1agent.accel import fastlm
from r1agent.infra.models import load_model
from r1agent.recipes.grpo import train_grpo
from r1agent.rollout.transformers_engine import generate
from tests.r1agent.grpo_helpers import base_config, register_test_envs, tiny_model

register_test_envs()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def _gpt2():
    return GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))


def test_auto_uses_the_accelerator_only_on_cpu_in_float32(model_dir):
    model, _ = load_model(model_dir, dtype="float32", device="cpu")
    assert fastlm.use_fast(model, "auto")
    assert not fastlm.use_fast(model, "auto", distributed=True)  # DDP/FSDP: the wrapper's forward
    assert not fastlm.use_fast(model, "hf")
    assert fastlm.use_fast(model, "fast")
    bf16, _ = load_model(model_dir, dtype="bfloat16", device="cpu")
    assert not fastlm.use_fast(bf16, "auto")
    assert fastlm.use_fast(bf16, "fast")  # an explicit choice is honoured
    assert not fastlm.use_fast(_gpt2(), "auto")


def test_fast_where_it_cannot_run_and_unknown_settings_are_errors(model_dir):
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        fastlm.use_fast(_gpt2(), "fast")
    model, _ = load_model(model_dir, dtype="float32", device="cpu")
    with pytest.raises(ValueError, match="DDP/FSDP"):
        fastlm.use_fast(model, "fast", distributed=True)
    with pytest.raises(ValueError, match="'quick'"):
        fastlm.use_fast(model, "quick")
    with pytest.raises(pydantic.ValidationError, match="forward"):
        base_config(model_dir, "unused", forward="quick")


def test_generate_decodes_with_the_chosen_forward(model_dir, monkeypatch):
    model, tok = load_model(model_dir, dtype="float32", device="cpu")
    calls = []
    real = fastlm.decode

    def spy(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(fastlm, "decode", spy)
    kw = {"max_new_tokens": 6, "temperature": 0.0}
    hf = generate(model, tok, ["1 + 2 ="], forward="hf", **kw)
    assert calls == []
    fast = generate(model, tok, ["1 + 2 ="], forward="fast", **kw)
    assert calls == [1]
    assert hf[0].completion_ids == fast[0].completion_ids  # greedy: the same tokens


@pytest.mark.parametrize("forward", ["auto", "hf", "fast"])
def test_policy_reference_and_rollouts_share_one_forward(model_dir, tmp_path, monkeypatch, forward):
    seen: dict[str, list[int]] = {"logits": [], "decode": []}
    real_logits, real_decode = fastlm.prefix_shared_hidden, fastlm.decode

    def logits_spy(model, *a, **kw):
        seen["logits"].append(id(model))
        return real_logits(model, *a, **kw)

    def decode_spy(model, *a, **kw):
        seen["decode"].append(id(model))
        return real_decode(model, *a, **kw)

    monkeypatch.setattr(fastlm, "prefix_shared_hidden", logits_spy)
    monkeypatch.setattr(fastlm, "decode", decode_spy)
    cfg = base_config(model_dir, tmp_path / forward, forward=forward, beta=0.1, dtype="float32")
    summary = train_grpo(cfg)
    assert summary["steps"] == 2
    if forward == "hf":
        assert seen == {"logits": [], "decode": []}
    else:  # the tiny model on CPU in float32: auto picks the accelerator too
        assert len(set(seen["logits"])) == 2  # the policy and the reference model
        assert seen["decode"]
    assert torch.isfinite(torch.tensor(summary["final"]["losses/kl"]))
