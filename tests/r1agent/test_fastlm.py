"""The lean forward (r1agent.fastlm) against the Hugging Face forward it replaces."""

from __future__ import annotations

import os

import pytest
import torch
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from r1agent.accel import cpu, fastlm, native
from r1agent.rollout.transformers_engine import sample_tokens

SIZES = {
    "vocab_size": 61,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 128,
    "tie_word_embeddings": False,
}
ARCHS = {
    "qwen2": (Qwen2ForCausalLM, Qwen2Config, {}),
    "llama": (LlamaForCausalLM, LlamaConfig, {"attention_bias": True}),
    "qwen3": (Qwen3ForCausalLM, Qwen3Config, {"head_dim": 16}),
}
PROMPTS = [[5, 6, 7], [5, 6, 7], [8, 9, 10, 11, 12], [3], [5, 6, 7]]


def make(arch: str) -> torch.nn.Module:
    cls, cfg_cls, extra = ARCHS[arch]
    torch.manual_seed(0)
    model = cls(cfg_cls(**SIZES, **extra)).float().eval()
    with torch.no_grad():  # non-trivial norms and biases, so a missed one shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(1.0, 0.2)
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
    return model


def hf_rows(prompts: list[list[int]], response: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``[left-padded prompt | response]`` ids, attention mask and positions."""
    p = max(len(x) for x in prompts)
    ids = torch.zeros((len(prompts), p + response.shape[1]), dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, x in enumerate(prompts):
        ids[i, p - len(x) : p] = torch.tensor(x)
        attn[i, p - len(x) :] = 1
    ids[:, p:] = response
    return ids, attn, (attn.cumsum(-1) - 1).clamp(min=0), p


@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_prefix_shared_logits_and_gradients_match_hugging_face(arch):
    model = make(arch)
    assert fastlm.supports(model)
    distinct, index = fastlm.unique_prompts(PROMPTS)
    assert distinct == [[5, 6, 7], [8, 9, 10, 11, 12], [3]] and index == [0, 0, 1, 2, 0]
    p_ids, p_valid, _ = fastlm.left_pad(distinct, 0, torch.device("cpu"))
    response = torch.randint(1, 61, (len(PROMPTS), 6), generator=torch.Generator().manual_seed(1))
    fast = fastlm.prefix_shared_logits(model, p_ids, p_valid, torch.tensor(index), response)

    ids, attn, pos, p = hf_rows(PROMPTS, response)
    ref = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, p - 1 : -1]
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)
    params = list(model.parameters())
    g_fast = torch.autograd.grad(fast.square().mean(), params)
    g_ref = torch.autograd.grad(ref.square().mean(), params)
    for a, b in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_one_token_responses_need_only_the_prompts():
    model = make("qwen2")
    distinct, index = fastlm.unique_prompts(PROMPTS)
    p_ids, p_valid, _ = fastlm.left_pad(distinct, 0, torch.device("cpu"))
    response = torch.tensor([[9], [4], [7], [2], [30]])
    fast = fastlm.prefix_shared_logits(model, p_ids, p_valid, torch.tensor(index), response)
    ids, attn, pos, p = hf_rows(PROMPTS, response)
    ref = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, p - 1 : -1]
    assert fast.shape == (len(PROMPTS), 1, 61)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


def greedy(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return sample_tokens(logits, temperature=0.0, top_p=1.0, generator=None)


@pytest.mark.parametrize("path", ["native", "fused", "unfused", "unfused_native"])
@pytest.mark.parametrize("arch", sorted(ARCHS))
def test_decode_matches_a_full_forward_per_token(arch, path, monkeypatch):
    model = make(arch)
    if path.endswith("native") and native.library() is None:
        pytest.skip("no C compiler for the native kernels")
    if not path.endswith("native"):  # the torch ops the kernels replace
        monkeypatch.setattr(native, "usable", lambda *tensors: False)
    if path.startswith("unfused"):  # large models decode on the unfused weights
        monkeypatch.setattr(cpu, "SMALL_MODEL_PARAMS", 0)
    if path == "unfused_native":  # their products on native.linear_rows, counted
        calls = []
        linear_rows = native.linear_rows
        monkeypatch.setattr(native, "linear_rows", lambda *a: calls.append(1) or linear_rows(*a))
    eos = torch.tensor([1])
    tokens, logps, lengths = fastlm.decode(
        model, PROMPTS, pad_id=0, eos=eos, max_new_tokens=7, min_new_tokens=7, sample=greedy
    )
    assert lengths.tolist() == [7] * len(PROMPTS)
    for i, prompt in enumerate(PROMPTS):
        seq = list(prompt)
        for t in range(7):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([seq])).logits[0, -1]
            logits[1] = float("-inf")  # eos is banned before min_new_tokens
            nxt = int(logits.argmax())
            assert int(tokens[i, t]) == nxt
            assert float(logps[i, t]) == pytest.approx(
                float(torch.log_softmax(logits, -1)[nxt]), abs=1e-5
            )
            seq.append(nxt)
    if path == "unfused_native":
        assert calls


def test_decode_stops_rows_at_eos_and_pads_after():
    model = make("qwen2")
    # an eos the model emits often: the most likely first token of prompt 0
    with torch.no_grad():
        first = int(model(input_ids=torch.tensor([PROMPTS[0]])).logits[0, -1].argmax())
    eos = torch.tensor([first])
    tokens, _, lengths = fastlm.decode(
        model, PROMPTS, pad_id=0, eos=eos, max_new_tokens=5, min_new_tokens=0, sample=greedy
    )
    assert lengths[0] == 1 and tokens[0, 0] == first and (tokens[0, 1:] == 0).all()
    assert (lengths >= 1).all() and (lengths <= 5).all()


def test_eos_is_banned_before_min_new_tokens_then_ends_rows():
    model = make("qwen2")
    with torch.no_grad():
        first = int(model(input_ids=torch.tensor([PROMPTS[0]])).logits[0, -1].argmax())
    eos = torch.tensor([first])
    kw = {"pad_id": 0, "eos": eos, "max_new_tokens": 6, "sample": greedy}
    tokens, _, lengths = fastlm.decode(model, PROMPTS, min_new_tokens=2, **kw)
    assert (tokens[:, :2] != first).all() and (lengths >= 3).all()
    for row, n in zip(tokens, lengths.tolist(), strict=True):
        assert n == 6 or (row[n - 1] == first and (row[n:] == 0).all())


def test_supports_only_plain_llama_family_models():
    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=50))
    assert not fastlm.supports(gpt2)
    dyn = Qwen2Config(**SIZES, rope_parameters={"rope_type": "dynamic", "factor": 2.0})
    assert not fastlm.supports(Qwen2ForCausalLM(dyn))
    sliding = Qwen2Config(**SIZES, use_sliding_window=True, sliding_window=4, max_window_layers=0)
    assert not fastlm.supports(Qwen2ForCausalLM(sliding))


def test_inverse_cdf_sampling_follows_the_distribution():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.2])
    logits = probs.clamp(min=1e-30).log().expand(20_000, 4).clone()
    logits[:, 1] = float("-inf")
    g = torch.Generator().manual_seed(0)
    tokens, logp = sample_tokens(logits, temperature=1.0, top_p=1.0, generator=g)
    freq = torch.bincount(tokens, minlength=4).float() / len(tokens)
    assert freq[1] == 0
    torch.testing.assert_close(freq, probs, atol=0.015, rtol=0)
    torch.testing.assert_close(logp, probs.log()[tokens])
    again, _ = sample_tokens(logits, temperature=1.0, top_p=1.0, generator=g.manual_seed(0))
    assert torch.equal(tokens, again)


def test_inverse_cdf_sampling_never_picks_trailing_zero_probabilities(monkeypatch):
    logits = torch.tensor([[0.2, 1.3, float("-inf"), float("-inf")]]).expand(4, 4).clone()
    # the largest uniform torch.rand can return, where rounding at the top end bites
    top = torch.tensor([[1.0 - 2.0**-53]] * 4, dtype=torch.float64)
    monkeypatch.setattr(torch, "rand", lambda *a, **k: top)
    tokens, logp = sample_tokens(logits, temperature=1.0, top_p=1.0, generator=None)
    assert tokens.tolist() == [1, 1, 1, 1]
    torch.testing.assert_close(logp, torch.log_softmax(logits, -1)[:, 1])


def test_busy_cores_leave_out_this_process_own_work():
    import threading

    stop = threading.Event()

    def spin():  # one core's worth of this process's own work
        while not stop.is_set():
            pass

    # other processes' load varies (CI, parallel jobs): compare with and without the spinner,
    # taking the quietest of a few windows each
    others = min(cpu._busy_cores(0.3) for _ in range(3))
    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        busy = min(cpu._busy_cores(0.3) for _ in range(3))
    finally:
        stop.set()
        spinner.join()
    assert busy < others + 0.6  # counted, the spinner alone would add about one busy core


def test_small_models_use_the_cores_idle_at_start(monkeypatch):
    model = make("qwen2")
    assert 0.0 <= cpu._busy_cores(0.05) <= (os.cpu_count() or 1) + 0.01
    monkeypatch.setattr(cpu, "_IDLE_CORES", None)
    monkeypatch.setattr(cpu.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(cpu, "_busy_cores", lambda: 2.7)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert cpu.idle_cores() == 1
    assert cpu.small_model_threads(model) == 1
    monkeypatch.setattr(cpu, "_IDLE_CORES", None)
    monkeypatch.setattr(cpu, "_busy_cores", lambda: 0.2)
    assert cpu.small_model_threads(model) == 4
    monkeypatch.setattr(cpu, "SMALL_MODEL_PARAMS", 10)
    assert cpu.small_model_threads(model) is None


def test_trainer_batches_share_prompts_and_micro_batches_keep_theirs():
    from r1agent.rl.batch import build_batch, response_logits
    from r1agent.rollout.episodes import Episode

    model = make("qwen2")
    episodes = []
    for g, (prompt, resp) in enumerate(
        [(p, [7 + i, 9, 11 + i][: 1 + i % 3]) for i, p in enumerate(PROMPTS)]
    ):
        episodes.append(
            Episode(
                g,
                "x",
                0,
                "",
                prompt,
                response_ids=resp,
                loss_mask=[1.0] * len(resp),
                gen_logprobs=[0.0] * len(resp),
            )
        )
    batch = build_batch(episodes, torch.zeros(len(episodes)), torch.ones(len(episodes)), 0)
    assert batch.prompt_ids.shape[0] == 3 and batch.prompt_index.tolist() == [0, 0, 1, 2, 0]
    mb = batch.rows(slice(2, 4))
    assert mb.prompt_ids.shape[0] == 2 and mb.prompt_index.tolist() == [0, 1]
    # a micro-batch keeps the columns up to its own longest response
    assert batch.response_ids.shape[1] == 3 and batch.rows(slice(3, 4)).mask.shape == (1, 1)
    assert batch.rows(torch.tensor([0, 3])).response_ids.shape == (2, 1)
    r = batch.response_ids.shape[1]
    for b in (batch, mb):
        ids, attn, pos = b.full_rows()
        assert ids.shape == attn.shape == (len(b.response_ids), b.prompt_ids.shape[1] + r)
        out = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, -r - 1 : -1]
        valid = b.mask > 0  # positions after a response's end are padding
        torch.testing.assert_close(
            response_logits(model, b)[valid], out[valid], atol=1e-5, rtol=1e-5
        )


def test_finished_rows_leave_the_batch_without_changing_the_others(monkeypatch):
    from r1agent.rollout import transformers_engine as rollout

    model = make("llama")
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12], [3], [4, 4], [9, 8, 7, 6], [2, 13], [5, 6, 7], [1]]
    kw = {"pad_id": 0, "max_new_tokens": 12, "min_new_tokens": 0, "sample": greedy}
    free, _, _ = fastlm.decode(model, prompts, eos=torch.tensor([60]), **kw)
    # an eos most rows reach at different steps, so the batch shrinks several times
    eos_id = int(torch.mode(free[:, :6].flatten()).values)
    eos = torch.tensor([eos_id])
    tokens, logps, lengths = fastlm.decode(model, prompts, eos=eos, **kw)
    assert len(set(lengths.tolist())) > 2

    monkeypatch.setattr(rollout.fastlm, "supports", lambda m: False)  # Hugging Face reference
    ref_t, ref_lp, ref_len = rollout._decode_batch(
        model,
        prompts,
        pad_id=0,
        eos=eos,
        max_new_tokens=12,
        min_new_tokens=0,
        temperature=0.0,
        top_p=1.0,
        generator=None,
    )
    assert torch.equal(lengths, ref_len) and torch.equal(tokens, ref_t)
    torch.testing.assert_close(logps, ref_lp, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("arch", ["qwen2", "qwen3"])
def test_bfloat16_weights_and_autocast_run_and_match(arch):
    model = make(arch).to(torch.bfloat16)
    distinct, index = fastlm.unique_prompts(PROMPTS)
    p_ids, p_valid, _ = fastlm.left_pad(distinct, 0, torch.device("cpu"))
    response = torch.randint(1, 61, (len(PROMPTS), 4), generator=torch.Generator().manual_seed(2))
    fast = fastlm.prefix_shared_logits(model, p_ids, p_valid, torch.tensor(index), response)
    ids, attn, pos, p = hf_rows(PROMPTS, response)
    ref = model(input_ids=ids, attention_mask=attn, position_ids=pos).logits[:, p - 1 : -1]
    assert fast.dtype == torch.bfloat16
    torch.testing.assert_close(fast.float(), ref.float(), atol=0.05, rtol=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        tokens, logps, lengths = fastlm.decode(
            make(arch),
            PROMPTS,
            pad_id=0,
            eos=torch.tensor([1]),
            max_new_tokens=4,
            min_new_tokens=0,
            sample=greedy,
        )
    assert tokens.shape == (len(PROMPTS), 4) and torch.isfinite(logps).all()
