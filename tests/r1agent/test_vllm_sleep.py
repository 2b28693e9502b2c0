"""Sleep mode of the colocated vLLM engine, against a stand-in ``vllm`` module that records
every call the engine makes (no vLLM, no GPU needed)."""

from __future__ import annotations

import types

import pytest
import torch

from r1agent.infra.config import RolloutConfig, load_config
from r1agent.rollout import vllm_engine
from r1agent.rollout.vllm_engine import VLLMEngine
from tests.r1agent.grpo_helpers import register_test_envs, tiny_model


class _Runner:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def reload_weights(self, weights_iterator) -> None:
        self.calls.append(("load", len(list(weights_iterator))))


class _FakeLLM:
    """Records sleep/wake/load/generate calls in order; samples token 7 then stops."""

    calls: list = []

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.calls.append(("init", bool(kwargs.get("enable_sleep_mode"))))
        worker = types.SimpleNamespace(model_runner=_Runner(self.calls))
        self.llm_engine = types.SimpleNamespace(
            model_executor=types.SimpleNamespace(driver_worker=worker)
        )

    def sleep(self, level: int) -> None:
        self.calls.append(("sleep", level))

    def wake_up(self, tags: list[str]) -> None:
        self.calls.append(("wake", tuple(tags)))

    def reset_prefix_cache(self) -> None:
        self.calls.append(("reset_prefix_cache",))

    def generate(self, requests, params, use_tqdm):
        self.calls.append(("generate", len(requests)))
        seq = types.SimpleNamespace(token_ids=[7, 8], logprobs=[{7: -0.5}, {8: -0.25}])
        return [types.SimpleNamespace(outputs=[seq]) for _ in requests]


def _fake_vllm(sleep_available: bool) -> types.SimpleNamespace:
    platform = types.SimpleNamespace(is_sleep_mode_available=lambda: sleep_available)
    return types.SimpleNamespace(
        LLM=_FakeLLM,
        SamplingParams=lambda **kw: kw,
        platforms=types.SimpleNamespace(current_platform=platform),
    )


@pytest.fixture
def engine_on(monkeypatch, tmp_path):
    """Build engines on a given device type against the stand-in vLLM."""
    _FakeLLM.calls = []
    model = tiny_model(tmp_path / "tiny")

    def build(device: str, sleep="auto", available: bool = True) -> VLLMEngine:
        monkeypatch.setattr(vllm_engine, "_import_vllm", lambda: _fake_vllm(available))
        monkeypatch.setattr(vllm_engine, "default_device", lambda: torch.device(device))
        return VLLMEngine(model, dtype="float32", sleep=sleep)

    return build


def test_cuda_engine_sleeps_between_rollouts_and_wakes_in_order(engine_on):
    engine = engine_on("cuda")
    assert engine.sleep_mode and engine.llm.kwargs["enable_sleep_mode"] is True
    out = engine.generate(["a", "b"], max_new_tokens=4)
    assert [c.completion_ids for c in out] == [[7, 8], [7, 8]]
    engine.sync_weights([("w", torch.zeros(2))])
    engine.generate(["a"], max_new_tokens=4)
    assert _FakeLLM.calls == [
        ("init", True),
        ("sleep", 1),  # asleep once built: the first update has the GPU
        ("wake", ("weights",)),  # no sync before the first rollout: weights woken too
        ("wake", ("kv_cache",)),
        ("generate", 2),
        ("sleep", 1),
        ("wake", ("weights",)),  # the sync wakes the weights alone ...
        ("load", 1),
        ("reset_prefix_cache",),
        ("wake", ("kv_cache",)),  # ... and the KV cache waits for the next rollout
        ("generate", 1),
        ("sleep", 1),
    ]


def test_sleep_off_makes_no_sleep_calls(engine_on):
    engine = engine_on("cuda", sleep=False)
    engine.generate(["a"], max_new_tokens=4)
    engine.sync_weights([("w", torch.zeros(2))])
    assert "enable_sleep_mode" not in engine.llm.kwargs
    assert [c[0] for c in _FakeLLM.calls] == ["init", "generate", "load", "reset_prefix_cache"]


def test_auto_is_off_on_cpu(engine_on):
    engine = engine_on("cpu")
    engine.generate(["a"], max_new_tokens=4)
    assert not engine.sleep_mode
    assert [c[0] for c in _FakeLLM.calls] == ["init", "generate"]


def test_engine_sleeps_again_when_generation_fails(engine_on):
    engine = engine_on("cuda")

    def boom(*args, **kwargs):
        raise RuntimeError("decode failed")

    engine.llm.generate = boom
    with pytest.raises(RuntimeError, match="decode failed"):
        engine.generate(["a"], max_new_tokens=4)
    assert _FakeLLM.calls[-1] == ("sleep", 1)


@pytest.mark.parametrize(("device", "available"), [("cpu", True), ("cuda", False)])
def test_sleep_true_without_sleep_mode_names_the_setting(engine_on, device, available):
    with pytest.raises(ValueError, match=r"rollout\.vllm_sleep: true needs vLLM on CUDA"):
        engine_on(device, sleep=True, available=available)
    assert _FakeLLM.calls == []  # refused before vLLM starts


def test_bad_sleep_value_is_named(engine_on):
    with pytest.raises(ValueError, match="'sometimes'"):
        engine_on("cuda", sleep="sometimes")
    with pytest.raises(ValueError, match="vllm_sleep"):
        RolloutConfig(vllm_sleep="sometimes")


def test_config_default_is_auto_and_reaches_grpo_config():
    assert RolloutConfig().vllm_sleep == "auto"
    register_test_envs()
    rollout = {"engine": "vllm", "vllm_sleep": False}
    c = load_config({"model": "m", "envs": {"test/Digit-v0": 1.0}, "rollout": rollout})
    assert c.rollout.vllm_sleep is False
