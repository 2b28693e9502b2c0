from __future__ import annotations

import json
import re
import shutil

import gymnasium as gym
import pydantic
import pytest

from r1agent.data.coldstart import format_response, r1_response, solve_arithmetic
from r1agent.data.rejection import EmptyDatasetError
from r1agent.infra.models import load_model
from r1agent.recipes.pipeline import (
    EvalConfig,
    PipelineConfig,
    RLConfig,
    Stage1Config,
    Stage3Config,
    Stage4Config,
    env_kwargs_for,
    run_pipeline,
    stage1_examples,
    stage1_sources,
)
from r1agent.recipes.sft import SFTConfig
from r1agent.rollout.engine import Completion
from r1agent.rollout.episodes import render_prompt

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


def test_stage3_samples_with_stage2s_rollout_engine(tmp_path, tiny, fake_grpo, monkeypatch):
    from r1agent.recipes import stages

    seen = []
    real = stages.stage3_rejection_sft

    def spy(*a, **kw):
        seen.append(kw.get("rollout"))
        return real(*a, **kw)

    monkeypatch.setattr(stages, "stage3_rejection_sft", spy)
    cfg = _config(tmp_path, tiny)
    cfg.stage2 = RLConfig(grpo={"steps": 2, "rollout": {"engine": "hf", "batch_size": 7}})
    run_pipeline(cfg, generate_fn=oracle_generate)
    assert [r.batch_size for r in seen] == [7]


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


# --------------------------------------------------------------------------- stage-1 sources


def _cfg(tmp_path, tiny="m", **stage1):
    return PipelineConfig.model_validate(
        {
            "output_dir": str(tmp_path / "run"),
            "base_model": str(tiny),
            "env_ids": ["r1/Arithmetic-v0", "r1/Math-v0", "r1/Countdown-v0"],
            "stage1": stage1,
        }
    )


def test_auto_source_takes_the_solver_where_there_is_one_and_the_model_elsewhere(tmp_path):
    plan = stage1_sources(_cfg(tmp_path))
    assert plan == {
        "r1/Arithmetic-v0": "solver",
        "r1/Math-v0": "reflection",
        "r1/Countdown-v0": "solver",
    }
    plan = stage1_sources(
        _cfg(tmp_path, sources={"r1/Math-v0": "fewshot", "default": "zero"}, model_source="zero")
    )
    assert plan == {"r1/Arithmetic-v0": "zero", "r1/Math-v0": "fewshot", "r1/Countdown-v0": "zero"}


@pytest.mark.parametrize(
    ("stage1", "match"),
    [
        ({"source": "solver"}, r"source 'solver' cannot serve env 'r1/Math-v0'"),
        ({"sources": {"r1/Math-v0": "solver"}}, r"'solver' cannot serve env 'r1/Math-v0'"),
        (
            {"sources": {"r1/Math-v0": "file"}},
            r"source 'file' for env 'r1/Math-v0' needs stage1\.data",
        ),
        ({"source": "file", "data": "nowhere.jsonl"}, r"file not found, data: 'nowhere\.jsonl'"),
        ({"sources": {"r1/Logic-v0": "solver"}}, r"not in env_ids: \['r1/Logic-v0'\]"),
    ],
)
def test_a_source_that_cannot_serve_an_env_stops_the_run_before_stage1(
    tmp_path, tiny, stage1, match
):
    with pytest.raises(ValueError, match=match):
        run_pipeline(_cfg(tmp_path, tiny, **stage1))
    assert not (tmp_path / "run").exists()


def test_an_unknown_source_name_is_named_when_the_config_loads(tmp_path):
    with pytest.raises(pydantic.ValidationError, match=r"(?s)stage1\.sources\.r1/Math-v0.*'bogus'"):
        _cfg(tmp_path, sources={"r1/Math-v0": "bogus"})
    with pytest.raises(pydantic.ValidationError, match=r"(?s)stage1\.source.*'solvr'"):
        _cfg(tmp_path, source="solvr")


def test_a_stage_output_format_or_prompt_format_against_the_runs_is_an_error(tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny)
    cfg.stage2.env_kwargs = {"r1/Math-v0": {"output_format": "r1-zero"}}
    with pytest.raises(ValueError, match=r"stage2\.env_kwargs\['r1/Math-v0'\]\.output_format"):
        run_pipeline(cfg)
    cfg = _cfg(tmp_path, tiny)
    cfg.stage4.grpo = cfg.stage4.grpo.model_validate({"prompt_format": "chat"})
    with pytest.raises(ValueError, match=r"stage4\.grpo\.prompt_format is 'chat'"):
        run_pipeline(cfg)
    assert not (tmp_path / "run").exists()


def test_every_reasoning_env_of_every_stage_gets_the_output_format(tmp_path):
    cfg = _cfg(tmp_path)
    cfg.stage2.env_kwargs = {"r1/Math-v0": {"reward_weights": {"language": 0.1}}}
    kw2 = env_kwargs_for(cfg, cfg.stage2.env_kwargs)
    assert kw2["r1/Math-v0"] == {"reward_weights": {"language": 0.1}, "output_format": "r1"}
    assert {k: v["output_format"] for k, v in kw2.items()} == dict.fromkeys(cfg.env_ids, "r1")
    cfg.output_format = "r1-zero"
    kw4 = env_kwargs_for(cfg, {"r1agent/Chat-v0": {"data": "x.jsonl"}}, "stage4")
    assert kw4["r1agent/Chat-v0"] == {"data": "x.jsonl"}  # not a reasoning env: untouched
    assert all(kw4[e] == {"output_format": "r1-zero"} for e in cfg.env_ids)


def _gold_writer(env_ids, output_format, n=64):
    """A model that writes a correct response in ``output_format`` to each known question."""
    gold = {}
    for env_id in env_ids:
        env = gym.make(env_id)
        for seed in range(n):
            _, info = env.reset(seed=seed)
            gold[info["question"]] = env.unwrapped.task.validate(info["problem"]).answer
    steps = ["Let me work it out.", "I check the result again."]

    def generate(model, tokenizer, prompts, **kw):
        out = []
        for p in prompts:
            q = max((q for q in gold if q in p), key=len, default=None)
            text = format_response(steps, gold[q], output_format) if q else "no idea"
            out.append(Completion([], [1], text, None, False))
        return out

    return generate


@pytest.mark.parametrize("output_format", ["r1", "r1-zero"])
def test_stage2_format_reward_is_earned_by_the_stage1_data(tmp_path, tiny, output_format):
    cfg = _cfg(tmp_path, tiny, examples=12, samples=1)
    cfg.output_format = output_format
    cfg.prompt_format = "chat"
    plan = stage1_sources(cfg)
    model, tokenizer = load_model(str(tiny))
    writer = _gold_writer(["r1/Math-v0"], output_format)
    examples, counts = stage1_examples(cfg, plan, model, tokenizer, writer)
    assert counts["solver"]["examples"] == 8 and counts["reflection"]["examples"] >= 1
    envs = {e: gym.make(e, **kw) for e, kw in env_kwargs_for(cfg, cfg.stage2.env_kwargs).items()}
    prompts = {}
    for env_id in cfg.env_ids:
        for seed in range(12):
            obs, info = envs[env_id].reset(seed=seed)
            prompts[render_prompt(tokenizer, obs, info, "chat")] = (env_id, seed)
    for ex in examples:
        assert ex.prompt.startswith("<|im_start|>system\n") and ex.prompt.endswith(
            "<|im_start|>assistant\n"
        )
        env_id, seed = prompts[ex.prompt]  # the very prompt the stage-2 env renders
        envs[env_id].reset(seed=seed)
        _, reward, _, _, info = envs[env_id].step(ex.response)
        assert info["rewards"]["format"] == 1.0 and info["correct"], (env_id, ex.response)
        assert reward > 0


def test_a_file_source_must_hold_the_runs_output_format(tmp_path, tiny):
    from r1agent.data.sft import Example, write_examples

    data = tmp_path / "cold.jsonl"
    r1 = format_response(["2 + 2 = 4"], "4", "r1")
    write_examples(data, [Example("What is 2 + 2?", r1)] * 2)
    cfg = _cfg(tmp_path, tiny, source="file", data=str(data))
    assert set(stage1_sources(cfg).values()) == {"file"}
    examples, counts = stage1_examples(cfg, stage1_sources(cfg), None, None)
    assert [e.response for e in examples] == [r1, r1] and counts["file"]["examples"] == 2
    cfg.output_format = "r1-zero"
    with pytest.raises(ValueError, match=r"example 1's response is not well-formed r1-zero"):
        run_pipeline(cfg)
    assert not (tmp_path / "run").exists()


def test_bad_env_kwargs_are_named_before_stage1(tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny)
    cfg.stage2.env_kwargs = {"r1/Countdown-v0": {"reward_weights": {"acuracy": 1.0}}}
    with pytest.raises(ValueError, match=r"stage2\.env_kwargs\['r1/Countdown-v0'\].*'acuracy'"):
        run_pipeline(cfg)
    assert not (tmp_path / "run").exists()


def test_an_unknown_env_id_is_named_before_stage1(tmp_path, tiny):
    cfg = _cfg(tmp_path, tiny)
    cfg.env_ids = ["r1/Arithmetic-v0", "r1/Arithmetc-v0"]
    with pytest.raises(ValueError, match=r"r1/Arithmetc-v0"):
        run_pipeline(cfg)
    assert not (tmp_path / "run").exists()
