"""LoRA (PEFT) in the GRPO trainer, gradient checkpointing, and chunked log-probs in the update."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from r1agent.infra import lora
from r1agent.infra.config import LoraConfig
from r1agent.infra.distributed import Dist
from r1agent.infra.models import load_model
from r1agent.recipes import grpo as grpo_recipe
from r1agent.recipes.grpo import train_grpo
from r1agent.rl.batch import build_batch, response_logprobs
from r1agent.rollout.episodes import Episode
from tests.r1agent.grpo_helpers import base_config, register_test_envs, tiny_model
from tests.r1agent.test_trainer_learning import heldout_reward, sft

register_test_envs()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("lora") / "tiny")


def _episodes(tok, n_prompts=2, group=3, seed=0):
    rng = np.random.default_rng(seed)
    eps = []
    for i in range(n_prompts):
        prompt = tok(f"question {i}: what is {i}+{i}?")["input_ids"]
        for _ in range(group):
            k = int(rng.integers(2, 7))
            resp = [int(t) for t in rng.integers(5, 300, size=k)]
            eps.append(
                Episode(
                    group=i,
                    env_id="test/Digit-v0",
                    seed=i,
                    prompt=f"q{i}",
                    prompt_ids=prompt,
                    response_ids=resp,
                    loss_mask=[1] * k,
                    gen_logprobs=[0.0] * k,
                    reward=float(rng.random()),
                )
            )
    return eps


def _batch(tok, eps):
    adv = torch.linspace(-1, 1, len(eps))
    return build_batch(eps, adv, torch.ones(len(eps)), tok.pad_token_id)


@pytest.mark.parametrize("fast", [True, False])
def test_chunked_logprobs_in_the_update_equal_full_logits(model_dir, fast):
    model, tok = load_model(model_dir, dtype="float32", device="cpu")
    b = _batch(tok, _episodes(tok))
    grads = {}
    values = {}
    for chunk in (None, 3, 1024):
        model.zero_grad()
        logp, ent = response_logprobs(model, b, temperature=0.7, chunk=chunk, fast=fast)
        (logp * b.mask).sum().backward()
        values[chunk] = (logp.detach() * b.mask, ent * b.mask)
        grads[chunk] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for chunk in (3, 1024):
        torch.testing.assert_close(values[chunk][0], values[None][0], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(values[chunk][1], values[None][1], atol=1e-5, rtol=1e-5)
        for n, g in grads[None].items():
            torch.testing.assert_close(grads[chunk][n], g, atol=1e-5, rtol=1e-4, msg=n)


def test_tied_embedding_gradient_on_the_accelerator_is_dense_and_exact(model_dir):
    # a tied table (Qwen2.5-0.5B's) gets the head's dense gradient plus the lookup's sparse one
    model, tok = load_model(model_dir, dtype="float32", device="cpu")
    model.lm_head.weight = model.model.embed_tokens.weight
    b = _batch(tok, _episodes(tok))
    grads = {}
    for fast, chunk in ((False, None), (True, 3)):
        model.zero_grad(set_to_none=True)
        logp, _ = response_logprobs(model, b, temperature=0.7, chunk=chunk, fast=fast)
        (logp * b.mask).sum().backward()
        grads[fast] = {n: p.grad for n, p in model.named_parameters()}
    table = grads[True]["model.embed_tokens.weight"]
    assert table.layout == torch.strided and table.abs().sum() > 0
    for n, g in grads[False].items():
        torch.testing.assert_close(grads[True][n], g, atol=1e-5, rtol=1e-4, msg=n)
    torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True).step()  # dense grads only


@pytest.mark.parametrize("fast", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients(model_dir, fast):
    model, tok = load_model(model_dir, dtype="float32", device="cpu")
    b = _batch(tok, _episodes(tok))
    grads = []
    for ckpt in (False, True):
        if not fast:
            if ckpt:
                model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
            else:
                model.gradient_checkpointing_disable()
        model.train()
        model.zero_grad()
        logp, _ = response_logprobs(model, b, temperature=1.0, fast=fast, checkpoint=ckpt)
        (logp * b.mask).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n, g in grads[0].items():
        torch.testing.assert_close(grads[1][n], g, atol=1e-5, rtol=1e-4, msg=n)


def test_gradient_checkpointing_default_follows_model_size(model_dir, tmp_path, monkeypatch):
    from r1agent.infra import plan

    model, _ = load_model(model_dir, dtype="float32", device="cpu")
    n = sum(p.numel() for p in model.parameters())
    cfg = base_config(model_dir, tmp_path / "run", forward="hf", steps=1)
    assert plan.resolve_gradient_checkpointing(cfg, n) is False
    monkeypatch.setattr(plan, "BIG_MODEL_PARAMS", n - 1)
    assert plan.resolve_gradient_checkpointing(cfg, n) is True
    off = cfg.model_copy(update={"gradient_checkpointing": False})
    assert plan.resolve_gradient_checkpointing(off, n) is False
    seen = []
    real = grpo_recipe.build_policy

    def spy(*a, **kw):
        p = real(*a, **kw)
        seen.append((p.checkpointing, p.model.is_gradient_checkpointing))
        return p

    monkeypatch.setattr(grpo_recipe, "build_policy", spy)
    train_grpo(cfg)
    assert seen == [(True, True)]


def test_lora_policy_on_the_default_forward_is_checkpointed(model_dir, tmp_path):
    # forward: auto picks the CPU accelerator for a plain model, which LoRA then turns off:
    # checkpointing must follow the forward the adapters actually run on
    cfg = base_config(
        model_dir, tmp_path / "run", steps=1, lora={"r": 4, "alpha": 8}, gradient_checkpointing=True
    )
    p = grpo_recipe.build_policy(cfg, Dist(), torch.device("cpu"), None, None, None)
    assert not p.fast and p.checkpointing
    assert p.model.base_model.model.is_gradient_checkpointing


def test_lora_run_trains_adapters_only_and_saves_an_adapter(model_dir, tmp_path):
    base, _ = load_model(model_dir, dtype="float32", device="cpu")
    before = {n: p.clone() for n, p in base.state_dict().items()}
    cfg = base_config(
        model_dir,
        tmp_path / "run",
        lora={"r": 4, "alpha": 8},
        beta=0.1,
        lr=1e-2,
        save_every=1,
        steps=2,
    )
    summary = train_grpo(cfg)
    out = tmp_path / "run"
    assert (out / lora.ADAPTER_CONFIG).is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()
    assert lora.adapter_base(out) == model_dir
    step1 = out / "checkpoints" / "step-000001"
    assert (step1 / lora.ADAPTER_CONFIG).is_file()
    kl = [r["losses/kl"] for r in summary["history"]]
    assert kl[0] == pytest.approx(0.0, abs=1e-6)  # B = 0 at init: the policy is the base
    assert np.isfinite(kl).all()
    merged, _ = load_model(str(out), dtype="float32", device="cpu")  # base + adapter, merged
    changed = [n for n, t in merged.state_dict().items() if not torch.equal(t, before[n])]
    assert changed and all(".mlp." in n or ".self_attn." in n for n in changed)
    adapter_cfg = json.loads((out / lora.ADAPTER_CONFIG).read_text())
    assert adapter_cfg["r"] == 4 and adapter_cfg["lora_alpha"] == 8


def test_lora_run_resumes_from_its_adapter_checkpoint(model_dir, tmp_path):
    kw = {"lora": {"r": 4, "alpha": 8}, "lr": 1e-2, "save_every": 1}
    full = train_grpo(base_config(model_dir, tmp_path / "full", steps=3, **kw))
    train_grpo(base_config(model_dir, tmp_path / "cut", steps=2, **kw))
    resumed = train_grpo(base_config(model_dir, tmp_path / "cut", steps=3, **kw))
    assert resumed["steps"] == 3
    a, _ = load_model(str(tmp_path / "full"), dtype="float32", device="cpu")
    b, _ = load_model(str(tmp_path / "cut"), dtype="float32", device="cpu")
    for (n, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        torch.testing.assert_close(x, y, atol=1e-6, rtol=1e-5, msg=n)
    assert full["final"]["charts/reward"] == pytest.approx(resumed["final"]["charts/reward"])


def test_a_lora_target_that_matches_nothing_is_named_before_training(model_dir, tmp_path):
    cfg = base_config(model_dir, tmp_path / "run", lora={"target_modules": ["q_proj", "qkv_proj"]})
    with pytest.raises(ValueError, match="qkv_proj"):
        train_grpo(cfg)
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_quantized_lora_without_cuda_is_a_clear_error(model_dir, tmp_path):
    cfg = base_config(model_dir, tmp_path / "run", lora={"quantize": "4bit"}, device="cpu")
    with pytest.raises(ValueError, match="quantize: 4bit needs a CUDA device"):
        train_grpo(cfg)


def test_merged_weights_are_named_like_the_base_and_restore_the_adapter(model_dir):
    model, tok = load_model(model_dir, dtype="float32", device="cpu")
    names = list(model.state_dict())
    peft_model = lora.apply_lora(model, LoraConfig(r=4, alpha=8))
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    ids = torch.tensor([tok("what is 2+2?")["input_ids"]])
    want = peft_model(input_ids=ids).logits
    with lora.merged_weights(peft_model) as weights:
        assert [n for n, _ in weights] == names
        plain, _ = load_model(model_dir, dtype="float32", device="cpu")
        plain.load_state_dict(dict(weights))
    torch.testing.assert_close(plain(input_ids=ids).logits, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(peft_model(input_ids=ids).logits, want)  # unmerged again
    with lora.reference_context(peft_model):
        base_logits = peft_model(input_ids=ids).logits
    fresh, _ = load_model(model_dir, dtype="float32", device="cpu")
    torch.testing.assert_close(base_logits, fresh(input_ids=ids).logits, atol=1e-5, rtol=1e-5)


def test_lora_grpo_raises_heldout_reward(tmp_path):
    torch.manual_seed(0)
    path = tiny_model(tmp_path / "tiny")
    model, tok = load_model(path)
    sft(model, tok, steps=150)  # held-out reward about 0.5: room to learn
    before = heldout_reward(model, tok)
    cfg = base_config(
        path,
        tmp_path / "run",
        envs={"test/Add-v0": 1.0},
        steps=300,
        prompts_per_step=16,
        group_size=8,
        max_new_tokens=4,
        lr=1e-3,
        lora={"r": 16, "alpha": 32},
        seed=0,
    )
    summary = train_grpo(cfg, model=model, tokenizer=tok)
    after = heldout_reward(model, tok)
    print(f"LoRA held-out mean reward: before {before:.3f} after {after:.3f}")
    # 400 held-out problems at T=1: the std of a difference of two means is about 0.035
    assert after > before + 0.06, (before, after)
    rewards = [r["charts/reward"] for r in summary["history"]]
    assert np.mean(rewards[-50:]) > np.mean(rewards[:50]) + 0.03


def test_sft_loss_from_hidden_states_equals_the_full_logits_loss(model_dir):
    from r1agent.data.sft import collate
    from r1agent.recipes.sft import batch_loss, response_loss

    model, tok = load_model(model_dir, dtype="float32", device="cpu")
    rows = [
        [(tok("a b c d e")["input_ids"], [-100, -100] + tok("c d e")["input_ids"])],
        [(tok("x y z")["input_ids"], [-100] + tok("y z")["input_ids"])],
    ]
    rows = [[(ids, lab[: len(ids)] + [-100] * (len(ids) - len(lab)))] for [(ids, lab)] in rows]
    b = collate(rows, tok.pad_token_id)
    want, n_want = response_loss(
        model(
            input_ids=b["input_ids"],
            attention_mask=b["attention_mask"],
            position_ids=b["position_ids"],
        ).logits,
        b["labels"],
    )
    want.backward()
    g_want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    got, n_got = batch_loss(model, rows, tok.pad_token_id, chunk=2)
    got.backward()
    assert n_got == n_want > 0
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, g_want[n], atol=1e-5, rtol=1e-4, msg=n)


def test_sft_with_lora_learns_and_saves_an_adapter(model_dir, tmp_path):
    from r1agent.data.sft import Example
    from r1agent.recipes.sft import SFTConfig, train_sft

    model, tok = load_model(model_dir, dtype="float32", device="cpu")
    examples = [Example(f"{a}+{b}=", f"{a + b}") for a in range(10) for b in range(10)]
    # a randomly initialised LM head is too small to be confident through frozen weights:
    # a few full fine-tuning steps first stand in for pretraining
    warm = SFTConfig(output_dir=str(tmp_path / "warm"), max_steps=15, lr=1e-2, batch_size=16)
    train_sft(model, tok, examples, warm)
    model, tok = load_model(str(tmp_path / "warm"), dtype="float32", device="cpu")  # the base
    frozen = {n: p.clone() for n, p in model.named_parameters()}
    cfg = SFTConfig(
        output_dir=str(tmp_path / "sft"),
        max_steps=60,
        lr=1e-2,
        batch_size=16,
        warmup_steps=0,
        lora={"r": 8, "alpha": 16},
    )
    summary = train_sft(model, tok, examples, cfg)
    losses = [json.loads(x)["sft/loss"] for x in (tmp_path / "sft" / "sft_metrics.jsonl").open()]
    print("LoRA SFT loss", losses[0], "->", np.mean(losses[-10:]))
    assert np.mean(losses[-10:]) < 0.85 * losses[0], losses
    assert summary["steps"] == 60
    out = tmp_path / "sft"
    assert (out / lora.ADAPTER_CONFIG).is_file() and not (out / "model.safetensors").exists()
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for n, p in base.named_parameters():  # the base stayed frozen
        if "lora_" not in n:
            assert torch.equal(p, frozen[n.replace(".base_layer", "")]), n
    merged, _ = load_model(str(out), dtype="float32", device="cpu")
    ids = torch.tensor([tok("3+4=")["input_ids"]])
    torch.testing.assert_close(
        merged(input_ids=ids).logits, model(input_ids=ids).logits, atol=1e-5, rtol=1e-5
    )


def test_eval_every_and_report_to_in_a_run_leave_training_unchanged(model_dir, tmp_path):
    plain = train_grpo(base_config(model_dir, tmp_path / "plain", steps=3))
    evald = train_grpo(
        base_config(
            model_dir,
            tmp_path / "eval",
            steps=3,
            eval_every=2,
            eval_problems=4,
            report_to=["tensorboard"],
        )
    )
    hist = evald["history"]
    assert [("eval/pass@1" in r) for r in hist] == [False, True, False]
    assert 0.0 <= hist[1]["eval/pass@1"] <= 1.0
    for a, b in zip(plain["history"], hist, strict=True):
        assert a["charts/reward"] == b["charts/reward"]
        assert a["losses/grad_norm"] == b["losses/grad_norm"]
    assert list((tmp_path / "eval").rglob("events.out.tfevents*"))
