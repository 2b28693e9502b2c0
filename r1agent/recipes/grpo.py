"""GRPO over any mix of Gymnasium text envs — the training loop, top to bottom.

Run it: ``r1agent grpo examples/grpo_tiny.yaml steps=20`` or, from Python,
``train_grpo(load_config({...}))``; multi-process: ``torchrun --nproc_per_node 2 -m
r1agent.cli grpo CONFIG`` (DDP, gloo on CPU, NCCL on GPU; ``fsdp=true`` shards with FSDP2).

One step:

1. draw ``prompts_per_step`` problems ``(env_id, seed)`` from the weighted env mix
   (deterministic in ``(seed, step, rank)``, so a resumed run sees the same problems);
2. run ``group_size`` episodes per problem (:func:`r1agent.rollout.collect_episodes`),
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

A non-finite loss or gradient norm skips the update with a warning. The final model is
written into ``output_dir`` itself (a Hugging Face directory), step checkpoints under
``output_dir/checkpoints``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from r1agent.accel.cpu import retain_freed_memory, small_model_threads
from r1agent.infra import checkpoint as ckpt
from r1agent.infra.config import GRPOConfig
from r1agent.infra.distributed import (
    fsdp_gathered,
    full_model_state,
    reduce_mean,
    save_run_checkpoint,
    setup_distributed,
    unwrap,
)
from r1agent.infra.metrics import MetricsLogger, plot_metrics
from r1agent.infra.models import default_device, load_model
from r1agent.rl import grpo
from r1agent.rl.batch import Batch, batch_logprobs, build_batch, response_logits
from r1agent.rl.stats import StepStats, step_metrics
from r1agent.rollout.episodes import EnvPool, Episode, RewardFn, collect_episodes

log = logging.getLogger(__name__)

__all__ = ["Batch", "StepCallback", "build_batch", "sample_problems", "train_grpo"]

#: ``callback(step, metrics) -> bool | None``; returning ``True`` stops training.
StepCallback = Callable[[int, dict[str, Any]], "bool | None"]


# --------------------------------------------------------------------------- setup


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


# --------------------------------------------------------------------------- the loop


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
        config: a validated :class:`~r1agent.config.GRPOConfig`.
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
    c = config
    t_start = time.perf_counter()
    threads_before = torch.get_num_threads()
    device = default_device() if c.device == "auto" else torch.device(c.device)
    dd = setup_distributed(device)
    out_dir = Path(c.output_dir)
    seed_everything(c.seed + dd.rank)

    # ---- model, reference, optimizer (resuming from the last checkpoint when there is one)
    resume_from = ckpt.latest_checkpoint(out_dir) if c.resume else None
    param_dtype = torch.bfloat16 if c.dtype == "bfloat16" else torch.float32
    if model is None:
        model, tokenizer = load_model(str(resume_from or c.model), dtype=param_dtype, device=device)
    elif resume_from is not None:
        from transformers import AutoModelForCausalLM

        model.load_state_dict(AutoModelForCausalLM.from_pretrained(resume_from).state_dict())
    if tokenizer is None:
        raise ValueError("train_grpo: a model was given without its tokenizer")
    threads = c.threads or small_model_threads(model)
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cpu":
        retain_freed_memory()
    autocast_dtype = torch.bfloat16 if device.type == "cuda" and c.dtype == "auto" else None
    ref_model = None
    if c.beta > 0:  # the reference is the starting policy, never a resumed one
        ref_model, _ = load_model(c.model, dtype=param_dtype, device=device)
        ref_model.requires_grad_(False)
    policy = model
    if dd.world > 1:
        if c.fsdp:
            from torch.distributed.fsdp import fully_shard

            for layer in model.model.layers:
                fully_shard(layer)
            policy = fully_shard(model)
        else:
            from torch.nn.parallel import DistributedDataParallel as DDP

            policy = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=c.lr,
        weight_decay=c.weight_decay,
        fused=not (c.fsdp and dd.world > 1),  # one kernel per step (sharded DTensors: foreach)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / (c.warmup_steps + 1)) if c.warmup_steps else 1.0
    )
    start_step = 0
    if resume_from is not None:
        state = ckpt.load_trainer_state(resume_from)
        if c.fsdp and dd.world > 1:
            from torch.distributed.checkpoint.state_dict import (
                StateDictOptions,
                set_optimizer_state_dict,
            )

            set_optimizer_state_dict(
                model,
                optimizer,
                optim_state_dict=state["optimizer"],
                options=StateDictOptions(full_state_dict=True),
            )
        else:
            optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        ckpt.set_rng_state(
            state["rng"][dd.rank] if isinstance(state["rng"], list) else state["rng"]
        )
        start_step = int(state["step"])
        log.info("resuming from %s (step %d)", resume_from, start_step)

    engine = None
    if c.rollout.engine == "vllm" and generate_fn is None:
        from r1agent.rollout.vllm_engine import VLLMEngine

        engine = VLLMEngine(
            str(resume_from or c.model),
            dtype=param_dtype if autocast_dtype is None else autocast_dtype,
            gpu_memory_utilization=c.rollout.vllm_gpu_memory_utilization,
            max_model_len=c.rollout.vllm_max_model_len,
            seed=c.seed + dd.rank,
        )
        engine.sync_weights(model)  # a policy passed in may differ from the files
        generate_fn = engine
    pool = EnvPool(c.env_kwargs)
    logger = (
        MetricsLogger(out_dir, tensorboard=c.tensorboard, resume_step=start_step)
        if dd.main
        else None
    )
    aggregate = grpo.AGGREGATIONS[c.loss_aggregation]
    pad_id = tokenizer.pad_token_id
    autocast = (
        (lambda: torch.autocast(device.type, dtype=autocast_dtype))
        if autocast_dtype
        else contextlib.nullcontext
    )
    bar = None
    if dd.main and c.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=c.steps, initial=start_step, desc="grpo", dynamic_ncols=True)

    step = start_step
    row: dict[str, Any] = {}
    while step < c.steps:
        t0 = time.perf_counter()
        # ---- 1-2. rollouts: G episodes per problem, refilling uninformative groups
        model.eval()
        gen_seed = (c.seed * 1_000_003 + step * 1009 + dd.rank) % 2**62
        with autocast(), fsdp_gathered(model, c.fsdp and dd.world > 1):
            episodes, n_dropped = _collect(
                c, model, tokenizer, pool, step, dd.rank, gen_seed, reward_fn, generate_fn
            )
        t_gen = time.perf_counter() - t0
        g = c.group_size

        # ---- 3. advantages and per-episode weights
        rewards = torch.tensor([e.reward for e in episodes], dtype=torch.float64)  # (N,)
        valid = torch.tensor([e.error is None for e in episodes])
        advantages = grpo.group_advantages(rewards, g, valid=valid, scale=c.scale_rewards)
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
        # global denominators, so micro-batch losses sum to the full-batch aggregate
        agg_kwargs = {
            "token_mean": {"num_tokens": num_tokens},
            "sequence_mean": {"num_sequences": n_eps},
            "constant": {"num_sequences": n_eps, "max_len": c.max_new_tokens * c.max_turns},
        }[c.loss_aggregation]

        # ---- 4. policy update(s) on the rows whose loss terms are not identically zero
        # (all of them under DDP, where every rank must run the same micro-batches)
        if dd.world == 1:
            batch = batch.rows(grpo.contributing_rows(batch.advantages, batch.mask, beta=c.beta))
        n_rows = batch.response_ids.shape[0]
        model.train()
        with autocast():
            if c.updates_per_batch > 1:
                batch.old_logprobs = batch_logprobs(
                    policy, batch, c.micro_batch_size, c.temperature
                )
            if ref_model is not None:
                batch.ref_logprobs = batch_logprobs(
                    ref_model, batch, c.micro_batch_size, c.temperature
                )
        stats = StepStats()
        skipped = 0
        for update in range(c.updates_per_batch):
            optimizer.zero_grad(set_to_none=True)
            starts = list(range(0, n_rows, c.micro_batch_size))
            loss_total = 0.0
            for j, s in enumerate(starts):
                mb = batch.rows(slice(s, s + c.micro_batch_size))
                sync = j == len(starts) - 1 or not isinstance(
                    policy, torch.nn.parallel.DistributedDataParallel
                )
                with contextlib.nullcontext() if sync else policy.no_sync(), autocast():
                    logits = response_logits(policy, mb)  # (n, R, V)
                    logp = grpo.token_logprobs(
                        logits, mb.response_ids, temperature=c.temperature
                    )  # (n, R)
                    old = mb.old_logprobs if mb.old_logprobs is not None else logp.detach()
                    per_tok, clipped = grpo.clipped_surrogate(
                        logp, old, mb.advantages, eps_low=c.eps_low, eps_high=c.eps_high
                    )
                    kl = grpo.kl_k3(logp, mb.ref_logprobs) if mb.ref_logprobs is not None else None
                    if kl is not None:
                        per_tok = per_tok + c.beta * kl
                    loss = aggregate(per_tok, mb.mask, **agg_kwargs)
                loss.backward()
                loss_total += float(loss.detach())
                stats.add(mb, logits, logp, clipped, kl, c.temperature, first=update == 0)
            if not starts:  # nothing to learn from: a zero gradient (weight decay still applies)
                for p in model.parameters():
                    if p.requires_grad:
                        p.grad = torch.zeros_like(p)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), c.max_grad_norm)
            if hasattr(grad_norm, "full_tensor"):  # FSDP2: a DTensor
                grad_norm = grad_norm.full_tensor()
            bad = torch.tensor(
                [0.0 if math.isfinite(loss_total) and torch.isfinite(grad_norm) else 1.0]
            )
            if dd.world > 1:
                dist.all_reduce(bad)
            if bad.item() > 0:
                warnings.warn(
                    f"step {step}: non-finite loss ({loss_total}) or grad norm; update skipped",
                    stacklevel=1,
                )
                optimizer.zero_grad(set_to_none=True)
                skipped += 1
                continue
            optimizer.step()
            stats.loss += loss_total
            stats.grad_norm += float(grad_norm)
        scheduler.step()
        if engine is not None:
            engine.sync_weights(model)
        step += 1
        dt = time.perf_counter() - t0

        # ---- 5. metrics, callbacks, checkpoints
        row = step_metrics(c, episodes, stats, n_dropped, skipped, dt, t_gen, optimizer, step)
        row = reduce_mean(row, dd)
        if dd.main and logger is not None:
            if c.sample_every and (step % c.sample_every == 0 or step == 1):
                row["samples/completions"] = [
                    f"{e.prompt[-200:]} ⟶ {e.text}" for e in episodes[::g][:4]
                ]
            logger.log(step, row)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    reward=f"{row['charts/reward']:.3f}", acc=f"{row['charts/accuracy']:.2f}"
                )
        stop = any(cb(step, row) for cb in callbacks)
        if c.save_every and step % c.save_every == 0 and step < c.steps and not stop:
            save_run_checkpoint(c, dd, model, tokenizer, optimizer, scheduler, step)
        if stop:
            break

    # ---- final model, plots, summary
    full_state = full_model_state(model, c.fsdp and dd.world > 1)
    if dd.main:
        ckpt.atomic_save_pretrained(out_dir, unwrap(model), tokenizer, state_dict=full_state)
    if dd.world > 1:
        dist.barrier()
    pool.close()
    summary: dict[str, Any] = {
        "checkpoint": str(out_dir.resolve()),
        "steps": step,
        "seconds": round(time.perf_counter() - t_start, 2),
    }
    if logger is not None:
        logger.close()
        summary["final"] = {k: v for k, v in row.items() if not k.startswith("samples/")}
        summary["history"] = logger.scalars()
        summary["metrics_file"] = str(logger.path)
        plot = plot_metrics(logger.history, out_dir / "plots" / "grpo.png") if c.plots else None
        summary["plot"] = str(plot) if plot else None
        final = {k: v for k, v in summary.items() if k != "history"}
        (out_dir / "summary.json").write_text(json.dumps(final, indent=2, default=str))
    if bar is not None:
        bar.close()
    torch.set_num_threads(threads_before)
    return summary


# --------------------------------------------------------------------------- helpers


def _collect(
    c: GRPOConfig,
    model: Any,
    tokenizer: Any,
    pool: EnvPool,
    step: int,
    rank: int,
    gen_seed: int,
    reward_fn: RewardFn | None,
    generate_fn: Callable[..., Any] | None,
) -> tuple[list[Episode], int]:
    """Episodes for one batch; with dynamic sampling, all-equal groups are replaced."""
    g, want = c.group_size, c.prompts_per_step
    kept: list[list[Episode]] = []
    spare: list[list[Episode]] = []
    dropped = 0
    rounds = 1 + (c.max_refills if c.dynamic_sampling else 0)
    for r in range(rounds):
        need = want - len(kept)
        problems = sample_problems(
            c.envs, need, seed=c.seed, step=step, rank=rank, seed_range=c.seed_range, round_=r
        )
        eps = collect_episodes(
            model,
            tokenizer,
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
            generate_fn=generate_fn,
        )
        groups = [eps[i : i + g] for i in range(0, len(eps), g)]
        if not c.dynamic_sampling:
            return eps, 0
        rewards = torch.tensor(
            [[e.reward if e.error is None else 0.0 for e in grp] for grp in groups]
        )
        varied = grpo.varied_groups(rewards.reshape(-1), g)
        for grp, ok in zip(groups, varied.tolist(), strict=True):
            (kept if ok else spare).append(grp)
            dropped += 0 if ok else 1
        if len(kept) >= want:
            break
    # keep the batch size fixed (DDP ranks must agree): pad with zero-advantage groups
    chosen = (kept + spare)[:want]
    return [e for grp in chosen for e in grp], dropped
