"""Logic ids: reset (problem generation) and step (grading) latency with correct answers.

Usage: python bench/logic_latency.py [--n 500] [--difficulty medium]
Prints, per id, the mean reset time, the mean step time on worked solutions (all must
grade correct) and the mean step time on a wrong answer.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym

import r1envs  # noqa: F401

LOGIC_IDS = [
    "r1/Countdown-v0",
    "r1/KnightsKnaves-v0",
    "r1/MiniSudoku-v0",
    "r1/GraphColoring-v0",
    "r1/Logic-v0",
]


def bench(env_id: str, n: int, kwargs: dict) -> None:
    env = gym.make(env_id, **kwargs).unwrapped  # the bare env, as a vector env holds it
    task = env.task
    t0 = time.perf_counter()
    problems = [env.reset(seed=i)[1]["problem"] for i in range(n)]
    reset_ms = 1000 * (time.perf_counter() - t0) / n
    answers = [task.solution(task.validate(p)) for p in problems]
    correct, step_s, wrong_s = 0, 0.0, 0.0
    for i, answer in enumerate(answers):
        env.reset(seed=i)
        t0 = time.perf_counter()
        correct += env.step(answer)[4]["correct"]
        step_s += time.perf_counter() - t0
        env.reset(seed=i)
        t0 = time.perf_counter()
        env.step("<think> hmm </think> <answer> no idea </answer>")
        wrong_s += time.perf_counter() - t0
    print(
        f"{env_id:22s} reset_ms={reset_ms:.3f} step_correct_ms={1000 * step_s / n:.3f} "
        f"step_wrong_ms={1000 * wrong_s / n:.3f} correct={correct}/{n}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--difficulty", default=None, help="easy|medium|hard (r1/Logic-v0 only)")
    args = ap.parse_args()
    for env_id in LOGIC_IDS:
        kwargs = (
            {"difficulty": args.difficulty} if args.difficulty and env_id == "r1/Logic-v0" else {}
        )
        bench(env_id, args.n, kwargs)


if __name__ == "__main__":
    main()
