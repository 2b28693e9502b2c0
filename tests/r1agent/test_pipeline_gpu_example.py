"""``examples/pipeline_gpu_qwen.yaml`` runs end to end, shrunk to CPU size.

The very file is loaded the way ``r1agent pipeline FILE key=value ...`` loads it
(:func:`r1agent.cli._stage_config`), with overrides that only shrink it: a tiny model with a
chat template instead of the hub model, a few steps and examples, the transformers rollout
engine instead of vLLM, a tiny ``lm:`` judge, short completions. Its env list, prompt
format, output format, stage-1 sources and every other setting stay as written.

Stages 2 and 4 train for real (rollouts, env rewards, judge). Generation outside GRPO
(stage-1 model-written data, stage-3 rejection sampling, evaluation) goes through the real
sampler, except that arithmetic questions are answered by the solver: an untrained tiny
model answers nothing right, and stage 3 stops (by design) when it keeps no sample.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from r1agent.cli import _stage_config
from r1agent.data.coldstart import format_response, solve_arithmetic
from r1agent.data.sft import read_examples
from r1agent.recipes.pipeline import PipelineConfig, run_pipeline
from r1agent.rollout.engine import Completion
from r1agent.rollout.transformers_engine import generate
from r1envs import formats

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "pipeline_gpu_qwen.yaml"
ARITHMETIC = re.compile(r"<\|im_start\|>user\n(What is [-+*\d ]+\?)<\|im_end\|>")


def _shrink(tiny: Path, out: Path) -> list[str]:
    """``key=value`` overrides that only make the example smaller."""
    small_sft = ["max_steps=2", "batch_size=4", "max_len=512", "warmup_steps=0"]
    small_grpo = [
        "steps=1",
        "group_size=2",
        "prompts_per_step=3",
        "rollout.engine=hf",
    ]
    return [
        f"base_model={tiny}",
        f"output_dir={out}",
        "max_new_tokens=24",
        "stage1.examples=9",
        "stage1.samples=2",
        *(f"stage1.sft.{s}" for s in small_sft),
        *(f"stage2.grpo.{s}" for s in small_grpo),
        "stage3.prompts=6",
        "stage3.samples=2",
        "stage3.general_limit=4",
        *(f"stage3.sft.{s}" for s in small_sft),
        *(f"stage4.grpo.{s}" for s in small_grpo),
        "stage4.grpo.steps=2",
        "stage4.grpo.prompts_per_step=6",  # (seeded) these draws include general prompts
        f"stage4.helpfulness=lm:{tiny}",
        "eval.n=3",
        "eval.k=2",
    ]


def _solver_for_arithmetic(output_format: str):
    """The real sampler, except that arithmetic questions get the solver's answer."""

    def gen(model, tokenizer, prompts, **kw):
        out = generate(model, tokenizer, prompts, **kw)
        for i, p in enumerate(prompts):
            m = ARITHMETIC.search(p)
            if m:
                text = format_response(*solve_arithmetic(m.group(1)), output_format)
                ids = tokenizer(text, add_special_tokens=False)["input_ids"]
                out[i] = Completion(
                    out[i].prompt_ids, [*ids, tokenizer.eos_token_id], text, None, False
                )
        return out

    return gen


@pytest.mark.slow
def test_the_gpu_example_runs_all_four_stages_shrunk(tmp_path, tiny, monkeypatch):
    from transformers import AutoModelForCausalLM

    from r1agent.recipes import stages

    trained = []  # the GRPO configs stages 2 and 4 ran with (the real trainer runs)
    real_train_grpo = stages.train_grpo
    monkeypatch.setattr(
        stages, "train_grpo", lambda config: trained.append(config) or real_train_grpo(config)
    )
    out = tmp_path / "run"
    cfg = _stage_config(PipelineConfig, EXAMPLE, _shrink(tiny, out))
    assert cfg.env_ids == ["r1/Math-v0", "r1/Countdown-v0", "r1/Arithmetic-v0"]
    assert cfg.prompt_format == "chat"
    t0 = time.time()
    report = run_pipeline(cfg, generate_fn=_solver_for_arithmetic(cfg.output_format))
    print(f"shrunk GPU example: {time.time() - t0:.1f} s")

    for stage in ("stage1", "stage2", "stage3", "stage4"):
        summary = json.loads((out / stage / "stage.json").read_text())
        assert summary["stage"] == stage
        AutoModelForCausalLM.from_pretrained(out / stage)  # a plain Hugging Face checkpoint
        assert stage in report["stages"]
    stage1 = json.loads((out / "stage1" / "stage.json").read_text())
    assert stage1["output_format"] == cfg.output_format
    assert stage1["sources"]["solver"]["envs"] == ["r1/Countdown-v0", "r1/Arithmetic-v0"]
    assert stage1["sources"]["reflection"]["envs"] == ["r1/Math-v0"]  # auto: no Math solver
    examples = read_examples(out / "stage1_data.jsonl")
    assert len(examples) >= stage1["sources"]["solver"]["problems"] == 6
    system = formats.default_system_prompt(cfg.output_format)
    for ex in examples:
        assert ex.prompt.startswith(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n")
        assert ex.prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")
        assert formats.parse(ex.response, cfg.output_format).well_formed
    assert [c.output_dir for c in trained] == [str(out / "stage2"), str(out / "stage4")]
    for c in trained:
        assert c.prompt_format == "chat" and c.rollout.engine == "hf"
        assert all(c.env_kwargs[e]["output_format"] == cfg.output_format for e in cfg.env_ids)
    assert trained[0].env_kwargs["r1/Math-v0"]["reward_weights"] == {"language": 0.1}
    assert "r1agent/Chat-v0" in trained[1].envs  # general prompts, scored by the lm: judge
    rows = [json.loads(r) for r in (out / "stage4" / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/helpfulness" in r for r in rows), rows  # the judge scored responses
    stage3 = json.loads((out / "stage3" / "stage.json").read_text())
    assert stage3["rejection"]["kept"] >= 1
    for stage in ("stage2", "stage4"):
        trainer = json.loads((out / stage / "stage.json").read_text())["trainer"]
        assert trainer  # the GRPO trainer ran and summarised
    assert (out / "report.md").is_file() and (out / "pipeline_report.json").is_file()
    assert json.loads((out / "pipeline_report.json").read_text())["stages"].keys() == {
        "stage1",
        "stage2",
        "stage3",
        "stage4",
    }


def test_the_cli_names_a_source_that_cannot_serve_an_env_of_the_example(tmp_path):
    from typer.testing import CliRunner

    from r1agent.cli import app

    out = tmp_path / "run"
    args = ["pipeline", str(EXAMPLE), f"output_dir={out}", "stage1.source=solver"]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ValueError)
    assert "source 'solver' cannot serve env 'r1/Math-v0'" in str(result.exception)
    assert not out.exists()  # nothing written, no model loaded
