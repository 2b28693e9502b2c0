from __future__ import annotations

import json
import re
import shutil

import pydantic
import pytest

from r1agent.data.coldstart import r1_response, solve_arithmetic
from r1agent.data.rejection import EmptyDatasetError
from r1agent.recipes.pipeline import (
    EvalConfig,
    PipelineConfig,
    RLConfig,
    Stage1Config,
    Stage3Config,
    Stage4Config,
    run_pipeline,
)
from r1agent.recipes.sft import SFTConfig
from r1agent.rollout.engine import Completion

QUESTION = re.compile(r"(What is [-+*\d ]+\?)")


def oracle_generate(
    model, tokenizer, prompts, *, max_new_tokens, temperature=1.0, top_p=1.0, seed=None, **kw
):
    """A policy that always answers right (tests the plumbing, not the model)."""
    out = []
    for p in prompts:
        m = QUESTION.search(p)
        text = r1_response(*solve_arithmetic(m.group(1))) if m else "I do not know."
        ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        out.append(Completion([], ids, text, None, False))
    return out


def silent_generate(model, tokenizer, prompts, **kw):
    return [Completion([], [1], "no idea", None, False) for _ in prompts]


@pytest.fixture
def fake_grpo(monkeypatch):
    """GRPO stand-in: copies the starting checkpoint and writes a metrics file."""
    calls = []

    def run_grpo(model, out_dir, envs, overrides, **kw):
        calls.append((str(model), dict(envs) if isinstance(envs, dict) else list(envs)))
        shutil.copytree(model, out_dir, dirs_exist_ok=True)
        rows = [
            {
                "step": i,
                "charts/reward": 0.1 * i,
                "charts/accuracy": 0.05 * i,
                "charts/response_length_mean": 50 + i,
            }
            for i in range(5)
        ]
        (out_dir / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        return {"steps": 5}

    monkeypatch.setattr("r1agent.recipes.stages.run_grpo", run_grpo)
    return calls


def _config(tmp_path, tiny, rm=None, general_weight=0.0):
    small = SFTConfig(max_steps=3, batch_size=4, max_len=256)
    return PipelineConfig(
        output_dir=str(tmp_path / "run"),
        base_model=str(tiny),
        max_new_tokens=16,
        stage1=Stage1Config(examples=16, sft=small, target_pass1=None),
        stage2=RLConfig(grpo={"steps": 2}),
        stage3=Stage3Config(
            prompts=6, samples=2, sft=small, general_limit=5, steps_from_stage1=1.0
        ),
        stage4=Stage4Config(grpo={"steps": 2}, helpfulness=rm, general_weight=general_weight),
        eval=EvalConfig(n=6, k=2),
    )


def test_pipeline_runs_resumes_and_reports(tmp_path, tiny, fake_grpo):
    cfg = _config(tmp_path, tiny)
    report = run_pipeline(cfg, generate_fn=oracle_generate)
    run = tmp_path / "run"
    for stage in ("stage1", "stage2", "stage3", "stage4"):
        assert (run / stage / "stage.json").is_file()
        assert (run / stage / "config.json").is_file()  # a Hugging Face checkpoint
        assert report["stages"][stage]["pass@1"] == pytest.approx(1.0)  # the oracle is always right
    stage3 = json.loads((run / "stage3" / "stage.json").read_text())
    assert stage3["rejection"]["kept"] == 6 and stage3["general"] == 5
    assert stage3["steps"] == json.loads((run / "stage1" / "stage.json").read_text())["steps"]
    assert (run / "report.md").read_text().count("| stage") == 4
    assert (run / "training_curves.png").is_file() and (run / "pass_at_k.png").is_file()
    assert [c[0] for c in fake_grpo] == [str(run / "stage1"), str(run / "stage3")]
    # resume: nothing runs again
    run_pipeline(cfg, generate_fn=oracle_generate)
    assert len(fake_grpo) == 2


def test_empty_rejection_set_stops_at_stage3_and_keeps_earlier_checkpoints(
    tmp_path, tiny, fake_grpo
):
    cfg = _config(tmp_path, tiny)
    with pytest.raises(EmptyDatasetError, match="kept no reasoning samples"):
        run_pipeline(cfg, generate_fn=silent_generate)
    run = tmp_path / "run"
    assert (run / "stage1" / "stage.json").is_file() and (run / "stage2" / "stage.json").is_file()
    assert not (run / "stage3").exists()


def test_bad_general_file_fails_before_sampling(tmp_path, tiny, fake_grpo):
    cfg = _config(tmp_path, tiny)
    bad = tmp_path / "general.jsonl"
    bad.write_text("{not json\n")
    cfg.stage3.general = str(bad)
    with pytest.raises(ValueError, match="general.jsonl:1"):
        run_pipeline(cfg, generate_fn=oracle_generate)
    assert not (tmp_path / "run" / "stage3").exists()


def test_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="bogus"):
        PipelineConfig.model_validate({"output_dir": "x", "base_model": "y", "bogus": 1})


def test_a_typo_in_a_stage_grpo_setting_is_named_when_the_config_loads(tmp_path):
    with pytest.raises(pydantic.ValidationError, match=r"stage4\.grpo\.lrr"):
        PipelineConfig.model_validate(
            {"output_dir": str(tmp_path), "base_model": "m", "stage4": {"grpo": {"lrr": 1e-5}}}
        )
    with pytest.raises(pydantic.ValidationError, match=r"stage2\.grpo\.steps"):
        PipelineConfig.model_validate(
            {"output_dir": str(tmp_path), "base_model": "m", "stage2": {"grpo": {"steps": "x"}}}
        )


def test_inconsistent_grpo_settings_stop_the_run_before_stage1(tmp_path, tiny):
    cfg = PipelineConfig(
        output_dir=str(tmp_path / "run"),
        base_model=str(tiny),
        max_new_tokens=16,
        stage4=Stage4Config(grpo={"min_new_tokens": 32}),
    )
    with pytest.raises(ValueError, match=r"(?s)stage4\.grpo: .*min_new_tokens"):
        run_pipeline(cfg)
    assert not (tmp_path / "run" / "stage1").exists()
