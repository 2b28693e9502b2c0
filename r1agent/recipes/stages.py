"""The four DeepSeek-R1 stages as functions (the pipeline wires them together).

* :func:`stage1_cold_start` — SFT on cold-start long-CoT data; when a quick-eval target is
  set, intermediate checkpoints are evaluated and training stops at the first one with
  enough headroom for RL (pass@1 around ``target_pass1``, pass@k well above it).
* :func:`stage2_reasoning_rl` — GRPO on the reasoning envs (accuracy + format + language).
* :func:`stage3_rejection_sft` — rejection sampling from the stage-2 model, plus general
  data, then SFT of the **base** model on the union.
* :func:`stage4_all_scenarios_rl` — GRPO on reasoning envs (rule rewards) mixed with
  :class:`ChatEnv` general prompts scored by reward models (helpfulness on the summary,
  harmlessness on the whole response).

Each stage writes a Hugging Face checkpoint directory and a ``stage.json`` summary; a stage
whose inputs are bad fails before writing anything into its own directory.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from r1agent.data.general import general_examples
from r1agent.data.rejection import build_stage3_set, sample_and_filter
from r1agent.data.sft import Example, read_examples
from r1agent.eval.evaluate import HELDOUT_SEED, evaluate
from r1agent.infra.config import RolloutConfig, load_config
from r1agent.infra.models import load_model, load_tokenizer
from r1agent.recipes.grpo import train_grpo
from r1agent.recipes.sft import SFTConfig, train_sft
from r1agent.rewards.chat_env import CHAT_ENV_ID, cached_judge
from r1agent.rollout.factory import make_generate, needs_model

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- helpers


def load_model_and_tokenizer(path: str | Path) -> tuple[Any, Any]:
    """Load a checkpoint with :func:`r1agent.models.load_model`."""

    return load_model(str(path))


def sampler(
    path: str | Path, rollout: RolloutConfig | None, generate_fn: Any = None
) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, generate_fn)`` to sample from the checkpoint at ``path``.

    The model is loaded only when the engine samples from it (``hf``, or a ``generate_fn``
    given); vLLM engines load their own copy and get ``None``.
    """
    if generate_fn is not None or needs_model(rollout):
        model, tokenizer = load_model_and_tokenizer(path)
        return model, tokenizer, generate_fn or make_generate(rollout, path)
    tokenizer = load_tokenizer(str(path))
    return None, tokenizer, make_generate(rollout, path, tokenizer=tokenizer)


def write_stage_summary(out_dir: str | Path, summary: dict[str, Any]) -> None:
    """Write ``stage.json`` (the pipeline's "this stage is finished" marker) last."""
    path = Path(out_dir) / "stage.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=2, default=str))
    tmp.replace(path)


# --------------------------------------------------------------------------- stage 1


def stage1_cold_start(
    base: str | Path,
    out_dir: str | Path,
    examples: Sequence[Example],
    sft: SFTConfig,
    *,
    env_ids: Sequence[str],
    max_new_tokens: int,
    prompt_format: str = "observation",
    target_pass1: float | None = 0.45,
    min_pass_k: float = 0.7,
    eval_n: int = 96,
    eval_k: int = 8,
    generate_fn: Any = None,
    loaded: tuple[Any, Any] | None = None,
    env_kwargs: dict[str, dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cold-start SFT of ``base`` on ``examples``, stopping at the first checkpoint with headroom.

    With ``target_pass1`` set, every ``sft.save_steps`` checkpoint is quick-evaluated at
    T=0.6 on held-out problems (seeds above the eval range's first ``eval_n``... the same
    held-out range the report uses, a different sample seed) and training stops once pass@1
    reaches ``target_pass1`` with pass@``eval_k`` at least ``min_pass_k``.

    ``loaded`` is ``base`` already loaded as ``(model, tokenizer)``; ``env_kwargs`` are the
    quick-eval envs' ``gym.make`` kwargs; ``extra`` goes into ``stage.json``.
    """

    model, tokenizer = loaded if loaded is not None else load_model_and_tokenizer(base)
    history: list[dict[str, Any]] = []

    def on_save(step: int, _path: Path) -> bool:
        if target_pass1 is None:
            return False
        report = evaluate(
            model,
            tokenizer,
            env_ids,
            n=eval_n,
            k=eval_k,
            max_new_tokens=max_new_tokens,
            prompt_format=prompt_format,
            seed=1234 + step,
            base_seed=HELDOUT_SEED + 500_000,
            generate_fn=generate_fn,
            env_kwargs=env_kwargs,
        )
        row = {
            "step": step,
            "pass@1": report.overall["pass@1"],
            f"pass@{eval_k}": report.overall[f"pass@{eval_k}"],
        }
        history.append(row)
        log.info("stage 1 quick eval: %s", row)
        return row["pass@1"] >= target_pass1 and row[f"pass@{eval_k}"] >= min_pass_k

    sft = sft.model_copy(update={"output_dir": str(out_dir), "model": str(base)})
    summary = train_sft(model, tokenizer, examples, sft, on_save=on_save)
    summary["quick_evals"] = history
    write_stage_summary(
        out_dir,
        {"stage": "stage1", "checkpoint": str(Path(out_dir).resolve()), **summary, **(extra or {})},
    )
    return summary


# --------------------------------------------------------------------------- stages 2 and 4


def run_grpo(
    model: str | Path,
    out_dir: str | Path,
    envs: dict[str, float] | Sequence[str],
    overrides: dict[str, Any],
    *,
    max_new_tokens: int,
    seed: int = 0,
    env_kwargs: dict[str, dict[str, Any]] | None = None,
    prompt_format: str | None = None,
    callbacks: Sequence[Any] = (),
) -> dict[str, Any]:
    """Run the GRPO trainer (:func:`r1agent.trainer.train_grpo`) from ``model`` into ``out_dir``.

    Args:
        model: starting checkpoint.
        out_dir: where the final checkpoint goes (the trainer's run directory).
        envs: env ids (equal weights) or ``{env_id: weight}``.
        overrides: trainer config fields (steps, lr, group size, ...).
        max_new_tokens: completion cap.
        seed: run seed.
        env_kwargs: ``gym.make`` kwargs per env id.
        prompt_format: how prompts are rendered (``overrides`` may still set it).
        callbacks: ``f(step, metrics) -> bool | None`` after each step; ``True`` stops.
    """

    mix = dict(envs) if isinstance(envs, dict) else {e: 1.0 for e in envs}
    data: dict[str, Any] = {
        "model": str(model),
        "output_dir": str(out_dir),
        "envs": mix,
        "seed": seed,
    }
    if prompt_format is not None:
        data["prompt_format"] = prompt_format
    config = load_config(data, overrides, max_new_tokens=max_new_tokens, env_kwargs=env_kwargs)
    return train_grpo(config, callbacks=callbacks)


def stage2_reasoning_rl(
    stage1: str | Path,
    out_dir: str | Path,
    rl: Any,
    *,
    env_ids: Sequence[str],
    max_new_tokens: int,
    seed: int = 0,
    prompt_format: str | None = None,
) -> dict[str, Any]:
    """GRPO from the stage-1 checkpoint on the reasoning envs (rule rewards)."""
    summary = run_grpo(
        stage1,
        out_dir,
        list(env_ids),
        rl.grpo.overrides(),
        max_new_tokens=max_new_tokens,
        seed=seed,
        env_kwargs=rl.env_kwargs,
        prompt_format=prompt_format,
    )
    write_stage_summary(
        out_dir, {"stage": "stage2", "checkpoint": str(Path(out_dir).resolve()), "trainer": summary}
    )
    return summary


def stage4_all_scenarios_rl(
    stage3: str | Path,
    out_dir: str | Path,
    rl: Any,
    *,
    env_ids: Sequence[str],
    max_new_tokens: int,
    seed: int = 0,
    prompt_format: str | None = None,
) -> dict[str, Any]:
    """GRPO from the stage-3 checkpoint: reasoning envs plus general prompts with model rewards.

    Raises:
        JudgeLoadError: if a reward model cannot be loaded (checked before training starts).
        ValueError: if general prompts are requested without a helpfulness judge.
    """
    env_kwargs = dict(rl.env_kwargs)
    mix = {e: (1.0 - rl.general_weight) / len(env_ids) for e in env_ids}
    if rl.general_weight > 0:
        if not rl.helpfulness:
            raise ValueError("stage4.general_weight > 0 needs stage4.helpfulness (a judge spec)")
        cached_judge(rl.helpfulness)  # fail here, before any training, if it cannot load
        if rl.harmlessness:
            cached_judge(rl.harmlessness)
        mix[CHAT_ENV_ID] = rl.general_weight
        env_kwargs[CHAT_ENV_ID] = {
            "helpfulness": rl.helpfulness,
            "harmlessness": rl.harmlessness,
            **env_kwargs.get(CHAT_ENV_ID, {}),
        }
    summary = run_grpo(
        stage3,
        out_dir,
        mix,
        rl.grpo.overrides(),
        max_new_tokens=max_new_tokens,
        seed=seed,
        env_kwargs=env_kwargs,
        prompt_format=prompt_format,
    )
    write_stage_summary(
        out_dir, {"stage": "stage4", "checkpoint": str(Path(out_dir).resolve()), "trainer": summary}
    )
    return summary


# --------------------------------------------------------------------------- stage 3


def stage3_rejection_sft(
    stage2: str | Path,
    base: str | Path,
    out_dir: str | Path,
    sft: SFTConfig,
    *,
    env_ids: Sequence[str],
    n_prompts: int,
    samples: int,
    max_new_tokens: int,
    prompt_format: str = "observation",
    general_path: str | Path | None = None,
    general_limit: int | None = None,
    seed: int = 3_000_000,
    temperature: float = 1.0,
    max_per_prompt: int = 1,
    generate_fn: Any = None,
    env_kwargs: dict[str, dict[str, Any]] | None = None,
    rollout: RolloutConfig | None = None,
) -> dict[str, Any]:
    """Rejection-sample from ``stage2``, add general data, SFT ``base`` on the union.

    ``env_kwargs`` are the sampled envs' ``gym.make`` kwargs (output format, template).
    ``rollout`` chooses the engine that samples (:func:`r1agent.rollout.factory.make_generate`:
    ``hf`` on the loaded model, in-process ``vllm``, or ``vllm-server``); ``generate_fn``,
    when given, wins.

    Raises:
        EmptyDatasetError: if no sample survives the filters (nothing is written as a model).
        FileNotFoundError, ValueError: for a missing or malformed general data file.
    """

    general = general_examples(general_path, general_limit)  # fails early on bad data
    model, tokenizer, generate_fn = sampler(stage2, rollout, generate_fn)
    kept, counts = sample_and_filter(
        model,
        tokenizer,
        env_ids,
        n_prompts=n_prompts,
        samples=samples,
        seed=seed,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        prompt_format=prompt_format,
        max_per_prompt=max_per_prompt,
        generate_fn=generate_fn,
        env_kwargs=env_kwargs,
    )
    del model
    out = Path(out_dir)
    data = build_stage3_set(kept, general, out.parent / f"{out.name}_data.jsonl")
    examples = read_examples(data)
    random.Random(seed).shuffle(examples)
    base_model, base_tok = load_model_and_tokenizer(base)
    sft = sft.model_copy(update={"output_dir": str(out), "model": str(base)})
    summary = train_sft(base_model, base_tok, examples, sft)
    summary.update({"rejection": counts, "general": len(general), "data": str(data)})
    write_stage_summary(out, {"stage": "stage3", "checkpoint": str(out.resolve()), **summary})
    return summary
