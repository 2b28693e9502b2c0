"""Test executions per second: the protected judge vs a naive one, same machine, same run.

* naive: one ``python`` subprocess per test (solution + test in ``python -c``), exit code as
  the verdict, no isolation at all;
* r1envs: ``run_tests`` through a :class:`~r1envs.sandbox.LocalSandbox` with every protection
  on (namespaces, unprivileged uid, rlimits, per-slot cgroup where available, fresh dir and
  environment per test, kill of every candidate process after each test, values compared in
  the judge).

Both run the same short tests (half ``assert``, half ``stdio``) with the same number of
parallel workers. Usage::

    python bench/sandbox_throughput.py [--workers 2] [--problems 40] [--isolation auto] [--docker]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from r1envs.sandbox import LocalSandbox
from r1envs.verifiers.code import run_tests


def make_problems(n: int) -> list[tuple[str, dict]]:
    """``n`` (solution, problem) pairs with 5 short tests each."""
    out = []
    for i in range(n):
        if i % 2 == 0:
            code = f"def f(x):\n    return x * {i} + 1\n"
            tests = [f"assert f({k}) == {k * i + 1}" for k in range(5)]
            out.append(
                (
                    code,
                    {"question": "q", "test_style": "assert", "entry_point": "f", "tests": tests},
                )
            )
        else:
            code = f"a, b = map(int, input().split())\nprint(a * b + {i})\n"
            tests = [
                {"input": f"{k} {k + 1}\n", "output": f"{k * (k + 1) + i}\n"} for k in range(5)
            ]
            out.append((code, {"question": "q", "test_style": "stdio", "tests": tests}))
    return out


def naive_one(code: str, problem: dict) -> int:
    """Run each test in its own ``python`` process; return the number passed."""
    passed = 0
    for test in problem["tests"]:
        if problem["test_style"] == "assert":
            proc = subprocess.run(
                [sys.executable, "-c", code + "\n" + test], capture_output=True, timeout=10
            )
            passed += proc.returncode == 0
        else:
            proc = subprocess.run(
                [sys.executable, "-c", code],
                input=test["input"].encode(),
                capture_output=True,
                timeout=10,
            )
            passed += proc.stdout.decode().strip() == test["output"].strip()
    return passed


def measure(fn, jobs, workers: int) -> tuple[float, int]:
    """(tests per second, tests passed) running ``fn`` over ``jobs`` with ``workers`` threads."""
    n_tests = sum(len(p["tests"]) for _, p in jobs)
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        passed = sum(pool.map(lambda job: fn(*job), jobs))
    return n_tests / (time.perf_counter() - start), passed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--problems", type=int, default=40)
    parser.add_argument("--isolation", default="auto", help="LocalSandbox isolation")
    parser.add_argument("--docker", action="store_true", help="measure DockerSandbox instead")
    args = parser.parse_args()
    jobs = make_problems(args.problems)
    n_tests = sum(len(p["tests"]) for _, p in jobs)

    if args.docker:
        from r1envs.sandbox import DockerSandbox

        sandbox = DockerSandbox(workers=args.workers)
    else:
        sandbox = LocalSandbox(workers=args.workers, isolation=args.isolation)
    failures: list[str] = []

    def judge(code: str, problem: dict) -> int:
        result = run_tests(code, problem, sandbox)
        if not result.passed:
            failures.append(result.feedback())
        return result.passed_tests

    measure(judge, jobs[:4], args.workers)  # start the slots
    ours, ours_passed = measure(judge, jobs, args.workers)
    naive, naive_passed = measure(naive_one, jobs, args.workers)
    sandbox.close()
    print(f"tests: {n_tests} short tests ({args.problems} problems), workers: {args.workers}")
    print(f"{'naive judge (one python process per test, no protection):':57s} {naive:8.1f} tests/s")
    name = f"{type(sandbox).__name__} ({sandbox.isolation}, all protections):"
    print(f"r1envs {name:50s} {ours:8.1f} tests/s")
    for text in failures[:3]:
        print("r1envs failure:", text.replace("\n", " | "))
    print(
        f"ratio: {ours / naive:.2f}x   (passed: naive {naive_passed}/{n_tests}, r1envs {ours_passed}/{n_tests})"
    )


if __name__ == "__main__":
    main()
