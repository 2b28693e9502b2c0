"""``r1agent reproduce [--output DIR] [--seeds 2]``: four of DeepSeek-R1's findings at toy scale.

One run per seed (seeds run in parallel processes, one CPU thread each) on a mix of three
envs — ``r1/ArithmeticEasy-v0``, its Chinese twin ``r1/ArithmeticEasyZh-v0`` and
``r1/CountdownEasy-v0`` — all from one tiny base model:

0. stage 0: the tiny factory's model pretrained on synthetic text — arithmetic facts, general
   answers, and the envs' prompts each followed by a worked solution in free form (no
   format tags) — the *base*; and a student with about a quarter of its parameters (same
   tokenizer) pretrained the same way;
1. cold start: SFT of the base on solver-exact chains of thought whose sentences mix English
   and Chinese (:mod:`r1agent.data.bilingual`), stopped at the first checkpoint with RL
   headroom;
2. reasoning RL from the cold start, two arms at the same budget: accuracy and format
   rewards (``stage2``, finding 1), and the same plus the language-consistency reward
   (``stage2_language``, the recipe's stage 2; finding 3 compares the two); every RL arm
   runs in phases (``rl_phases``): Countdown alone for two thirds of its steps, then the
   two arithmetic envs;
3. R1-Zero: the same RL as ``stage2`` from the base, no cold start;
4. distillation: the ``stage2_language`` model's env-filtered samples SFT the student; the
   recipe's RL trains the same student from its base for the same wall-clock time.

Every checkpoint is evaluated on held-out problems (env seeds ``10_000_000 + i``, T=0.6,
top-p 0.95). ``DIR/summary.json`` (the claims, with absolute checkpoint paths),
``DIR/report.md`` and plots are written by :mod:`r1agent.recipes.reproduce_report`.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from transformers import Qwen2Config, Qwen2ForCausalLM

from r1agent.data.bilingual import free_form_documents, mixed_examples
from r1agent.data.rejection import EmptyDatasetError
from r1agent.eval.evaluate import evaluate_checkpoint, write_report
from r1agent.eval.report import read_metrics
from r1agent.infra.models import load_model, load_tokenizer
from r1agent.infra.tiny import build_tiny_model
from r1agent.recipes.distill import DistillConfig, run_distill
from r1agent.recipes.pretrain import pretrain, synthetic_corpus
from r1agent.recipes.reproduce_report import write_reproduce_report
from r1agent.recipes.sft import SFTConfig
from r1agent.recipes.stages import run_grpo, stage1_cold_start, write_stage_summary

log = logging.getLogger(__name__)

ENV_IDS = ["r1/ArithmeticEasy-v0", "r1/ArithmeticEasyZh-v0", "r1/CountdownEasy-v0"]
#: The bilingual pair of the language finding (English and Chinese prompts).
LANGUAGE_ENV_IDS = ENV_IDS[:2]
#: RL sampling weights of a single-phase run (``rl_phases=null``): Countdown 3 of every 7.
RL_MIX = {ENV_IDS[0]: 1.0, ENV_IDS[1]: 1.0, ENV_IDS[2]: 1.5}
#: Cold-start chains per round of each env: Countdown gets 1 of every 5, so that its cold
#: start solves about a quarter of the held-out problems (one each: about a third) and RL
#: has room to show on it, while the arithmetic envs learn the format and the mixing.
COLD_START_MIX = {ENV_IDS[0]: 2, ENV_IDS[1]: 2, ENV_IDS[2]: 1}
MAX_NEW_TOKENS = 96
PROMPT_FORMAT = "observation"
#: Env seeds of the cold-start data and of the distillation prompts (below the held-out range).
COLD_START_SEED, DISTILL_SEED, PRETRAIN_SEED = 1_000_000, 4_000_000, 5_000_000


def _check_mix(name: str, mix: dict[str, Any], what: str = "weight") -> dict[str, Any]:
    for env_id, weight in mix.items():
        if env_id not in ENV_IDS:
            raise ValueError(f"{name}: {env_id!r} is not one of {ENV_IDS}")
        if weight < 0:
            raise ValueError(f"{name}: {what} of {env_id!r} must be >= 0, got {weight}")
    if not any(mix.values()):
        raise ValueError(f"{name}: at least one {what} must be > 0, got {mix}")
    return mix


class RLPhase(BaseModel):
    """One stretch of every RL arm: its share of the arm's steps (or time) and its env mix."""

    model_config = ConfigDict(extra="forbid")
    share: float = Field(..., gt=0, le=1, description="fraction of rl_steps (or of the time)")
    mix: dict[str, float] = Field(..., description="env id -> sampling weight (others: none)")

    @field_validator("mix")
    @classmethod
    def _mix_envs(cls, mix: dict[str, float]) -> dict[str, float]:
        return _check_mix("rl_phases mix", mix)


#: Every RL arm trains Countdown alone for two thirds of its steps, then the two arithmetic
#: envs: on the mixed batches of one phase, Countdown gained about half as much (and the
#: arithmetic envs no more) at the same budget.
RL_PHASES = [
    RLPhase(share=2 / 3, mix={ENV_IDS[2]: 1.0}),
    RLPhase(share=1 / 3, mix={ENV_IDS[0]: 1.0, ENV_IDS[1]: 1.0}),
]


class ReproduceConfig(BaseModel):
    """Budgets of ``r1agent reproduce``; ``scale`` multiplies every training budget."""

    model_config = ConfigDict(extra="forbid")
    output_dir: str
    seeds: int = Field(2, ge=1, description="independent runs (seed 0 .. seeds-1)")
    jobs: int = Field(0, ge=0, description="seeds run at once (0: one per CPU, at most seeds)")
    scale: float = Field(1.0, gt=0, description="multiplies every training budget")
    pretrain_steps: int = Field(150, ge=1)
    pretrain_solutions: int = Field(
        1500, ge=0, description="stage-0 documents: a prompt and a free-form worked solution"
    )
    cold_start_examples: int = Field(12000, ge=1)
    cold_start_mix: dict[str, int] = Field(
        default_factory=lambda: dict(COLD_START_MIX),
        description="cold-start chains per round of each env id (envs in turn; 0 drops one)",
    )
    cold_start_steps: int = Field(1000, ge=1, description="SFT steps at most (stops earlier)")
    cold_start_first_check: int = Field(300, ge=1, description="first quick-eval step")
    cold_start_check_every: int = Field(50, ge=1, description="quick-eval interval (steps)")
    mixing: float = Field(
        0.3, ge=0, le=1, description="cold start: share of sentences in the other language"
    )
    target_pass1: float = Field(0.4, description="stop SFT at this quick-eval pass@1 ...")
    min_pass_k: float = Field(0.7, description="... with pass@8 at least this")
    rl_steps: int = Field(300, ge=1, description="GRPO steps of every RL arm (all phases)")
    rl_phases: list[RLPhase] | None = Field(
        default_factory=lambda: [p.model_copy() for p in RL_PHASES],
        description="consecutive phases of every RL arm, each with its share of rl_steps and "
        "its env mix (null: one phase on rl_mix)",
    )
    rl_mix: dict[str, float] = Field(
        default_factory=lambda: dict(RL_MIX),
        description="RL sampling weight per env id when rl_phases is null (envs left out keep "
        "their default; 0 drops one)",
    )
    prompts_per_step: int = Field(16, ge=1)
    group_size: int = Field(8, ge=2)
    rl_lr: float = Field(5e-5, gt=0)
    language_weight: float = Field(
        2.0,
        ge=0,
        description="language reward weight (the paper sums it with accuracy: weight 1)",
    )
    distill_prompts: int = Field(1200, ge=1)
    distill_steps: int = Field(300, ge=1)
    student_hidden: int = Field(64, ge=8, description="student width (teacher: 128)")
    student_layers: int = Field(3, ge=1, description="student depth (teacher: 4)")
    eval_n: int = Field(600, ge=1, description="held-out problems per checkpoint (envs in turn)")
    eval_k: int = Field(2, ge=1, description="samples per problem (pass@1 is their mean)")
    quick_eval_n: int = Field(48, ge=1)

    @field_validator("cold_start_mix")
    @classmethod
    def _cold_start_envs(cls, given: dict[str, int]) -> dict[str, int]:
        return _check_mix("cold_start_mix", {**COLD_START_MIX, **given}, "count")

    @field_validator("rl_mix")
    @classmethod
    def _mix_envs(cls, given: dict[str, float]) -> dict[str, float]:
        return _check_mix("rl_mix", {**RL_MIX, **given})

    @field_validator("rl_phases")
    @classmethod
    def _shares(cls, phases: list[RLPhase] | None) -> list[RLPhase] | None:
        if phases is not None:
            shares = [p.share for p in phases]
            if not phases or abs(sum(shares) - 1) > 1e-6:
                raise ValueError(f"rl_phases: the shares must add up to 1, got {shares}")
        return phases

    def phases(self) -> list[tuple[float, dict[str, float]]]:
        """``(share, mix)`` of each RL phase, envs of weight 0 left out."""
        given = self.rl_phases or [RLPhase(share=1.0, mix=self.rl_mix)]
        return [(p.share, {e: w for e, w in p.mix.items() if w > 0}) for p in given]

    def n(self, budget: int) -> int:
        """A training budget times ``scale`` (at least 1)."""
        return max(1, int(budget * self.scale))


def run_reproduce(config: ReproduceConfig) -> dict[str, Any]:
    """Run every seed (resuming finished pieces), then write the summary and report."""
    out = Path(config.output_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "reproduce_config.json").write_text(config.model_dump_json(indent=2))
    t0 = time.time()
    jobs = config.jobs or min(config.seeds, os.cpu_count() or 1)
    seeds = list(range(config.seeds))
    if jobs <= 1:
        results = [run_seed(config, s) for s in seeds]
    else:
        results = map_in_processes(_run_seed_job, [(config.model_dump(), s) for s in seeds], jobs)
    wall = round(time.time() - t0, 1)
    return write_reproduce_report(out, results, _settings(config), wall_s=wall)


def map_in_processes(fn: Callable[..., Any], calls: list[tuple[Any, ...]], jobs: int) -> list[Any]:
    """``[fn(*args) for args in calls]`` in ``jobs`` spawned processes.

    A worker's exception is raised once the other workers have finished (their pieces are
    saved, so a rerun resumes). SIGTERM or Ctrl-C in this process stops the workers too,
    instead of leaving them running on their own.
    """
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_signal) if main else None
    try:
        results = list(pool.map(fn, *zip(*calls, strict=True)))
    except (KeyboardInterrupt, SystemExit):
        for child in multiprocessing.active_children():
            child.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    except BaseException:
        pool.shutdown(wait=True)
        raise
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    pool.shutdown(wait=True)
    return results


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _settings(config: ReproduceConfig) -> dict[str, Any]:
    return {
        "env_ids": ENV_IDS,
        "language_env_ids": LANGUAGE_ENV_IDS,
        "prompt_format": PROMPT_FORMAT,
        "max_new_tokens": MAX_NEW_TOKENS,
        "eval": {"n": config.eval_n, "k": config.eval_k, "temperature": 0.6, "top_p": 0.95},
        "config": config.model_dump(),
    }


def _run_seed_job(config: dict[str, Any], seed: int) -> dict[str, Any]:
    logging.basicConfig(level=logging.INFO, format=f"[seed {seed}] %(levelname)s %(message)s")
    cfg = ReproduceConfig(**config)
    jobs = cfg.jobs or min(cfg.seeds, os.cpu_count() or 1)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))  # the seeds share the cores
    return run_seed(cfg, seed)


def run_seed(config: ReproduceConfig, seed: int) -> dict[str, Any]:
    """Every piece of one seed's run (each skipped when already finished); returns its facts."""
    root = Path(config.output_dir).resolve() / f"seed{seed}"
    root.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = _read_json(root / "timings.json")

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t = time.time()
        result = fn()
        if name not in times:
            times[name] = round(time.time() - t, 1)
            (root / "timings.json").write_text(json.dumps(times, indent=2))
        return result

    base, student = timed("stage0", lambda: build_bases(config, root, seed))
    stage1 = timed("cold_start", lambda: cold_start(config, root / "stage1", base, seed))
    language = {e: {"reward_weights": {"language": config.language_weight}} for e in ENV_IDS}
    arms = {
        "stage2": (stage1, {}),
        "stage2_language": (stage1, language),
        "r1_zero": (base, {}),
    }
    for name, (start, env_kwargs) in arms.items():
        timed(name, lambda s=start, k=env_kwargs, d=name: rl_arm(config, root / d, s, k, seed))
    teacher = root / "stage2_language"
    distilled = timed("distill", lambda: distill(config, root, teacher, student, seed))
    budget = times["distill"]
    timed(
        "student_rl",
        lambda: rl_arm(config, root / "student_rl", student, {}, seed, seconds=budget),
    )
    checkpoints = {
        "base": base,
        "stage1": stage1,
        **{name: root / name for name in arms},
        "distilled": distilled,
        "student_rl": root / "student_rl",
    }
    evals = {
        name: timed(f"eval_{name}", lambda p=p: evaluate(config, p))
        for name, p in checkpoints.items()
    }
    return {
        "seed": seed,
        "checkpoints": {k: str(v) for k, v in checkpoints.items()},
        "evals": evals,
        "timings": times,
        "stage1": _read_json(stage1 / "stage.json"),
        "params": {"teacher": _params(base), "student": _params(student)},
        "distill_budget_s": budget,
        "student_rl_steps": _read_json(root / "student_rl" / "stage.json").get("steps"),
    }


# --------------------------------------------------------------------------- the pieces


def build_bases(config: ReproduceConfig, root: Path, seed: int) -> tuple[Path, Path]:
    """The base model and the student (same tokenizer, ~1/4 of the parameters), pretrained."""
    base, student = root / "base", root / "student_base"
    if (base / "stage.json").is_file() and (student / "stage.json").is_file():
        return base, student
    solved = free_form_documents(
        ENV_IDS, config.n(config.pretrain_solutions), seed=PRETRAIN_SEED + seed * 100_000
    )
    if not (base / "stage.json").is_file():
        texts = synthetic_corpus(1000, env_ids=(), seed=seed, max_value=9) + solved[:600]
        mixed = mixed_examples(ENV_IDS, 600, seed=9_000_000, keep=1.0 - config.mixing)
        texts += [e.prompt + " " + e.response for e in mixed]
        tiny = build_tiny_model(root / "tiny", texts=texts, seed=seed)
        _pretrain(config, tiny, base, seed, solved)
    if not (student / "stage.json").is_file():
        small = root / "tiny_student"
        build_student(base, small, config.student_hidden, config.student_layers, seed)
        _pretrain(config, small, student, seed, solved)
    return base, student


def _pretrain(config: ReproduceConfig, init: Path, out: Path, seed: int, solved: list[str]) -> None:
    """Stage 0: arithmetic text, general answers and prompts followed by a free-form worked
    solution (no format tags, no prompt left without an answer: a base that stops right
    after ``Assistant:`` could never be trained by RL alone)."""
    model, tokenizer = load_model(str(init))
    summary = pretrain(
        model,
        tokenizer,
        out,
        steps=config.n(config.pretrain_steps),
        seed=seed,
        env_ids=(),
        max_value=9,
        extra_documents=solved,
    )
    write_stage_summary(out, {"stage": "stage0", "checkpoint": str(out), **summary})


def build_student(teacher: Path, out: Path, hidden: int, layers: int, seed: int) -> Path:
    """A randomly initialised, narrower and shallower copy of ``teacher``'s architecture with
    ``teacher``'s tokenizer (so both read and write the same tokens)."""
    tokenizer = load_tokenizer(str(teacher))
    cfg = Qwen2Config.from_pretrained(str(teacher))
    heads = max(1, hidden // 16)
    cfg.update(
        {
            "hidden_size": hidden,
            "num_hidden_layers": layers,
            "intermediate_size": hidden * 4,
            "num_attention_heads": heads,
            "num_key_value_heads": max(1, heads // 2),
        }
    )
    if getattr(cfg, "layer_types", None) is not None:
        cfg.layer_types = cfg.layer_types[:1] * layers
    torch.manual_seed(seed + 1)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    return out


def cold_start(config: ReproduceConfig, out: Path, base: Path, seed: int) -> Path:
    """Stage 1: SFT on mixed-language solver chains, stopped at the first checkpoint with
    RL headroom (quick-eval pass@1 at least ``target_pass1`` with pass@8 at least
    ``min_pass_k``)."""
    if (out / "stage.json").is_file():
        return out
    examples = mixed_examples(
        rotation(config.cold_start_mix),
        config.cold_start_examples,
        seed=COLD_START_SEED + seed * 100_000,
        keep=1.0 - config.mixing,
    )
    first, last = config.n(config.cold_start_first_check), config.n(config.cold_start_steps)
    sft = SFTConfig(
        max_steps=last,
        lr=2e-3,
        batch_size=16,
        max_len=330,
        warmup_steps=min(20, last // 5),
        seed=seed,
        save_steps=list(range(first, last, config.n(config.cold_start_check_every))),
    )
    stage1_cold_start(
        base,
        out,
        examples,
        sft,
        env_ids=ENV_IDS,
        max_new_tokens=MAX_NEW_TOKENS,
        prompt_format=PROMPT_FORMAT,
        target_pass1=config.target_pass1,
        min_pass_k=config.min_pass_k,
        eval_n=config.quick_eval_n,
        eval_k=8,
        extra={"examples": len(examples), "data": "mixed-language solver chains"},
    )
    return out


def rotation(counts: dict[str, int]) -> list[str]:
    """Env ids in turn, each as many times per round as its count: ``{a: 2, b: 1}`` gives
    ``[a, b, a]``."""
    return [e for r in range(max(counts.values())) for e, c in counts.items() if c > r]


def rl_arm(
    config: ReproduceConfig,
    out: Path,
    start: Path,
    env_kwargs: dict[str, dict[str, Any]],
    seed: int,
    *,
    seconds: float | None = None,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """GRPO from ``start``, phase after phase of ``config.phases()``, for ``rl_steps`` steps in
    all (or for ``seconds`` of wall-clock time, whichever ends first when ``seconds`` is set;
    each phase gets its share of both); ``overrides`` change trainer settings
    (``bench/reproduce_rl_variants.py``; ``steps`` there is the arm's total).

    A run of several phases trains each in ``out/phases/N`` and copies the last one's model
    to ``out``, with every phase's metrics in ``out/metrics.jsonl`` (steps counted on).
    """
    if (out / "stage.json").is_file():
        return out
    settings = {
        "steps": config.n(config.rl_steps) * (20 if seconds is not None else 1),
        "prompts_per_step": config.prompts_per_step,
        "group_size": config.group_size,
        "lr": config.rl_lr,
        "temperature": 1.0,
        "loss_aggregation": "token_mean",
        "progress": False,
        "sample_every": 10,
        "save_every": 0,
        **(overrides or {}),
    }
    phases = config.phases()
    current, done = start, []
    for i, (share, mix) in enumerate(phases, 1):
        dest = out if len(phases) == 1 else out / "phases" / str(i)
        budget = None if seconds is None else seconds * share
        current = _rl_phase(current, dest, mix, share, settings, budget, env_kwargs, seed)
        done.append(current)
    if len(phases) > 1:
        _gather_phases(done, out)
    finished = [_read_json(d / "phase.json") for d in done]
    steps = [f.get("steps") or 0 for f in finished]
    seconds_used = [f.get("seconds") or 0 for f in finished]
    write_stage_summary(
        out,
        {
            "stage": "rl",
            "start": str(start),
            "checkpoint": str(out),
            "steps": sum(steps),
            "seconds": round(sum(seconds_used), 1),
            "phases": [
                {"share": share, "mix": mix, "steps": n}
                for (share, mix), n in zip(phases, steps, strict=True)
            ],
            "env_kwargs": env_kwargs,
        },
    )
    return out


def _rl_phase(
    start: Path,
    out: Path,
    mix: dict[str, float],
    share: float,
    settings: dict[str, Any],
    seconds: float | None,
    env_kwargs: dict[str, dict[str, Any]],
    seed: int,
) -> Path:
    """One phase of :func:`rl_arm` (skipped when ``out/phase.json`` says it finished)."""
    if (out / "phase.json").is_file():
        return out
    callbacks = []
    if seconds is not None:
        t0 = time.time()
        callbacks.append(lambda _step, _row: time.time() - t0 >= seconds)
    summary = run_grpo(
        start,
        out,
        mix,
        {**settings, "steps": max(1, round(settings["steps"] * share))},
        max_new_tokens=MAX_NEW_TOKENS,
        seed=seed,
        env_kwargs={e: kwargs for e, kwargs in env_kwargs.items() if e in mix},
        prompt_format=PROMPT_FORMAT,
        callbacks=callbacks,
    )
    info = {"start": str(start), "mix": mix, **{k: summary.get(k) for k in ("steps", "seconds")}}
    (out / "phase.json").write_text(json.dumps(info, indent=2))
    return out


def _gather_phases(phases: list[Path], out: Path) -> None:
    """The last phase's model files into ``out``; every phase's metrics, steps counted on
    and marked with their phase, into ``out/metrics.jsonl``."""
    for f in phases[-1].iterdir():
        if f.is_file() and f.name not in ("metrics.jsonl", "phase.json"):
            shutil.copy2(f, out / f.name)
    rows, offset = [], 0
    for i, d in enumerate(phases, 1):
        phase = read_metrics(d / "metrics.jsonl")
        for row in phase:
            row["step"] = offset + int(row.get("step", 0))
            row["phase"] = i
        rows += phase
        offset = max([offset, *(r["step"] for r in phase)])
    tmp = out / "metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(out / "metrics.jsonl")


def distill(config: ReproduceConfig, root: Path, teacher: Path, student: Path, seed: int) -> Path:
    """The teacher's env-filtered samples SFT the student base (``run_distill``).

    A teacher that writes no correct sample (tiny budgets) leaves the student untrained: the
    student base is returned and ``distill/failed.json`` says why.
    """
    out = root / "distill"
    if (out / "student" / "stage.json").is_file():
        return out / "student"
    if (out / "failed.json").is_file():
        return student
    steps = config.n(config.distill_steps)
    try:
        _run_distill(config, out, teacher, student, seed, steps)
    except EmptyDatasetError as exc:
        log.warning("distillation skipped: %s", exc)
        (out / "failed.json").write_text(json.dumps({"error": str(exc)}))
        return student
    return out / "student"


def _run_distill(
    config: ReproduceConfig, out: Path, teacher: Path, student: Path, seed: int, steps: int
) -> None:
    run_distill(
        DistillConfig(
            teacher=str(teacher),
            student=str(student),
            output_dir=str(out),
            env_ids=ENV_IDS,
            prompts=config.n(config.distill_prompts),
            samples=2,
            max_new_tokens=MAX_NEW_TOKENS,
            seed=DISTILL_SEED + seed * 100_000,
            sft=SFTConfig(
                epochs=10,
                max_steps=steps,
                lr=2e-3,
                batch_size=16,
                max_len=330,
                warmup_steps=min(10, steps // 5),
                seed=seed,
            ),
        ),
        evaluate_students=False,
    )


def evaluate(config: ReproduceConfig, path: Path) -> dict[str, Any]:
    """Held-out evaluation of a checkpoint (cached as ``eval.json`` beside it)."""
    cache = path / "eval.json"
    if not cache.is_file():
        report = evaluate_checkpoint(
            path,
            ENV_IDS,
            n=config.eval_n,
            k=config.eval_k,
            temperature=0.6,
            top_p=0.95,
            max_new_tokens=MAX_NEW_TOKENS,
            prompt_format=PROMPT_FORMAT,
            keep_samples=6,
        )
        write_report(report, path, "eval")
    return json.loads(cache.read_text())


def _params(path: Path) -> int:
    model, _ = load_model(str(path))
    return sum(p.numel() for p in model.parameters())


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}
