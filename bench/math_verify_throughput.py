"""Math verifier: agreement with hand labels and throughput, ours vs math-verify 0.9.

Usage: python bench/math_verify_throughput.py [--cases PATH] [--repeat 1]

``--cases tests/r1envs/verifiers/data/math_grader_cases.jsonl`` runs the cases collected
from public graders' test suites and issues instead of our own corpus.

One pass over the labelled corpus (``tests/r1envs/verifiers/data/math_cases.jsonl``) with
``r1envs.verifiers.math.check`` and one with math-verify (``parse`` of gold and response,
then ``verify``). Before each pass, sympy's cache and both verifiers' caches are cleared;
each verifier gets one warm-up call outside the timing (imports, our helper process).
Golds without ``$`` or ``\\boxed`` are given to math-verify inside ``$...$``, as its README
recommends. Prints agreement with the labels, cases/s for both, and the throughput ratio.
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path

import sympy.core.cache

from r1envs.verifiers import math as ours

DEFAULT_CASES = Path(__file__).parents[1] / "tests/r1envs/verifiers/data/math_cases.jsonl"


def _clear_lru_caches(module: object) -> None:
    for name in dir(module):
        obj = getattr(module, name, None)
        if isinstance(obj, functools._lru_cache_wrapper):
            obj.cache_clear()


def _clear_math_verify() -> None:
    import math_verify.grader
    import math_verify.parser

    for mod in (math_verify.parser, math_verify.grader):
        _clear_lru_caches(mod)


def _mv_gold(gold: str) -> str:
    return gold if "$" in gold or "\\boxed" in gold else f"${gold}$"


def run_ours(cases: list[dict]) -> tuple[list[bool], float]:
    sympy.core.cache.clear_cache()
    ours.clear_caches()
    t0 = time.perf_counter()
    out = [
        ours.check(c["response"], c["gold"], strict=c.get("strict", False)).correct for c in cases
    ]
    return out, time.perf_counter() - t0


def run_math_verify(cases: list[dict]) -> tuple[list[bool], float]:
    from math_verify import parse, verify

    sympy.core.cache.clear_cache()
    _clear_math_verify()
    t0 = time.perf_counter()
    out = []
    for c in cases:
        try:
            out.append(bool(verify(parse(_mv_gold(c["gold"])), parse(c["response"]))))
        except Exception:  # noqa: BLE001 - a crash counts as "not correct"
            out.append(False)
    return out, time.perf_counter() - t0


def _agreement(pred: list[bool], cases: list[dict]) -> float:
    return sum(p == c["label"] for p, c in zip(pred, cases, strict=True)) / len(cases)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    ap.add_argument("--repeat", type=int, default=1, help="passes per verifier (best kept)")
    args = ap.parse_args()
    cases = [json.loads(line) for line in args.cases.read_text().splitlines() if line.strip()]

    from math_verify import parse, verify

    # warm-up outside the timing: imports, our helper process and its LaTeX fallback parser
    ours.check("\\boxed{\\sqrt{2}}", "\\sqrt{2}")
    ours.check("\\boxed{\\sum_{k=1}^{3} k}", "\\sum_{j=1}^{3} j")
    verify(parse("$\\sqrt{2}$"), parse("\\boxed{\\sqrt{2}}"))

    best_ours = best_mv = float("inf")
    for _ in range(args.repeat):
        pred_ours, t = run_ours(cases)
        best_ours = min(best_ours, t)
        pred_mv, t = run_math_verify(cases)
        best_mv = min(best_mv, t)

    n = len(cases)
    print(f"cases={n} ({sum(c['label'] for c in cases)} correct answers)")
    print(
        f"ours:        agreement={_agreement(pred_ours, cases):.1%}  "
        f"throughput={n / best_ours:.0f} cases/s  ({best_ours:.2f} s)"
    )
    print(
        f"math-verify: agreement={_agreement(pred_mv, cases):.1%}  "
        f"throughput={n / best_mv:.0f} cases/s  ({best_mv:.2f} s)"
    )
    print(f"throughput ratio (ours / math-verify) = {best_mv / best_ours:.1f}x")


if __name__ == "__main__":
    main()
