"""The memory plan of a run: read from the model's config alone, checked before weights load."""

from __future__ import annotations

import json
import logging

import pytest
import yaml
from typer.testing import CliRunner

from r1agent.cli import app
from r1agent.infra.config import load_config
from r1agent.infra.memory import GIB
from r1agent.infra.plan import (
    check_fits,
    host_available_memory,
    memory_check,
    plan,
    resolve_gradient_checkpointing,
)

QWEN_7B = {  # Qwen2.5-7B's published dimensions
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "tie_word_embeddings": False,
}
QWEN_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "tie_word_embeddings": True,
}


def _model_dir(tmp_path, name, dims):
    path = tmp_path / name
    path.mkdir()
    cfg = {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"], **dims}
    (path / "config.json").write_text(json.dumps(cfg))
    return str(path)


def _config(model, **kw):
    return load_config({"model": model, "envs": {"r1/Arithmetic-v0": 1.0}, **kw})


def test_seven_b_full_fine_tuning_does_not_fit_80gib_and_names_what_to_try(tmp_path):
    model = _model_dir(tmp_path, "q7", QWEN_7B)
    p = plan(_config(model, device="cuda", micro_batch_size=8), memory_bytes=80 * GIB)
    assert not p.fits and p.gradient_checkpointing  # 7.6B params: checkpointing by default
    assert p.estimate.parameters == pytest.approx(7.6e9, rel=0.01)
    with pytest.raises(ValueError) as err:
        check_fits(p)
    msg = str(err.value)
    assert model in msg and "80.00 GiB" in msg
    for part in ("weights", "gradients", "optimizer (AdamW)", "activations"):
        assert f"{part} {p.estimate.parts[part] / GIB:.2f} GiB" in msg
    for hint in ("lora", "micro_batch_size=4", "fsdp_offload"):
        assert hint in msg


def test_seven_b_lora_fits_80gib(tmp_path):
    model = _model_dir(tmp_path, "q7", QWEN_7B)
    c = _config(model, device="cuda", micro_batch_size=8, beta=0.04, lora={"r": 16})
    p = plan(c, memory_bytes=80 * GIB)
    assert p.fits
    check_fits(p)
    assert "reference model" not in p.estimate.parts  # the base with adapters off is the ref
    assert p.estimate.trainable < 0.01 * p.estimate.parameters
    n, adapters = p.estimate.parameters, p.estimate.trainable
    # the trainer keeps the frozen base in float32 unless dtype=bfloat16; adapters in float32
    assert p.estimate.parts["weights"] == 4 * n + 4 * adapters
    bf16 = plan(_config(model, device="cuda", lora={"r": 16}, dtype="bfloat16"), memory_bytes=GIB)
    assert bf16.estimate.parts["weights"] == 2 * n + 4 * adapters
    q4 = plan(_config(model, device="cuda", lora={"r": 16, "quantize": "4bit"}), memory_bytes=GIB)
    # linear layers in 4 bits (an eighth of float32), embeddings and norms in float32
    assert q4.estimate.parts["weights"] < 0.3 * p.estimate.parts["weights"]


def test_small_model_fits_and_the_settings_reach_the_estimate(tmp_path):
    model = _model_dir(tmp_path, "q05", QWEN_05B)
    c = _config(model, device="cuda", micro_batch_size=4, max_new_tokens=256, max_turns=2)
    p = plan(c, memory_bytes=80 * GIB, prompt_tokens=100)
    assert p.fits and p.seq_len == 100 + 256 * 2
    no_ckpt = plan(_config(model, device="cuda", micro_batch_size=4, max_new_tokens=256,
                           max_turns=2, gradient_checkpointing=False),
                   memory_bytes=80 * GIB, prompt_tokens=100)  # fmt: skip
    assert not no_ckpt.gradient_checkpointing
    assert no_ckpt.estimate.parts["activations"] > p.estimate.parts["activations"]
    with_ref = plan(_config(model, device="cuda", micro_batch_size=4, beta=0.1), memory_bytes=GIB)
    assert with_ref.estimate.parts["reference model"] == 4 * with_ref.estimate.parameters
    bf16 = plan(
        _config(model, device="cuda", micro_batch_size=4, dtype="bfloat16"), memory_bytes=GIB
    )
    n = bf16.estimate.parameters
    assert [bf16.estimate.parts[k] for k in ("weights", "gradients", "optimizer (AdamW)")] == [
        2 * n,
        2 * n,
        4 * n,
    ]
    cpu = plan(_config(model, device="cpu", micro_batch_size=4), memory_bytes=80 * GIB)
    assert cpu.device == "cpu" and cpu.estimate.parts["weights"] == 4 * cpu.estimate.parameters


def test_fsdp_divides_the_sharded_parts_by_world_size(tmp_path, monkeypatch):
    model = _model_dir(tmp_path, "q7", QWEN_7B)
    one = plan(_config(model, device="cuda", micro_batch_size=1), memory_bytes=80 * GIB)
    monkeypatch.setenv("WORLD_SIZE", "8")
    eight = plan(
        _config(model, device="cuda", micro_batch_size=1, fsdp=True), memory_bytes=80 * GIB
    )
    assert eight.world == 8
    for part in ("weights", "gradients", "optimizer (AdamW)"):
        assert eight.estimate.parts[part] == one.estimate.parts[part] // 8
    assert eight.estimate.parts["activations"] == one.estimate.parts["activations"]
    # generating gathers every weight on each process
    assert eight.generation_peak >= one.estimate.parts["weights"]
    off = plan(
        _config(model, device="cuda", micro_batch_size=1, fsdp=True, fsdp_offload=True),
        memory_bytes=80 * GIB,
    )
    assert off.estimate.parts["optimizer (AdamW)"] == 0
    assert off.offloaded["optimizer (AdamW)"] == one.estimate.parts["optimizer (AdamW)"] // 8
    # without fsdp the world size changes nothing (DDP replicates)
    ddp = plan(_config(model, device="cuda", micro_batch_size=1), memory_bytes=80 * GIB)
    assert ddp.world == 1 and ddp.estimate.parts == one.estimate.parts


def test_missing_model_dir_is_named(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(ValueError, match="no-such-model"):
        plan(_config(missing, device="cpu"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty"):
        plan(_config(str(empty), device="cpu"))


def test_resolve_gradient_checkpointing_follows_the_setting_then_the_size(tmp_path):
    model = _model_dir(tmp_path, "q05", QWEN_05B)
    assert resolve_gradient_checkpointing(_config(model), 100_000_001)
    assert not resolve_gradient_checkpointing(_config(model), 100_000_000)
    assert resolve_gradient_checkpointing(_config(model, gradient_checkpointing=True), 10)
    assert not resolve_gradient_checkpointing(_config(model, gradient_checkpointing=False), 1e9)


def test_memory_check_logs_the_table_and_raises(tmp_path):
    model = _model_dir(tmp_path, "q05", QWEN_05B)
    lines = []
    p = memory_check(_config(model, device="cpu"), log=lines.append, memory_bytes=64 * GIB)
    assert p.fits and "total" in lines[0] and "fits" in lines[0]
    with pytest.raises(ValueError, match="does not fit"):
        memory_check(_config(model, device="cpu"), log=logging.info, memory_bytes=GIB)
    # on CPU without a given budget: the machine's available memory
    assert plan(_config(model, device="cpu")).device_memory == pytest.approx(
        host_available_memory(), rel=0.2
    )


def test_plan_command_prints_the_verdict_and_exits_1_when_it_does_not_fit(tmp_path):
    model = _model_dir(tmp_path, "q7", QWEN_7B)
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"model": model, "envs": {"r1/Arithmetic-v0": 1.0}}))
    runner = CliRunner()
    args = ["plan", str(cfg), "device=cuda", "micro_batch_size=8", "--memory-gib", "80"]
    res = runner.invoke(app, args)
    assert res.exit_code == 1, res.output
    assert "does not fit" in res.output and "80.00 GiB" in res.output and "lora" in res.output
    res = runner.invoke(app, [*args, "lora.r=16"])
    assert res.exit_code == 0, res.output
    assert "fits" in res.output and "does not fit" not in res.output
    res = runner.invoke(app, ["plan", str(cfg), f"model={tmp_path / 'gone'}", "--memory-gib", "8"])
    assert res.exit_code == 2 and "gone" in res.output
