"""GRPO throughput of r1agent, measured the way the TRL baseline measures it.

Usage:
  python bench/grpo_throughput.py --model DIR [--prompts-per-step 8 --group-size 8
         --max-new-tokens 64 --force-length --steps 10 --threads N]
Compare with (same DIR, same machine, back to back):
  python /work/shared/bench/trl_grpo_baseline.py --model DIR --bs 64 --gens 8 --max-new 64 --force-length --quiet

Same work as the baseline: chat-formatted "What is a + b? Put the answer in \\boxed{}."
prompts (a, b in 0..50), reward = exact boxed answer + digit-fraction shaping, fp32,
T=1.0, beta=0, mu=1, lr 1e-4, dynamic sampling off, no checkpoints. Prints
``completion_tokens_per_s`` = completion tokens per optimizer step / mean step time
(first step excluded) and the peak RSS of this process.

Threads: for small CPU models the trainer uses the cores that were idle when it started
(``r1agent.accel.cpu.small_model_threads``: all of them on an idle machine, fewer when other
work holds cores); the baseline uses torch's default unless given ``--threads``. Compare on
an idle machine, or give both the same ``--threads``.

On a CPU in float32 the trainer runs fastlm's fused loops from ``r1agent/accel/native.c`` when a
C compiler is present (``forward: auto``), and this script, like the ``r1agent`` command,
keeps freed memory for reuse (``r1agent.accel.cpu.tune_process``);
``R1_NATIVE=0`` and ``R1_MALLOC=0`` measure without them.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium as gym

BOXED = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


class AddBoxedEnv(gym.Env):
    """The baseline's task as a Gymnasium env: a + b, answer in \\boxed{}."""

    def __init__(self) -> None:
        from r1envs.spaces import UnicodeText

        self.observation_space = UnicodeText(4096)
        self.action_space = UnicodeText(1 << 16)
        self.answer = ""

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        a, b = (int(x) for x in self.np_random.integers(0, 51, size=2))
        self.answer = str(a + b)
        q = f"What is {a} + {b}? Put the answer in \\boxed{{}}."
        return q, {"messages": [{"role": "user", "content": q}]}

    def step(self, action):
        m = BOXED.findall(action)
        acc = 1.0 if m and m[-1] == self.answer else 0.0
        digits = 0.5 * sum(ch.isdigit() for ch in action) / max(1, len(action))
        info = {
            "rewards": {"accuracy": acc, "digits": digits},
            "correct": acc == 1.0,
            "error": None,
        }
        return "", acc + digits, True, False, info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts-per-step", type=int, default=8)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--force-length", action="store_true", help="min_new_tokens = max_new_tokens")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="0: the trainer's automatic choice")
    ap.add_argument("--micro-batch-size", type=int, default=64)
    a = ap.parse_args()

    from r1agent.accel.cpu import idle_cores, tune_process
    from r1agent.infra.config import load_config
    from r1agent.recipes.grpo import train_grpo

    if "bench/AddBoxed-v0" not in gym.registry:
        gym.register("bench/AddBoxed-v0", entry_point=AddBoxedEnv)
    tune_process()  # what the r1agent command does before any command
    out = tempfile.mkdtemp(prefix="r1agent_bench_")
    cfg = load_config(
        {
            "model": a.model,
            "output_dir": out,
            "envs": {"bench/AddBoxed-v0": 1.0},
            "prompt_format": "chat",
            "steps": a.steps,
            "prompts_per_step": a.prompts_per_step,
            "group_size": a.group_size,
            "max_new_tokens": a.max_new_tokens,
            "min_new_tokens": a.max_new_tokens if a.force_length else 0,
            "max_turns": 1,
            "temperature": 1.0,
            "lr": 1e-4,
            "beta": 0.0,
            "updates_per_batch": 1,
            "dynamic_sampling": False,
            "dtype": "float32",
            "threads": a.threads,
            "micro_batch_size": a.micro_batch_size,
            "rollout": {"batch_size": a.prompts_per_step * a.group_size},
            "save_every": 0,
            "resume": False,
            "tensorboard": False,
            "plots": False,
            "progress": False,
            "sample_every": 0,
        }
    )
    t0 = time.perf_counter()
    summary = train_grpo(cfg)
    total = time.perf_counter() - t0
    hist = summary["history"]
    times = [h["perf/step_time_s"] for h in hist]
    gen = [h["perf/generation_time_s"] for h in hist]
    toks = [h["perf/completion_tokens"] for h in hist]
    steady = slice(1, None) if len(hist) > 1 else slice(None)
    s_per_step = statistics.mean(times[steady])
    tok_per_step = statistics.mean(toks[steady])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"steps={len(hist)} first_step={times[0]:.3f}s total={total:.1f}s "
        f"per-step={[round(x, 3) for x in times]} gen={[round(x, 3) for x in gen]} "
        f"threads={a.threads or f'auto ({idle_cores()} idle cores at start)'}"
    )
    print(
        f"R1AGENT_GRPO completions_per_s={a.prompts_per_step * a.group_size / s_per_step:.2f} "
        f"completion_tokens_per_s={tok_per_step / s_per_step:.1f} s_per_step={s_per_step:.4f} "
        f"peak_rss_mb={peak_mb:.0f}"
    )


if __name__ == "__main__":
    main()
