"""GRPO throughput of r1agent, measured the way the TRL baseline measures it.

Usage:
  python bench/grpo_throughput.py --model DIR [--prompts-per-step 8 --group-size 8
         --max-new-tokens 64 --force-length --steps 10 --threads N --lr 1e-4
         --reward shaped|varied --grad-ckpt --lora R]
Compare with (same DIR, same machine, back to back):
  python /work/shared/bench/trl_grpo_baseline.py --model DIR --bs 64 --gens 8 --max-new 64 --force-length --quiet
At a real model's shape (random init), e.g. Qwen2.5-0.5B's:
  python bench/grpo_throughput.py --model DIR --prompts-per-step 2 --group-size 4 \\
         --max-new-tokens 32 --force-length --steps 4 --micro-batch-size 8 --lr 1e-9 --reward varied
  python trl_grpo_baseline.py --model DIR --bs 8 --gens 4 --max-new 32 --force-length \\
         --steps 4 --lr 1e-9 --reward varied

Same work as the baseline: chat-formatted "What is a + b? Put the answer in \\boxed{}."
prompts (a, b in 0..50), reward = exact boxed answer + digit-fraction shaping (``--reward
shaped``) or + a stable hash of the completion text in [0, 0.5) (``--reward varied``, the
baseline's ``varied_reward``: every completion of a group gets a different reward, so every
step does the full update and a random-init model never collapses), fp32, T=1.0, beta=0,
mu=1, lr 1e-4 unless ``--lr``, dynamic sampling off, no checkpoints, gradient checkpointing
off unless ``--grad-ckpt`` (the trainer's default turns it on above 100M parameters; the
baseline's ``--grad-ckpt`` is off unless given too), full fine-tuning unless ``--lora R``
(rank R, alpha 2R). Prints ``completion_tokens_per_s`` = completion tokens per optimizer
step / mean step time (first step excluded), the peak RSS of this process, and per step the
generation and update seconds each against its floor: generation = decoding steps x bytes
of weights read per step / memory bandwidth (or its FLOPs / matmul FLOP/s where that is
more), update = forward + backward FLOPs / matmul FLOP/s, with the bandwidth (sum of a
512 MiB tensor) and the FLOP/s (a product of the update's shape) measured here before and
after training (the better of the two: other work on the machine lowers a measurement).

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
import hashlib
import os
import re
import resource
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import gymnasium as gym
import torch

BOXED = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


def varied_reward(text: str) -> float:
    """The baseline's ``varied_reward``: a stable hash of the text in [0, 0.5)."""
    digest = hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()
    return int(digest[:8], 16) / 2**33


class AddBoxedEnv(gym.Env):
    """The baseline's task as a Gymnasium env: a + b, answer in \\boxed{}; ``reward`` picks
    the second reward term (``shaped``: digit fraction, ``varied``: :func:`varied_reward`)."""

    def __init__(self, reward: str = "shaped") -> None:
        from r1envs.spaces import UnicodeText

        self.observation_space = UnicodeText(4096)
        self.action_space = UnicodeText(1 << 16)
        self.answer = ""
        self.reward = reward

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        a, b = (int(x) for x in self.np_random.integers(0, 51, size=2))
        self.answer = str(a + b)
        q = f"What is {a} + {b}? Put the answer in \\boxed{{}}."
        return q, {"messages": [{"role": "user", "content": q}]}

    def step(self, action):
        m = BOXED.findall(action)
        acc = 1.0 if m and m[-1] == self.answer else 0.0
        if self.reward == "varied":
            extra = {"varied": varied_reward(action)}
        else:
            extra = {"digits": 0.5 * sum(ch.isdigit() for ch in action) / max(1, len(action))}
        info = {"rewards": {"accuracy": acc, **extra}, "correct": acc == 1.0, "error": None}
        return "", acc + sum(extra.values()), True, False, info


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts-per-step", type=int, default=8)
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--force-length", action="store_true", help="min_new_tokens = max_new_tokens")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="0: the trainer's automatic choice")
    ap.add_argument("--micro-batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--reward", choices=["shaped", "varied"], default="shaped")
    ap.add_argument(
        "--grad-ckpt", action="store_true", help="gradient checkpointing (off unless given)"
    )
    ap.add_argument(
        "--lora", type=int, default=0, metavar="R", help="LoRA rank R, alpha 2R (0: full)"
    )
    return ap.parse_args()


def build_config(a: argparse.Namespace, env_id: str):
    from r1agent.infra.config import load_config

    return load_config(
        {
            "model": a.model,
            "output_dir": tempfile.mkdtemp(prefix="r1agent_bench_"),
            "envs": {env_id: 1.0},
            "prompt_format": "chat",
            "steps": a.steps,
            "prompts_per_step": a.prompts_per_step,
            "group_size": a.group_size,
            "max_new_tokens": a.max_new_tokens,
            "min_new_tokens": a.max_new_tokens if a.force_length else 0,
            "max_turns": 1,
            "temperature": 1.0,
            "lr": a.lr,
            "beta": 0.0,
            "updates_per_batch": 1,
            "dynamic_sampling": False,
            "dtype": "float32",
            "threads": a.threads,
            "micro_batch_size": a.micro_batch_size,
            "rollout": {"batch_size": a.prompts_per_step * a.group_size},
            "gradient_checkpointing": a.grad_ckpt,
            "lora": {"r": a.lora, "alpha": 2.0 * a.lora} if a.lora else None,
            "save_every": 0,
            "resume": False,
            "tensorboard": False,
            "plots": False,
            "progress": False,
            "sample_every": 0,
        }
    )


def _best_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: first touch of the pages, thread pool start
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def measure_machine(threads: int, m: int, k: int, n: int) -> tuple[float, float]:
    """Memory bandwidth (bytes/s, sum of a 512 MiB tensor) and matmul FLOP/s (an ``(m, k) @
    (k, n)`` product: the update's tokens through an MLP projection), best of five, on
    ``threads`` threads (0: torch's default)."""
    from r1agent.accel.cpu import cpu_threads

    with cpu_threads(threads or None):
        big = torch.ones(128 << 20)
        bandwidth = big.numel() * 4 / _best_seconds(big.sum, 5)
        del big
        x, w = torch.randn(m, k), torch.randn(k, n)
        flops = 2 * m * k * n / _best_seconds(lambda: torch.mm(x, w), 5)
    return bandwidth, flops


def model_shape(model_dir: str) -> dict[str, float]:
    """Parameter counts of the model in ``model_dir`` from its config (no weights loaded)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(model_dir)
    h, layers, inter, vocab = (
        cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size, cfg.vocab_size,
    )  # fmt: skip
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    d = getattr(cfg, "head_dim", None) or h // heads
    attn = h * heads * d * 2 + h * kv * d * 2  # q, o and k, v (biases are negligible)
    per_layer = attn + 3 * h * inter
    return {
        "matmul_params": layers * per_layer + vocab * h,  # every layer and the LM head
        "layers": layers,
        "attn_width": heads * d,
        "hidden": h,
        "intermediate": inter,
    }


def prompt_tokens(model_dir: str) -> int:
    """Tokens of a typical chat-formatted bench prompt."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    q = "What is 25 + 25? Put the answer in \\boxed{}."
    ids = tok.apply_chat_template(
        [{"role": "user", "content": q}], tokenize=True, add_generation_prompt=True
    )
    return len(ids["input_ids"] if isinstance(ids, dict) else ids)


def floors(a: argparse.Namespace, bandwidth: float, flops: float) -> tuple[float, float]:
    """Seconds per step below which generation and the update cannot go on this machine.

    Generation: each decoding step reads every weight matrix once (the LM head's included)
    for all rows together, or does ``2 x params`` FLOPs per row, whichever takes longer.
    Update: ``2 x params`` FLOPs per token forward, twice that backward (input and weight
    gradients; LoRA skips the frozen weights' ones, gradient checkpointing adds a forward),
    plus attention; each distinct prompt is computed once (the trainer shares it).
    """
    shape = model_shape(a.model)
    params, rows = shape["matmul_params"], a.prompts_per_step * a.group_size
    steps = a.max_new_tokens  # one batch: rollout batch_size = rows
    gen = steps * max(params * 4 / bandwidth, 2 * params * rows / flops)
    p, r = prompt_tokens(a.model), a.max_new_tokens
    tokens = a.prompts_per_step * p + rows * r
    factor = (4 if a.lora else 6) + (2 if a.grad_ckpt else 0)
    ctx = a.prompts_per_step * p * p / 2 + rows * r * (p + r / 2)  # attended pairs
    attention = factor * 2 * shape["layers"] * shape["attn_width"] * ctx
    return gen, (factor * params * tokens + attention) / flops


def report(a: argparse.Namespace, hist: list, total: float, machine: tuple, peak_mb: float) -> None:
    from r1agent.accel.cpu import idle_cores

    times = [h["perf/step_time_s"] for h in hist]
    gen = [h["perf/generation_time_s"] for h in hist]
    upd = [t - g for t, g in zip(times, gen, strict=True)]
    toks = [h["perf/completion_tokens"] for h in hist]
    steady = slice(1, None) if len(hist) > 1 else slice(None)
    s_per_step = statistics.mean(times[steady])
    tok_per_step = statistics.mean(toks[steady])
    bandwidth, flops = machine
    gen_floor, upd_floor = floors(a, bandwidth, flops)
    print(f"machine: memory bandwidth {bandwidth / 1e9:.1f} GB/s, matmul {flops / 1e9:.1f} GFLOP/s")
    print(f"{'step':>4} {'gen s':>7} {'floor':>6} {'x':>5} {'update s':>9} {'floor':>6} {'x':>5}")
    for i, (g, u) in enumerate(zip(gen, upd, strict=True)):
        print(
            f"{i + 1:>4} {g:>7.2f} {gen_floor:>6.2f} {g / gen_floor:>5.1f} "
            f"{u:>9.2f} {upd_floor:>6.2f} {u / upd_floor:>5.1f}"
        )
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


def main() -> None:
    a = parse_args()
    from r1agent.accel.cpu import tune_process
    from r1agent.recipes.grpo import train_grpo

    env_id = f"bench/AddBoxed-{a.reward}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=AddBoxedEnv, kwargs={"reward": a.reward})
    tune_process()  # what the r1agent command does before any command
    shape = model_shape(a.model)
    tokens = a.prompts_per_step * a.group_size * a.max_new_tokens  # the update's responses
    machine = measure_machine(a.threads, tokens, shape["hidden"], shape["intermediate"])
    cfg = build_config(a, env_id)
    t0 = time.perf_counter()
    summary = train_grpo(cfg)
    total = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before measuring again
    # other work on the machine lowers one measurement: the better of before and after
    again = measure_machine(a.threads, tokens, shape["hidden"], shape["intermediate"])
    machine = (max(machine[0], again[0]), max(machine[1], again[1]))
    report(a, summary["history"], total, machine, peak_mb)


if __name__ == "__main__":
    main()
