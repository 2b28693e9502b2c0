"""Overlapped generation and update (``async: {max_staleness: 1}``) on the tiny model.

Usage:
  python bench/async_overlap.py [--steps 6 --threads 1 --hidden 384 --layers 4
         --prompts-per-step 4 --group-size 8 --max-new-tokens 128]

Runs the same GRPO job twice on a tiny-factory model (random init, CPU, float32, forced
completion length so every step decodes the same number of tokens; a reward that differs
for every completion, so every episode takes part in the update): first in sync mode,
where a step is generation then update, then with ``async: {max_staleness: 1}``, where
the rollouts of step t + 1 are generated on a background thread during the update of step
t. Prints, as medians over the steps after the first two:

* ``generation_s`` — a sync step's rollout time (``perf/generation_time_s``),
* ``update_s`` — a sync step's time minus its rollout time (batch, update, metrics),
* ``async_step_s`` — an async step's wall time (``perf/step_time_s``),

and the target ``async_step_s <= max(generation_s, update_s) * 1.1``. ``--threads`` is
torch's intra-op thread count for both the update (main thread) and the generator
thread (the count is process-wide): with 1, generation and update each take one core.
Overlap needs two free cores; on a machine shared with other work, the figures say how
much of them this process got (the load average and the cores this process used — its CPU
seconds over wall seconds — are printed: an async run on one core cannot overlap). The two loops also share
Python's GIL: only the time spent inside torch ops and the native kernels overlaps, so the
default model (hidden 384, about 9M parameters) is large enough for its ops to dominate;
with ``--hidden 128`` the per-op Python overhead of decoding and of the update is a large
share of each, and the overlap gains little.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from r1agent.infra.config import load_config
from r1agent.infra.tiny import build_tiny_model
from r1agent.recipes.grpo import train_grpo


def run(args: argparse.Namespace, model: str, out: Path, asynchronous: bool) -> list[dict]:
    """One GRPO run; its history (per-step metrics)."""
    data = {
        "model": model,
        "output_dir": str(out),
        "envs": {"r1/Arithmetic-v0": 1.0},
        "steps": args.steps,
        "prompts_per_step": args.prompts_per_step,
        "group_size": args.group_size,
        "max_new_tokens": args.max_new_tokens,
        "min_new_tokens": args.max_new_tokens,
        "max_turns": 1,
        "lr": 1e-4,
        "threads": args.threads,
        "seed": 0,
        "progress": False,
        "tensorboard": False,
        "plots": False,
        "sample_every": 0,
        "check_memory": False,
        "resume": False,
    }
    if asynchronous:
        data["async"] = {"max_staleness": 1}
    return train_grpo(load_config(data), reward_fn=varied_reward)["history"]


def varied_reward(prompts: list[str], completions: list[str], infos: list[dict]) -> list[float]:
    """A stable hash of each completion in ``[0, 0.5)``: every completion of a group gets a
    different reward, so every row takes part in the update (a random-init model's answers
    are all wrong, and all-equal groups would be left out of it)."""
    del prompts, infos
    return [int(hashlib.sha256(c.encode()).hexdigest()[:8], 16) / 2**33 for c in completions]


def cpu_seconds() -> float:
    """CPU seconds this process has used (all threads, user + system)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    """Parse flags, run sync then async, print the three figures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--hidden", type=int, default=384)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--prompts-per-step", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    args = ap.parse_args()
    if args.steps < 4:
        ap.error(f"--steps must be >= 4 (the first two steps are warm-up), --steps: {args.steps}")
    with tempfile.TemporaryDirectory() as tmp:
        model = str(
            build_tiny_model(
                Path(tmp) / "tiny",
                hidden=args.hidden,
                layers=args.layers,
                intermediate=4 * args.hidden,
            )
        )
        c0, t0 = cpu_seconds(), time.perf_counter()
        sync = run(args, model, Path(tmp) / "sync", asynchronous=False)
        t_sync, cores_sync = time.perf_counter() - t0, (cpu_seconds() - c0)
        c0, t0 = cpu_seconds(), time.perf_counter()
        asyn = run(args, model, Path(tmp) / "async", asynchronous=True)
        t_async, cores_async = time.perf_counter() - t0, (cpu_seconds() - c0)
        cores_sync, cores_async = cores_sync / t_sync, cores_async / t_async
    steady = slice(2, None)
    gen = statistics.median(r["perf/generation_time_s"] for r in sync[steady])
    upd = statistics.median(
        r["perf/step_time_s"] - r["perf/generation_time_s"] for r in sync[steady]
    )
    step = statistics.median(r["perf/step_time_s"] for r in asyn[steady])
    target = 1.1 * max(gen, upd)
    print(
        f"tiny model hidden {args.hidden} x {args.layers} layers, "
        f"{args.prompts_per_step}x{args.group_size} episodes x {args.max_new_tokens} tokens, "
        f"torch threads {args.threads} (cpus {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.2f}), torch {torch.__version__}"
    )
    print(f"sync:  generation_s {gen:.3f}  update_s {upd:.3f}  step_s {gen + upd:.3f}")
    print(f"async: async_step_s {step:.3f}  (target <= max(gen, update) * 1.1 = {target:.3f})")
    print(
        f"async / sync step: {step / (gen + upd):.2f}; "
        f"async step / max(gen, update): {step / max(gen, upd):.2f} "
        f"({'meets' if step <= target else 'misses'} the target)"
    )
    print(
        f"wall: sync run {t_sync:.1f}s, async run {t_async:.1f}s ({args.steps} steps each); "
        f"cores this process used: sync {cores_sync:.2f}, async {cores_async:.2f}"
    )
    wait = statistics.median(r["perf/rollout_wait_s"] for r in asyn[steady])
    gen_bg = statistics.median(r["perf/generation_time_s"] for r in asyn[steady])
    upd_bg = statistics.median(
        r["perf/step_time_s"] - r["perf/rollout_wait_s"] for r in asyn[steady]
    )
    print(
        f"async: generation on the thread {gen_bg:.3f}s, update {upd_bg:.3f}s, waiting for "
        f"the generator {wait:.3f}s; staleness max "
        f"{max(r['async/staleness_max'] for r in asyn):.0f}"
    )


if __name__ == "__main__":
    main()
