"""Env reset+step latency on short numeric answers.

Usage: python bench/env_step_latency.py [--env r1/Arithmetic-v0] [--n 2000]
Prints the mean reset+step time per episode (target: <= 1 ms for a short numeric answer).
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym

import r1envs  # noqa: F401


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="r1/Arithmetic-v0")
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    env = gym.make(args.env).unwrapped  # the bare env, as a trainer's vector env holds it
    answers = []
    for i in range(args.n):
        _, info = env.reset(seed=i)
        answers.append(f"<think> compute </think> <answer> {info['problem']['answer']} </answer>")
    for i in range(50):  # warm-up
        env.reset(seed=i)
        env.step(answers[i])
    correct = 0
    t0 = time.perf_counter()
    for i in range(args.n):
        env.reset(seed=i)
        _, _, _, _, info = env.step(answers[i])
        correct += info["correct"]
    dt = time.perf_counter() - t0
    print(f"env={args.env} episodes={args.n} correct={correct}/{args.n}")
    print(f"reset_step_ms={1000 * dt / args.n:.3f}")


if __name__ == "__main__":
    main()
