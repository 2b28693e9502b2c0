from __future__ import annotations

import pydantic
import pytest

from r1agent.infra.config import apply_overrides, load_config

BASE = {"model": "m", "envs": {"r1/Arithmetic-v0": 1.0}}


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("model: m\nenvs: {r1/Arithmetic-v0: 1.0}\nsteps: 5\nrollout: {batch_size: 8}\n")
    cfg = load_config(f, ["steps=7", "lr=3e-5", "rollout.engine=vllm", "envs.r1/Countdown-v0=0.5"])
    assert cfg.steps == 7 and cfg.lr == 3e-5
    assert cfg.rollout.engine == "vllm" and cfg.rollout.batch_size == 8
    assert cfg.envs == {"r1/Arithmetic-v0": 1.0, "r1/Countdown-v0": 0.5}


def test_mapping_overrides_and_fields():
    cfg = load_config(
        BASE, {"group_size": 4, "rollout": {"engine": "vllm"}}, max_new_tokens=33, env_kwargs=None
    )
    assert cfg.group_size == 4 and cfg.rollout.engine == "vllm" and cfg.max_new_tokens == 33
    assert cfg.episodes_per_step == cfg.prompts_per_step * 4


def test_batch_not_divisible_names_values():
    with pytest.raises(pydantic.ValidationError, match="batch_size: 12, group_size: 8"):
        load_config(BASE, {"batch_size": 12, "group_size": 8})
    assert load_config(BASE, {"batch_size": 16, "group_size": 8}).prompts_per_step == 2


def test_unknown_env_id_named():
    with pytest.raises(pydantic.ValidationError, match="r1/Nope-v0"):
        load_config({"model": "m", "envs": {"r1/Nope-v0": 1.0}})
    with pytest.raises(pydantic.ValidationError, match="envs\\['r1/Arithmetic-v0'\\]: 0"):
        load_config({"model": "m", "envs": {"r1/Arithmetic-v0": 0}})


def test_other_inconsistencies():
    with pytest.raises(pydantic.ValidationError, match="min_new_tokens"):
        load_config(BASE, {"min_new_tokens": 9, "max_new_tokens": 8})
    with pytest.raises(pydantic.ValidationError, match="typo_field"):
        load_config(BASE, {"typo_field": 1})
    with pytest.raises(pydantic.ValidationError, match="env_kwargs"):
        load_config(BASE, {"env_kwargs": {"r1/Countdown-v0": {}}})
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["steps"])
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config("nope.yaml")


def test_example_config_is_valid():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "grpo_tiny.yaml"
    cfg = load_config(path, ["steps=3"])
    assert cfg.steps == 3 and "r1/Arithmetic-v0" in cfg.envs
