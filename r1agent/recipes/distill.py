"""Distillation: a teacher writes long-CoT answers, env rewards filter them, a student is SFT-ed.

``r1agent distill CONFIG.yaml`` (see :class:`DistillConfig`). The teacher is a checkpoint
directory (sampled with :mod:`r1agent.rollout`, with the engine ``rollout`` chooses: ``hf``,
in-process ``vllm`` or ``vllm-server``) or an OpenAI-compatible endpoint
(``http://host:port/v1#model``). Samples are kept when the env grades them correct and they
pass the stage-3 readability filters (:mod:`r1agent.rejection`).

With ``rl_steps > 0`` the same student is also trained by GRPO alone (no teacher) for that
many steps, and the report compares the two on held-out problems — the paper's finding
that distilling a strong teacher beats RL on the small model, measured.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from r1agent.data.rejection import EmptyDatasetError, dedup, readable, sample_and_filter
from r1agent.data.sft import Example, write_examples
from r1agent.eval.evaluate import evaluate_checkpoint, write_report
from r1agent.infra.config import GRPOSettings, RolloutConfig
from r1agent.infra.models import load_model
from r1agent.recipes.sft import SFTConfig, train_sft
from r1agent.recipes.stages import run_grpo, sampler, write_stage_summary
from r1agent.rewards.judges import EndpointJudge
from r1agent.rollout.episodes import make_env, render_prompt


class DistillConfig(BaseModel):
    """Configuration of ``r1agent distill`` (YAML + ``key=value`` overrides)."""

    model_config = ConfigDict(extra="forbid")
    teacher: str = Field(description="teacher checkpoint directory, or http(s)://URL/v1#model")
    student: str = Field(description="student model to SFT (directory or hub id)")
    output_dir: str = Field(description="run directory")
    env_ids: list[str] = Field(default_factory=lambda: ["r1/Arithmetic-v0"])
    prompt_format: Literal["observation", "chat"] = "observation"
    prompts: int = Field(1000, ge=1, description="training problems (env seeds from `seed`)")
    samples: int = Field(2, ge=1, description="teacher samples per problem")
    temperature: float = Field(0.6, gt=0, description="teacher sampling temperature")
    max_new_tokens: int = Field(96, ge=1)
    seed: int = Field(4_000_000, ge=0, lt=10_000_000, description="first training env seed")
    sft: SFTConfig = Field(default_factory=lambda: SFTConfig(epochs=2, lr=2e-3))
    rl_steps: int = Field(0, ge=0, description="also train the student by GRPO alone this long")
    grpo: GRPOSettings = Field(
        default_factory=GRPOSettings, description="GRPO settings for rl_steps (typed)"
    )
    eval_n: int = Field(300, ge=1, description="held-out problems for the comparison")
    eval_k: int = Field(4, ge=1)
    rollout: RolloutConfig = Field(
        default_factory=RolloutConfig,
        description="the engine the teacher checkpoint samples with (hf, vllm, vllm-server)",
    )


def endpoint_samples(
    spec: str, prompts: Sequence[str], *, samples: int, max_new_tokens: int, temperature: float
) -> list[list[str]]:
    """Completions from an OpenAI-compatible endpoint (``URL#model``), ``samples`` per prompt."""

    url, _, model = spec.partition("#")
    client = EndpointJudge(url, model or "default")
    return [
        [
            client.chat(p, max_tokens=max_new_tokens, temperature=temperature) or ""
            for _ in range(samples)
        ]
        for p in prompts
    ]


def teacher_data(
    config: DistillConfig, generate_fn: Any = None
) -> tuple[list[Example], dict[str, int]]:
    """Teacher-written, env-filtered examples."""

    if not config.teacher.startswith(("http://", "https://")):
        model, tokenizer, generate_fn = sampler(config.teacher, config.rollout, generate_fn)
        return sample_and_filter(
            model,
            tokenizer,
            config.env_ids,
            n_prompts=config.prompts,
            samples=config.samples,
            seed=config.seed,
            max_new_tokens=config.max_new_tokens,
            temperature=config.temperature,
            top_p=0.95,
            prompt_format=config.prompt_format,
            generate_fn=generate_fn,
        )
    envs = {e: make_env(e) for e in dict.fromkeys(config.env_ids)}
    items = []
    for i in range(config.prompts):
        env_id = config.env_ids[i % len(config.env_ids)]
        obs, info = envs[env_id].reset(seed=config.seed + i)
        items.append((env_id, config.seed + i, render_prompt(None, obs, info, "observation")))
    texts = endpoint_samples(
        config.teacher,
        [p for *_, p in items],
        samples=config.samples,
        max_new_tokens=config.max_new_tokens,
        temperature=config.temperature,
    )
    kept, counts = [], {"samples": 0, "wrong": 0, "unreadable": 0}
    for (env_id, s, prompt), outs in zip(items, texts, strict=True):
        for text in outs:
            counts["samples"] += 1
            envs[env_id].reset(seed=s)
            _, _, _, _, info = envs[env_id].step(text)
            if not info["correct"]:
                counts["wrong"] += 1
            elif not readable(text):
                counts["unreadable"] += 1
            else:
                kept.append(Example(prompt, text.strip()))
    kept = dedup(kept)
    counts["kept"] = len(kept)
    return kept, counts


def run_distill(
    config: DistillConfig, *, generate_fn: Any = None, evaluate_students: bool = True
) -> dict[str, Any]:
    """Distil the teacher into the student (and optionally compare with RL alone).

    Raises:
        EmptyDatasetError: if no teacher sample survives the filters.
    """

    out = Path(config.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    examples, counts = teacher_data(config, generate_fn)
    if not examples:
        raise EmptyDatasetError(f"the teacher wrote no correct, readable sample, counts: {counts}")

    write_examples(out / "teacher_data.jsonl", examples)
    model, tokenizer = load_model(config.student)
    student_dir = out / "student"
    sft = config.sft.model_copy(update={"output_dir": str(student_dir), "model": config.student})
    summary: dict[str, Any] = {
        "teacher": config.teacher,
        "student": config.student,
        "filter": counts,
    }
    summary["sft"] = train_sft(model, tokenizer, examples, sft)
    del model
    write_stage_summary(
        student_dir, {"stage": "distill", "checkpoint": str(student_dir), **summary}
    )
    checkpoints = {"distilled": student_dir}
    if config.rl_steps:
        rl_dir = out / "rl_only"
        run_grpo(
            config.student,
            rl_dir,
            config.env_ids,
            {**config.grpo.overrides(), "steps": config.rl_steps},
            max_new_tokens=config.max_new_tokens,
            seed=config.seed,
        )
        checkpoints["rl_only"] = rl_dir
    if evaluate_students:
        for name, path in checkpoints.items():
            report = evaluate_checkpoint(
                path,
                config.env_ids,
                n=config.eval_n,
                k=config.eval_k,
                max_new_tokens=config.max_new_tokens,
                prompt_format=config.prompt_format,
                generate_fn=generate_fn,
            )
            write_report(report, path, "eval")
            summary[name] = {"checkpoint": str(path), **report.overall}
    summary["seconds"] = round(time.time() - t0, 1)
    (out / "distill_report.json").write_text(json.dumps(summary, indent=2, default=str))
    lines = [
        "# Distillation report",
        "",
        f"Teacher: `{config.teacher}`; student: `{config.student}`.",
        "",
    ]
    lines.append(f"Teacher samples: {counts}.")
    for name in checkpoints:
        if name in summary:
            lines.append(f"- {name}: pass@1 {summary[name]['pass@1']:.3f}")
    (out / "distill_report.md").write_text("\n".join(lines) + "\n")
    return summary
