"""``r1agent demo [--output DIR]``: the whole R1 recipe on the tiny model, on a CPU.

Steps (budgets chosen for about 11 minutes on an idle 2-core machine; one run measured
633 s, ``DIR/timings.json`` has each run's figures):

0. build the tiny model (tokenizer trained locally) and pretrain it briefly on synthetic text
   (one-digit arithmetic facts, the env's prompts, general answers: the *base* model);
1. cold-start SFT on solver-written long-CoT data in the readable r1 format, stopped at the
   first checkpoint with RL headroom (quick-eval pass@1 ≥ 0.4 with pass@8 ≥ 0.7, checked every
   25 steps from step 275);
2. reasoning-oriented GRPO on ``r1/ArithmeticEasy-v0`` (one-digit operands) (token-level loss, G=8, lr 5e-5);
3. rejection sampling from stage 2 + the shipped general data, SFT of the base model for
   1.1x stage 1's steps (the base needs about as many SFT steps as stage 1 to learn the sums);
4. a Bradley–Terry reward model trained on the shipped preference pairs, then GRPO on
   arithmetic prompts (rule rewards) mixed with general prompts (model rewards);
5. distillation: the final model writes answers, env rewards filter them, the base model is
   SFT-ed on them (a few dozen steps at this budget: the student stays near 0 pass@1, where
   stage 1 needed ~450 steps on 20k solver examples);
6. every checkpoint evaluated on held-out problems (env seeds ``10_000_000 + i``, the
   checker's problems) at T=0.6, top-p 0.95.

``DIR/report.json``: ``{"stages": {"stage1".."stage4", "distill": {"checkpoint", "pass@1"}},
"env_ids", "max_new_tokens", "prompt_format"}``; ``DIR/report.md`` and plots alongside.
What the demo shows is learning from reward (stage 1 → 2 on held-out problems); more SFT on
labelled data would also raise accuracy — the report says so.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from r1agent.data.coldstart import solver_examples
from r1agent.eval.evaluate import evaluate_checkpoint
from r1agent.infra.models import load_model
from r1agent.infra.tiny import build_tiny_model
from r1agent.recipes.distill import DistillConfig, run_distill
from r1agent.recipes.pipeline import (
    EvalConfig,
    PipelineConfig,
    RLConfig,
    Stage1Config,
    Stage3Config,
    Stage4Config,
    evaluate_stages,
    run_pipeline,
    stage_done,
)
from r1agent.recipes.pretrain import pretrain, synthetic_corpus
from r1agent.recipes.reward_model import RewardModelConfig, train_reward_model
from r1agent.recipes.sft import SFTConfig
from r1agent.recipes.stages import write_stage_summary

log = logging.getLogger(__name__)

ENV_IDS = ["r1/ArithmeticEasy-v0"]
MAX_NEW_TOKENS = 96


def demo_config(out: Path, base: Path, reward_model: Path, *, scale: float = 1.0) -> PipelineConfig:
    """The demo's pipeline configuration; ``scale`` multiplies every training budget."""

    def n(x: int) -> int:
        return max(1, int(x * scale))

    common = {
        "group_size": 8,
        "prompts_per_step": 16,
        "temperature": 1.0,
        "progress": False,
        "sample_every": 10,
        "loss_aggregation": "token_mean",
    }
    grpo2 = {**common, "steps": n(50), "lr": 5e-5}
    grpo4 = {**common, "steps": n(16), "lr": 3e-5}
    return PipelineConfig(
        output_dir=str(out),
        base_model=str(base),
        env_ids=ENV_IDS,
        prompt_format="observation",
        # the envs' default prompts: stage 0's pretraining, the distillation and the learning
        # check see the same ones
        output_format="r1-zero",
        max_new_tokens=MAX_NEW_TOKENS,
        stage1=Stage1Config(
            examples=20000,
            sft=SFTConfig(
                max_steps=n(1000),
                lr=2e-3,
                batch_size=16,
                max_len=330,
                warmup_steps=20,
                # quick-evaluated every 25 steps from step 275: before it pass@1 stays
                # near 0.1; around steps 350-550 it climbs by up to 0.2 per 25 steps
                save_steps=list(range(n(275), n(1000), max(1, n(25)))),
            ),
            target_pass1=0.4,
            min_pass_k=0.7,
            eval_n=64,
            eval_k=8,
        ),
        stage2=RLConfig(grpo=grpo2),
        # stage 1 stops early on purpose (RL headroom); stage 3 SFTs the base a little longer
        stage3=Stage3Config(
            prompts=n(2000),
            samples=2,
            max_per_prompt=2,
            sft=SFTConfig(max_steps=n(600), lr=2e-3, batch_size=16, max_len=330, warmup_steps=20),
            steps_from_stage1=1.1,
        ),
        stage4=Stage4Config(grpo=grpo4, helpfulness=f"rm:{reward_model}", general_weight=0.125),
        eval=EvalConfig(n=300, k=2),
    )


def build_base(out: Path, *, pretrain_steps: int, seed: int = 0) -> Path:
    """The tiny factory's model (tokenizer trained on the envs' text), pretrained (stage 0)."""

    base = out / "base"
    if (base / "stage.json").is_file():
        return base
    texts = synthetic_corpus(2000, seed=seed)
    texts += [e.prompt + " " + e.response for e in solver_examples(ENV_IDS, 500, seed=9_000_000)]
    tiny = build_tiny_model(out / "tiny", texts=texts, seed=seed)
    model, tokenizer = load_model(str(tiny))
    # one-digit facts (``7 + 5 = 12. 12 - 3 = 9.``) and the demo env's prompts: the base
    # then knows the sums stage 1 teaches to use, and SFT reaches RL headroom sooner
    summary = pretrain(
        model, tokenizer, base, steps=pretrain_steps, seed=seed, env_ids=ENV_IDS, max_value=9
    )

    write_stage_summary(base, {"stage": "stage0", "checkpoint": str(base), **summary})
    return base


def run_demo(
    output: str | Path | None = None, *, scale: float = 1.0, generate_fn: Any = None
) -> dict[str, Any]:
    """Run the demo into ``output`` (default ``runs/demo-<time>``); returns ``report.json``'s dict."""

    out = Path(output or f"runs/demo-{time.strftime('%Y%m%d-%H%M%S')}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    timings: dict[str, float] = {}

    def lap(name: str, since: float) -> None:
        timings[name] = round(time.time() - since, 1)
        log.info("demo: %s done in %.1f s", name, timings[name])

    t = time.time()
    base = build_base(out, pretrain_steps=max(1, int(100 * scale)))
    lap("stage0", t)
    rm_dir = out / "reward_model"
    if not (rm_dir / "rm_summary.json").is_file():
        t = time.time()
        train_reward_model(RewardModelConfig(model=str(base), output_dir=str(rm_dir), epochs=3))
        lap("reward_model", t)
    config = demo_config(out / "pipeline", base, rm_dir, scale=scale)
    t = time.time()
    run_pipeline(config, generate_fn=generate_fn)
    lap("pipeline", t)
    distill_dir = out / "distill"
    if not stage_done(distill_dir, "student"):
        t = time.time()
        run_distill(
            DistillConfig(
                teacher=str(out / "pipeline" / "stage4"),
                student=str(base),
                output_dir=str(distill_dir),
                env_ids=ENV_IDS,
                prompts=max(1, int(2000 * scale)),
                samples=2,
                max_new_tokens=MAX_NEW_TOKENS,
                # the student needs about stage 1's step count to learn the sums at all
                sft=SFTConfig(
                    epochs=10,
                    max_steps=max(1, int(500 * scale)),
                    lr=2e-3,
                    batch_size=16,
                    max_len=300,
                    warmup_steps=10,
                ),
            ),
            generate_fn=generate_fn,
            evaluate_students=False,
        )
        lap("distill", t)
    t = time.time()
    learning = learning_check(out / "pipeline", generate_fn=generate_fn)
    lap("learning_check", t)
    t = time.time()
    pipe = evaluate_stages(
        config,
        out / "pipeline",
        extra={"distill": distill_dir / "student"},
        generate_fn=generate_fn,
    )
    lap("evaluation", t)
    timings["total"] = round(time.time() - t0, 1)
    report = {
        "stages": {
            name: {"checkpoint": s["checkpoint"], "pass@1": s["pass@1"]}
            for name, s in pipe["stages"].items()
        },
        "env_ids": ENV_IDS,
        "max_new_tokens": MAX_NEW_TOKENS,
        "prompt_format": "observation",
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "timings.json").write_text(json.dumps(timings, indent=2))
    write_demo_markdown(out, pipe, timings, learning)
    return report


def learning_check(
    run: Path, *, n: int = 64, k: int = 8, generate_fn: Any = None
) -> dict[str, dict[str, float]]:
    """Paired stage-1 vs stage-2 numbers on the same held-out problems: greedy, pass@1, pass@k."""

    cache = run / "learning_check.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    rows: dict[str, dict[str, float]] = {}
    for stage in ("stage1", "stage2"):
        kw = {"max_new_tokens": MAX_NEW_TOKENS, "n": n, "generate_fn": generate_fn}
        greedy = evaluate_checkpoint(run / stage, ENV_IDS, k=1, temperature=0.0, **kw)
        sampled = evaluate_checkpoint(run / stage, ENV_IDS, k=k, seed=7, **kw)
        rows[stage] = {
            "greedy": greedy.overall["pass@1"],
            "pass@1": sampled.overall["pass@1"],
            f"pass@{k}": sampled.overall[f"pass@{k}"],
        }
    cache.write_text(json.dumps(rows, indent=2))
    return rows


def write_demo_markdown(
    out: Path, pipe: dict[str, Any], timings: dict[str, float], learning: dict[str, Any]
) -> None:
    """``report.md``: the pipeline report plus the demo's timings and honest caveats."""
    body = (out / "pipeline" / "report.md").read_text()
    stage1 = json.loads((out / "pipeline" / "stage1" / "stage.json").read_text())
    distill_file = out / "distill" / "student" / "stage.json"
    distill = json.loads(distill_file.read_text()) if distill_file.is_file() else {}
    distill_steps = distill.get("sft", {}).get("steps", "?")
    p1 = pipe.get("stages", {}).get("distill", {}).get("pass@1")
    distill_pass1 = f"{p1:.3f}" if isinstance(p1, float) else "?"
    lines = [
        body,
        "## Demo",
        "",
        "Wall times (s): " + ", ".join(f"{k} {v}" for k, v in timings.items()),
        "",
        "Stage-1 quick evaluations (SFT stopped at the first checkpoint with RL headroom): "
        + "; ".join(
            f"step {q['step']}: pass@1 {q['pass@1']:.2f}" for q in stage1.get("quick_evals", [])
        ),
        "",
        "Paired stage 1 → stage 2 on the same held-out problems (64 problems; greedy, "
        "T=0.6 pass@1 over 8 samples, pass@8): "
        + "; ".join(
            f"{stage}: " + ", ".join(f"{key} {v:.3f}" for key, v in row.items())
            for stage, row in learning.items()
        ),
        "",
        f"Distillation: the base model SFT-ed for {distill_steps} steps on the final model's "
        f"filtered samples, held-out pass@1 {distill_pass1}; stage 1 needed "
        f"{stage1.get('steps')} steps on {stage1.get('examples')} solver examples to learn "
        "the sums. The distilled-vs-RL-only comparison runs as its own command "
        "(`r1agent distill` with `rl_steps`).",
        "",
        "Stage 1 → stage 2 is learning from reward alone (GRPO on env rewards; no labels). "
        "Stage 3 SFTs the base model on the stage-2 model's own correct samples; more SFT on "
        "labelled data would raise accuracy too — the comparison that matters for RL is "
        "stage 1 → stage 2 on held-out problems.",
    ]
    (out / "report.md").write_text("\n".join(lines) + "\n")
