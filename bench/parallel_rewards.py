"""Grading a batch of episodes one after another vs in the grading pool, same machine, same run.

* code: 64 ``r1/Code-v0`` episodes (8 problems x 8 completions): reference solutions,
  wrong programs, and a few slow ones (an infinite loop, a long ``sleep``) that run into
  the problem's time limit;
* math: 64 ``r1/Math-v0`` episodes: the gold answer boxed, the gold answer rewritten (a
  sum or product that sympy must compare), and wrong answers.

Each batch is graded by :class:`r1agent.rollout.grading.Grader` as ``collect_episodes``
grades one turn: ``workers=0`` (one after another, as before) and a pool (threads or
processes). Rewards, components and errors of every mode are checked to be identical.
Usage::

    python bench/parallel_rewards.py [--workers N] [--slots N] [--slow 6] [--repeat 1]

Each timing is the best of ``--repeat`` (code) or ``--math-repeat`` (math) runs, each by a
fresh grader warmed up on other problems, with the math verifier's caches emptied first.

``--slots`` gives the code env a sandbox with that many parallel slots (default: the
shared local sandbox, one slot per CPU).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time
from pathlib import Path
from typing import Any

from r1agent.rollout.episodes import EnvPool
from r1agent.rollout.grading import Grader, Job
from r1envs.sandbox import LocalSandbox
from r1envs.verifiers.math import clear_caches

ROOT = Path(__file__).resolve().parents[1]
THINK = "<think>\nLet me work it out.\n</think>\n<answer>\n{}\n</answer>"


def reference_solutions() -> dict[str, str]:
    """Reference solutions of the shipped code problems, by problem id (from the tests)."""
    path = ROOT / "tests" / "r1envs" / "families" / "data" / "code_reference.py"
    spec = importlib.util.spec_from_file_location("code_reference", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return {p["id"]: p["solution"] for p in mod.PROBLEMS}


def code_batch(pool: EnvPool, n_slow: int, first: int = 0) -> list[Job]:
    """8 problems x 8 completions: 5 right, 3 wrong; ``n_slow`` of the wrong are slow."""
    sols = reference_solutions()
    jobs: list[Job] = []
    slow = 0
    for seed in range(first, first + 8):
        env = pool.acquire("r1/Code-v0")
        _, info = env.reset(seed=seed)
        pool.release("r1/Code-v0", env)
        prob = info["problem"]
        entry = prob.get("entry_point") or "f"
        wrong = (
            "print(0)" if prob["test_style"] == "stdio" else f"def {entry}(*a, **k):\n    return 0"
        )
        for k in range(8):
            if k < 5:
                code = sols[prob["id"]]
            elif slow < n_slow and k == 7 - seed % 2:
                code = "while True:\n    pass" if slow % 2 else "import time\ntime.sleep(60)"
                slow += 1
            else:
                code = wrong
            jobs.append(Job("r1/Code-v0", seed, [THINK.format(f"```python\n{code}\n```")]))
    return jobs


def math_batch(pool: EnvPool, first: int = 0) -> list[Job]:
    """16 problems x 4 completions: gold, gold as a sympy-checked rewrite, two wrong."""
    jobs = []
    for seed in range(first, first + 16):
        env = pool.acquire("r1/Math-v0")
        _, info = env.reset(seed=seed)
        pool.release("r1/Math-v0", env)
        gold = info["problem"]["answer"]
        answers = [
            gold,
            f"\\frac{{2({gold})}}{{2}} + \\sin^2 x + \\cos^2 x - 1",
            f"{gold} + 1",
            "\\sqrt{2} \\pi",
        ]
        jobs += [Job("r1/Math-v0", seed, [THINK.format(f"\\boxed{{{a}}}")]) for a in answers]
    return jobs


def summary(outcomes: list[Any]) -> list[tuple[Any, ...]]:
    """What must not depend on the mode: reward, components, correctness, error."""
    rows = []
    for o in outcomes:
        if o.result is None:
            rows.append((None, None, None, o.error))
        else:
            info = o.result[4]
            rows.append((float(o.result[1]), info.get("rewards"), info.get("correct"), o.error))
    return rows


def timed(make: Any, pool: EnvPool, jobs: list[Job], warm: list[Job], repeat: int):
    """Best wall time of ``repeat`` gradings of ``jobs``, each by a fresh grader warmed up on
    other problems (``warm``: envs made, sympy, sandbox slots and workers started), with the
    math verifier's caches emptied first: no timing reuses an earlier result."""
    best, rows = float("inf"), []
    for _ in range(repeat):
        grader = make()
        for batch in (warm, jobs):
            clear_caches()
            t0 = time.perf_counter()
            outs = grader.grade([Job(j.env_id, j.seed, j.history) for j in batch])
            elapsed = time.perf_counter() - t0
            for o in outs:
                if o.env is not None:
                    pool.release(batch[0].env_id, o.env, broken=o.error is not None)
        grader.close()
        best, rows = min(best, elapsed), summary(outs)
    return best, rows


def compare(name: str, pool: EnvPool, jobs: list[Job], warm: list[Job], modes, repeat: int):
    """Time one batch in each mode and print the figures."""

    def grader(kind: str, workers: int) -> Any:
        return lambda: Grader(pool.acquire, pool.kwargs, workers=workers, timeout=600, pool=kind)

    t_seq, want = timed(grader("thread", 0), pool, jobs, warm, repeat)
    print(f"{name}: {len(jobs)} episodes, one after another: {t_seq:.2f} s")
    for kind, workers in modes:
        t, got = timed(grader(kind, workers), pool, jobs, warm, repeat)
        same = "identical" if got == want else "DIFFERENT"
        print(
            f"{name}: {kind} pool, {workers} workers: {t:.2f} s, "
            f"{t_seq / t:.2f}x faster (results {same})"
        )


def main() -> None:
    """Run the code and math comparisons."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=None, help="threads (default 4 per CPU)")
    ap.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--slots", type=int, default=None, help="sandbox slots for the code env")
    ap.add_argument("--slow", type=int, default=6, help="slow code completions in the batch")
    ap.add_argument("--repeat", type=int, default=1, help="code timings: best of N")
    ap.add_argument("--math-repeat", type=int, default=5, help="math timings: best of N")
    ap.add_argument("--skip-math", action="store_true")
    args = ap.parse_args()
    threads = args.workers or 4 * (os.cpu_count() or 1)
    print(f"{os.cpu_count()} CPUs")
    kwargs: dict[str, dict[str, Any]] = {}
    if args.slots:
        kwargs["r1/Code-v0"] = {"sandbox": LocalSandbox(workers=args.slots)}
    pool = EnvPool(kwargs)
    slots = args.slots or os.cpu_count()
    print(f"code env sandbox: {slots} slots")
    code_modes = [("thread", threads)]
    if not args.slots:  # a sandbox instance does not travel to worker processes
        code_modes.append(("process", args.processes))
    warm = code_batch(pool, 0, first=100)[:: 8 // 2]
    compare("code", pool, code_batch(pool, args.slow), warm, code_modes, args.repeat)
    if not args.skip_math:
        modes = [("thread", threads), ("process", args.processes)]
        warm = math_batch(pool, first=100)
        compare("math", pool, math_batch(pool), warm, modes, args.math_repeat)
    pool.close()


if __name__ == "__main__":
    main()
