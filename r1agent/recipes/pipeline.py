"""``r1agent pipeline CONFIG.yaml``: stages 1 → 4 with a checkpoint per stage, resumable.

Each stage writes ``OUTPUT/stageN/`` (a Hugging Face checkpoint) and, last of all, its
``stage.json``; a stage whose ``stage.json`` exists is skipped, so re-running the command
resumes after the last finished stage. Inputs of a stage (data files, the reward model)
are checked before the stage writes anything, so a bad input stops the run at that stage's
boundary with the earlier checkpoints untouched.

After the stages, every checkpoint is evaluated on held-out problems (``evaluate``) and the
report (Markdown, plots, ``pipeline_report.json``) is written by :mod:`r1agent.report`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from r1agent.data.coldstart import solver_examples
from r1agent.data.sft import read_examples
from r1agent.eval.evaluate import evaluate_checkpoint, write_report
from r1agent.eval.report import write_pipeline_report
from r1agent.infra.config import GRPOSettings, load_config
from r1agent.recipes import stages
from r1agent.recipes.sft import SFTConfig

log = logging.getLogger(__name__)

STAGES = ("stage1", "stage2", "stage3", "stage4")


class Stage1Config(BaseModel):
    """Cold-start SFT."""

    model_config = ConfigDict(extra="forbid")
    source: Literal["solver", "file"] = Field(
        "solver", description="solver-written or a JSONL file"
    )
    data: str | None = Field(None, description="{prompt, response} JSONL when source=file")
    examples: int = Field(4000, ge=1, description="solver examples (training seeds 0..n-1)")
    detailed: bool = Field(False, description="solver splits sums into tens and units")
    sft: SFTConfig = Field(default_factory=lambda: SFTConfig(max_steps=400, lr=2e-3))
    target_pass1: float | None = Field(0.45, description="stop SFT at this quick-eval pass@1")
    min_pass_k: float = Field(0.7, description="... if pass@k is at least this")
    eval_n: int = Field(96, ge=1, description="quick-eval problems")
    eval_k: int = Field(8, ge=1, description="quick-eval samples per problem")


class RLConfig(BaseModel):
    """A GRPO stage: trainer settings passed through to :mod:`r1agent.trainer`."""

    model_config = ConfigDict(extra="forbid")
    grpo: GRPOSettings = Field(
        default_factory=GRPOSettings, description="GRPO settings (typed, see GRPOConfig)"
    )
    env_kwargs: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="gym.make kwargs per training env id"
    )


class Stage3Config(BaseModel):
    """Rejection sampling + SFT of the base model."""

    model_config = ConfigDict(extra="forbid")
    prompts: int = Field(1000, ge=1, description="training prompts to sample")
    samples: int = Field(4, ge=1, description="samples per prompt")
    max_per_prompt: int = Field(1, ge=1, description="correct samples kept per prompt")
    temperature: float = Field(1.0, gt=0, description="sampling temperature")
    general: str | None = Field(None, description="general {prompt, answer} JSONL (None: shipped)")
    general_limit: int | None = Field(None, description="use at most this many general examples")
    sft: SFTConfig = Field(default_factory=lambda: SFTConfig(epochs=2, lr=2e-3))
    steps_from_stage1: float | None = Field(
        None, gt=0, description="if set, SFT for this multiple of stage 1's steps (overrides sft)"
    )


class Stage4Config(RLConfig):
    """RL for all scenarios."""

    helpfulness: str | None = Field(None, description="judge spec (rm:PATH, lm:PATH, URL#model)")
    harmlessness: str | None = Field(None, description="judge spec (default: helpfulness)")
    general_weight: float = Field(0.2, ge=0, lt=1, description="share of general prompts")


class EvalConfig(BaseModel):
    """Evaluation of every stage's checkpoint."""

    model_config = ConfigDict(extra="forbid")
    n: int = Field(300, ge=1, description="held-out problems")
    k: int = Field(4, ge=1, description="samples per problem")
    temperature: float = 0.6
    top_p: float = 0.95


class PipelineConfig(BaseModel):
    """``r1agent pipeline`` configuration (YAML + ``key=value`` overrides)."""

    model_config = ConfigDict(extra="forbid")
    output_dir: str = Field(description="run directory (one sub-directory per stage)")
    base_model: str = Field(description="the base model (stage 1 and stage 3 start from it)")
    env_ids: list[str] = Field(default_factory=lambda: ["r1/Arithmetic-v0"])
    prompt_format: Literal["observation", "chat"] = "observation"
    max_new_tokens: int = Field(96, ge=1, description="completion cap everywhere")
    seed: int = 0
    stage1: Stage1Config = Field(default_factory=Stage1Config)
    stage2: RLConfig = Field(default_factory=RLConfig)
    stage3: Stage3Config = Field(default_factory=Stage3Config)
    stage4: Stage4Config = Field(default_factory=Stage4Config)
    eval: EvalConfig = Field(default_factory=EvalConfig)


def stage_done(out: Path, stage: str) -> bool:
    """Whether ``stage`` finished in the run directory ``out``."""
    return (out / stage / "stage.json").is_file()


def run_pipeline(config: PipelineConfig, *, generate_fn: Any = None) -> dict[str, Any]:
    """Run (or resume) stages 1 → 4, evaluate every checkpoint and write the report.

    Every GRPO stage's trainer config is validated first (:func:`check_stages`), so a bad
    setting stops the run before stage 1.

    Returns:
        The pipeline report dict (also written as ``pipeline_report.json``).
    """
    check_stages(config)
    out = Path(config.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "pipeline_config.json").write_text(config.model_dump_json(indent=2))
    runners = {"stage1": _stage1, "stage2": _stage2, "stage3": _stage3, "stage4": _stage4}
    timings: dict[str, float] = {}
    for stage in STAGES:
        if stage_done(out, stage):
            log.info("%s finished earlier, skipping", stage)
            continue
        t0 = time.time()
        log.info("running %s", stage)
        runners[stage](config, out, generate_fn)
        timings[stage] = round(time.time() - t0, 1)
    return evaluate_stages(config, out, timings=timings, generate_fn=generate_fn)


def check_stages(config: PipelineConfig) -> None:
    """Validate the full GRPO config of stages 2 and 4 (env ids, consistency of settings).

    Raises:
        ValueError: naming the stage and the bad setting.
    """
    for name, rl in (("stage2", config.stage2), ("stage4", config.stage4)):
        data = {
            "model": config.base_model,
            "output_dir": str(Path(config.output_dir) / name),
            "envs": {e: 1.0 for e in config.env_ids},
            "seed": config.seed,
        }
        try:
            load_config(data, rl.grpo.overrides(), max_new_tokens=config.max_new_tokens)
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"{name}.grpo: {exc}") from exc


def _stage1(config: PipelineConfig, out: Path, generate_fn: Any) -> None:
    c = config.stage1
    if c.source == "file":
        if not c.data:
            raise ValueError("stage1.source is 'file' but stage1.data is not set")
        examples = read_examples(c.data)
    else:
        examples = solver_examples(
            config.env_ids, c.examples, seed=config.seed, detailed=c.detailed
        )
    stages.stage1_cold_start(
        config.base_model,
        out / "stage1",
        examples,
        c.sft,
        env_ids=config.env_ids,
        max_new_tokens=config.max_new_tokens,
        prompt_format=config.prompt_format,
        target_pass1=c.target_pass1,
        min_pass_k=c.min_pass_k,
        eval_n=c.eval_n,
        eval_k=c.eval_k,
        generate_fn=generate_fn,
    )


def _stage2(config: PipelineConfig, out: Path, generate_fn: Any) -> None:
    stages.stage2_reasoning_rl(
        out / "stage1",
        out / "stage2",
        config.stage2,
        env_ids=config.env_ids,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
    )


def _stage3(config: PipelineConfig, out: Path, generate_fn: Any) -> None:
    c3 = config.stage3
    sft3 = c3.sft
    if c3.steps_from_stage1:
        done = json.loads((out / "stage1" / "stage.json").read_text())
        steps = max(1, round(done["steps"] * c3.steps_from_stage1))
        sft3 = sft3.model_copy(update={"max_steps": steps})
    stages.stage3_rejection_sft(
        out / "stage2",
        config.base_model,
        out / "stage3",
        sft3,
        env_ids=config.env_ids,
        n_prompts=c3.prompts,
        samples=c3.samples,
        max_new_tokens=config.max_new_tokens,
        prompt_format=config.prompt_format,
        general_path=c3.general,
        general_limit=c3.general_limit,
        temperature=c3.temperature,
        max_per_prompt=c3.max_per_prompt,
        generate_fn=generate_fn,
    )


def _stage4(config: PipelineConfig, out: Path, generate_fn: Any) -> None:
    stages.stage4_all_scenarios_rl(
        out / "stage3",
        out / "stage4",
        config.stage4,
        env_ids=config.env_ids,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
    )


def evaluate_stages(
    config: PipelineConfig,
    out: Path,
    *,
    extra: dict[str, Path] | None = None,
    timings: dict[str, float] | None = None,
    generate_fn: Any = None,
) -> dict[str, Any]:
    """Evaluate each finished stage's checkpoint (cached in ``stageN/eval.json``), write the report."""

    checkpoints = {s: out / s for s in STAGES if stage_done(out, s)}
    checkpoints.update(extra or {})
    results: dict[str, dict[str, Any]] = {}
    for name, path in checkpoints.items():
        cache = path / "eval.json"
        if cache.is_file():
            results[name] = json.loads(cache.read_text())
            continue
        e = config.eval
        report = evaluate_checkpoint(
            path,
            config.env_ids,
            n=e.n,
            k=e.k,
            temperature=e.temperature,
            top_p=e.top_p,
            max_new_tokens=config.max_new_tokens,
            prompt_format=config.prompt_format,
            seed=config.seed,
            keep_samples=5,
            generate_fn=generate_fn,
        )
        write_report(report, path, "eval")
        results[name] = json.loads(cache.read_text())
    return write_pipeline_report(out, config.model_dump(), checkpoints, results, timings or {})
