"""``r1agent pipeline CONFIG.yaml``: stages 1 → 4 with a checkpoint per stage, resumable.

Each stage writes ``OUTPUT/stageN/`` (a Hugging Face checkpoint) and, last of all, its
``stage.json``; a stage whose ``stage.json`` exists is skipped, so re-running the command
resumes after the last finished stage. Inputs of a stage (data files, the reward model)
are checked before the stage writes anything, so a bad input stops the run at that stage's
boundary with the earlier checkpoints untouched.

Stage 1's cold-start data comes from a source per env (:func:`stage1_sources`): the
task's step-by-step solver, a JSONL file, or the base model (or another model, or an
OpenAI-compatible endpoint) prompted few-shot, with a reflection instruction, or R1-Zero
style (:mod:`r1agent.data.coldstart`); ``source: auto`` takes the solver where the task
has one. The data is written in the run's ``output_format``, which every reasoning env of
every stage also gets (env kwarg ``output_format``), so the format reward of stages 2 and 4
rewards the format stage 1 taught, and in the run's ``prompt_format`` (the chat template
when ``chat``), as the RL envs' prompts are rendered. Stage 1's data is kept as
``OUTPUT/stage1_data.jsonl``.

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

from r1agent.data.coldstart import (
    MODEL_SOURCES,
    endpoint_generate,
    has_solver,
    model_examples,
    solver_examples,
)
from r1agent.data.rejection import EmptyDatasetError
from r1agent.data.sft import Example, read_examples, write_examples
from r1agent.eval.evaluate import evaluate_checkpoint, write_report
from r1agent.eval.report import write_pipeline_report
from r1agent.infra.config import GRPOSettings, load_config
from r1agent.recipes import stages
from r1agent.recipes.sft import SFTConfig
from r1agent.rollout.episodes import make_env
from r1envs import formats

log = logging.getLogger(__name__)

STAGES = ("stage1", "stage2", "stage3", "stage4")


ColdStartSource = Literal["auto", "solver", "file", "fewshot", "reflection", "zero"]
SOURCES: tuple[str, ...] = ("auto", "solver", "file", *MODEL_SOURCES)


class Stage1Config(BaseModel):
    """Cold-start SFT.

    Each env's data comes from ``sources[env_id]``, else ``sources["default"]``, else
    ``source``: ``solver`` (exact step-by-step solutions; the task needs a solver),
    ``file`` (``data``, a ``{prompt, response}`` JSONL file, used once whatever the number
    of envs mapped to it), ``fewshot`` / ``reflection`` / ``zero`` (``model`` prompted; its
    correct, well-formed, readable answers are kept) or ``auto`` (the solver where the task
    has one, else ``model_source``).
    """

    model_config = ConfigDict(extra="forbid")
    source: ColdStartSource = Field(
        "auto", description="source of every env not in `sources` (auto: solver, else model)"
    )
    sources: dict[str, ColdStartSource] = Field(
        default_factory=dict, description="source per env id; key 'default' for the others"
    )
    model_source: Literal["fewshot", "reflection", "zero"] = Field(
        "reflection", description="what `auto` uses for envs whose task has no solver"
    )
    model: str | None = Field(
        None, description="model prompted by fewshot/reflection/zero: None (base), path, URL#model"
    )
    data: str | None = Field(None, description="{prompt, response} JSONL for source file")
    examples: int = Field(
        4000, ge=1, description="problems (training seeds 0..n-1), env ids in turn"
    )
    samples: int = Field(4, ge=1, description="model samples per problem (model sources)")
    shots: int = Field(2, ge=1, description="solved examples in a few-shot prompt")
    temperature: float = Field(0.7, gt=0, description="model sampling temperature")
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
    output_format: Literal["r1", "r1-zero"] = Field(
        "r1", description="response format: stage-1 data and every reasoning env's kwarg"
    )
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
    """Validate every stage's inputs before the run writes anything.

    The full GRPO config of stages 2 and 4 is validated (env ids, consistency of
    settings), every reasoning env is made with its stage's kwargs, and stage 1's sources
    are resolved (:func:`stage1_sources`) unless stage 1 finished earlier.

    Raises:
        ValueError: naming the stage and the bad setting.
    """
    for name, rl in (("stage2", config.stage2), ("stage4", config.stage4)):
        kwargs = env_kwargs_for(config, rl.env_kwargs, name)
        fmt = rl.grpo.overrides().get("prompt_format", config.prompt_format)
        if fmt != config.prompt_format:
            raise ValueError(
                f"{name}.grpo.prompt_format is {fmt!r} but the run's prompt_format is "
                f"{config.prompt_format!r}: set prompt_format once, at the top"
            )
        data = {
            "model": config.base_model,
            "output_dir": str(Path(config.output_dir) / name),
            "envs": {e: 1.0 for e in config.env_ids},
            "seed": config.seed,
            "prompt_format": config.prompt_format,
        }
        try:
            load_config(
                data,
                rl.grpo.overrides(),
                max_new_tokens=config.max_new_tokens,
                env_kwargs={e: kwargs[e] for e in config.env_ids},
            )
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            raise ValueError(f"{name}.grpo: {exc}") from exc
        for env_id in config.env_ids:
            try:
                make_env(env_id, kwargs[env_id]).close()
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{name}.env_kwargs[{env_id!r}]: {exc}") from exc
    if not stage_done(Path(config.output_dir).resolve(), "stage1"):
        stage1_sources(config)


def env_kwargs_for(
    config: PipelineConfig, stage_kwargs: dict[str, dict[str, Any]], stage: str = "stage2"
) -> dict[str, dict[str, Any]]:
    """A stage's ``gym.make`` kwargs with the run's ``output_format`` in every reasoning env.

    Raises:
        ValueError: if a stage's env kwargs set another ``output_format`` than the run's.
    """
    out = {k: dict(v) for k, v in stage_kwargs.items()}
    for env_id in config.env_ids:
        kw = out.setdefault(env_id, {})
        fmt = kw.setdefault("output_format", config.output_format)
        if fmt != config.output_format:
            raise ValueError(
                f"{stage}.env_kwargs[{env_id!r}].output_format is {fmt!r} but the run's "
                f"output_format is {config.output_format!r}: set output_format once, at the top"
            )
    return out


def reasoning_env_kwargs(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    """The env kwargs of stage 1's data, stage 3's sampling and the evaluation (stage 2's)."""
    kwargs = env_kwargs_for(config, config.stage2.env_kwargs)
    return {e: kwargs[e] for e in config.env_ids}


def stage1_sources(config: PipelineConfig) -> dict[str, str]:
    """The cold-start source of each env id, ``auto`` resolved.

    Raises:
        ValueError: for a source name that is not known, ``sources`` naming an env id that
            is not in ``env_ids``, a source that cannot serve an env (``solver`` for a task
            without a solver), or ``file`` without a readable ``data`` file; each message
            names the env and the source.
    """
    c = config.stage1
    unknown = sorted(set(c.sources) - set(config.env_ids) - {"default"})
    if unknown:
        raise ValueError(
            f"stage1.sources names env ids not in env_ids: {unknown}; env_ids: {config.env_ids}"
        )
    kwargs = reasoning_env_kwargs(config)
    plan: dict[str, str] = {}
    for env_id in config.env_ids:
        src = c.sources.get(env_id, c.sources.get("default", c.source))
        if src not in SOURCES:
            raise ValueError(
                f"stage1: unknown cold-start source for env {env_id!r}, source: {src!r}; "
                f"known: {list(SOURCES)}"
            )
        if src in ("auto", "solver"):
            solvable = has_solver(env_id, kwargs[env_id])
            if src == "solver" and not solvable:
                raise ValueError(
                    f"stage1: source 'solver' cannot serve env {env_id!r}: its task has no "
                    "solver; give it source auto, fewshot, reflection, zero or file"
                )
            src = "solver" if solvable else c.model_source
        if src == "file" and not c.data:
            raise ValueError(
                f"stage1: source 'file' for env {env_id!r} needs stage1.data "
                "(a {prompt, response} JSONL file)"
            )
        plan[env_id] = src
    if "file" in plan.values():
        _check_file(c.data, config.output_format)  # type: ignore[arg-type]
    return plan


def _check_file(data: str, output_format: str) -> None:
    """A cold-start file exists, parses, and its responses are in the run's output format.

    Raises:
        ValueError: naming the file (and the first response in another format).
    """
    try:
        examples = read_examples(data)
    except FileNotFoundError as exc:
        raise ValueError(f"stage1.data: file not found, data: {data!r}") from exc
    if not examples:
        raise ValueError(f"stage1.data: no example in the file, data: {data!r}")
    for i, ex in enumerate(examples, 1):
        if not formats.parse(ex.response, output_format).well_formed:
            raise ValueError(
                f"stage1.data {data!r}: example {i}'s response is not well-formed "
                f"{output_format} (the run's output_format), response: {ex.response!r:.120}"
            )


def stage1_examples(
    config: PipelineConfig,
    plan: dict[str, str],
    model: Any,
    tokenizer: Any,
    generate_fn: Any = None,
) -> tuple[list[Example], dict[str, dict[str, Any]]]:
    """Stage 1's cold-start examples, every env from its source in ``plan``.

    Env ``env_ids[i % len(env_ids)]`` gets problem ``i < stage1.examples``: each source
    serves its envs' share, its envs in turn, env seeds from ``seed`` on. Prompts are the
    stage-2 envs' (``prompt_format``), responses are in ``output_format``.

    Returns:
        ``(examples, per-source counts)``.

    Raises:
        EmptyDatasetError: if no source yields any example.
    """
    c, ids = config.stage1, config.env_ids
    groups: dict[str, list[str]] = {}
    for env_id, src in plan.items():
        groups.setdefault(src, []).append(env_id)
    kwargs = reasoning_env_kwargs(config)
    examples: list[Example] = []
    counts: dict[str, dict[str, Any]] = {}
    for src, envs in groups.items():
        n = sum(1 for i in range(c.examples) if ids[i % len(ids)] in envs)
        if src == "file":
            got = read_examples(c.data)  # type: ignore[arg-type]
        elif src == "solver":
            got = solver_examples(
                envs,
                n,
                seed=config.seed,
                output_format=config.output_format,
                prompt_format=config.prompt_format,
                tokenizer=tokenizer,
                detailed=c.detailed,
                env_kwargs=kwargs,
            )
        else:
            got = _model_written(config, envs, n, src, (model, tokenizer), kwargs, generate_fn)
        if not got:
            log.warning("stage 1: source %s gave no example for %s", src, envs)
        counts[src] = {"envs": envs, "problems": n, "examples": len(got)}
        examples += got
    if not examples:
        raise EmptyDatasetError(f"stage 1 has no cold-start example; per source: {counts}")
    return examples, counts


def _model_written(
    config: PipelineConfig,
    envs: list[str],
    n: int,
    source: str,
    loaded: tuple[Any, Any],
    kwargs: dict[str, dict[str, Any]],
    generate_fn: Any,
) -> list[Example]:
    """Examples from ``stage1.model`` (default: the base model, already ``loaded``)."""
    c = config.stage1
    model, tokenizer = loaded
    base_tokenizer, query_format, spec = tokenizer, config.prompt_format, c.model
    if spec and spec.startswith(("http://", "https://")):
        model, generate_fn, query_format = None, endpoint_generate(spec), "observation"
    elif spec:
        model, tokenizer = stages.load_model_and_tokenizer(spec)
    return model_examples(
        model,
        tokenizer,
        envs,
        n,
        source=source,
        seed=config.seed,
        samples=c.samples,
        shots=c.shots,
        max_new_tokens=config.max_new_tokens,
        temperature=c.temperature,
        prompt_format=config.prompt_format,
        output_format=config.output_format,
        env_kwargs=kwargs,
        query_format=query_format,
        prompt_tokenizer=base_tokenizer,
        generate_fn=generate_fn,
    )


def _stage1(config: PipelineConfig, out: Path, generate_fn: Any) -> None:
    c = config.stage1
    plan = stage1_sources(config)
    model, tokenizer = stages.load_model_and_tokenizer(config.base_model)
    examples, counts = stage1_examples(config, plan, model, tokenizer, generate_fn)
    data = out / "stage1_data.jsonl"
    write_examples(data, examples)
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
        loaded=(model, tokenizer),
        env_kwargs=reasoning_env_kwargs(config),
        extra={"data": str(data), "sources": counts, "output_format": config.output_format},
    )


def _stage2(config: PipelineConfig, out: Path, generate_fn: Any) -> None:
    rl = config.stage2
    stages.stage2_reasoning_rl(
        out / "stage1",
        out / "stage2",
        rl.model_copy(update={"env_kwargs": env_kwargs_for(config, rl.env_kwargs, "stage2")}),
        env_ids=config.env_ids,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        prompt_format=config.prompt_format,
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
        env_kwargs=reasoning_env_kwargs(config),
        rollout=config.stage2.grpo.rollout,  # stage 2's engine samples stage 3 too
    )


def _stage4(config: PipelineConfig, out: Path, generate_fn: Any) -> None:
    rl = config.stage4
    stages.stage4_all_scenarios_rl(
        out / "stage3",
        out / "stage4",
        rl.model_copy(update={"env_kwargs": env_kwargs_for(config, rl.env_kwargs, "stage4")}),
        env_ids=config.env_ids,
        max_new_tokens=config.max_new_tokens,
        seed=config.seed,
        prompt_format=config.prompt_format,
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
            env_kwargs=reasoning_env_kwargs(config),
        )
        write_report(report, path, "eval")
        results[name] = json.loads(cache.read_text())
    return write_pipeline_report(out, config.model_dump(), checkpoints, results, timings or {})
