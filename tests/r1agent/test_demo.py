from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from r1agent.cli import app
from r1agent.recipes.demo import ENV_IDS, MAX_NEW_TOKENS, demo_config


def test_demo_config_is_valid_and_scales(tmp_path):
    full = demo_config(tmp_path / "p", tmp_path / "base", tmp_path / "rm")
    small = demo_config(tmp_path / "p", tmp_path / "base", tmp_path / "rm", scale=0.1)
    assert full.env_ids == ENV_IDS and full.max_new_tokens == MAX_NEW_TOKENS
    assert full.prompt_format == "observation"
    assert small.stage2.grpo["steps"] < full.stage2.grpo["steps"]
    assert full.stage2.grpo["lr"] <= 5e-5 and full.stage2.grpo["group_size"] == 8
    assert full.stage4.helpfulness == f"rm:{tmp_path / 'rm'}"


def test_cli_eval_writes_json_and_markdown(tiny, tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--model",
            str(tiny),
            "--env",
            "r1/Arithmetic-v0",
            "--k",
            "2",
            "--n",
            "3",
            "--max-new-tokens",
            "8",
            "--output",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "eval.json").read_text())
    assert data["envs"][0]["n"] == 3 and "pass@2" in data["envs"][0] and "cons@2" in data["envs"][0]
    assert "| r1/Arithmetic-v0 | 3 |" in (tmp_path / "eval.md").read_text()


def test_cli_pipeline_names_a_bad_config_key(tmp_path):
    cfg = tmp_path / "p.yaml"
    cfg.write_text("output_dir: x\nbase_model: y\nstage9: 1\n")
    result = CliRunner().invoke(app, ["pipeline", str(cfg)])
    assert result.exit_code != 0 and "stage9" in str(result.exception)


@pytest.mark.slow
def test_full_demo_meets_its_numbers(tmp_path):
    from r1agent.recipes.demo import run_demo

    report = run_demo(tmp_path / "demo")
    assert set(report["stages"]) == {"stage1", "stage2", "stage3", "stage4", "distill"}
    for entry in report["stages"].values():
        assert (
            Path(entry["checkpoint"]).is_absolute()
            and (Path(entry["checkpoint"]) / "config.json").is_file()
        )
        assert 0.0 <= entry["pass@1"] <= 1.0
    s = report["stages"]
    assert s["stage2"]["pass@1"] >= s["stage1"]["pass@1"] + 0.10
    assert s["stage4"]["pass@1"] > s["stage1"]["pass@1"]
    assert report["env_ids"] == ENV_IDS and report["prompt_format"] == "observation"
