"""Hostile inputs, time bounds in threads and daemonic processes, helper-process recovery."""

from __future__ import annotations

import multiprocessing as mp
import random
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from r1envs.verifiers import math as mv


def _random_unicode(n: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    return "".join(
        chr(c if not 0xD800 <= c <= 0xDFFF else 0x20)
        for c in (rng.randrange(0x110000) for _ in range(n))
    )


HOSTILE = {
    "10MB": "1 + 1 = 2. " * 1_000_000,
    "10MB_boxes": "\\boxed{1} " * 1_000_000,
    "tower": "\\boxed{10^{10^{10^{10}}}}",
    "tower_in_answer_tag": "<answer>10^{10^{10^{10}}}</answer>",
    "symbolic_tower": "\\boxed{x^{10^{10^{10}}}}",
    "factorial": "\\boxed{99999999!}",
    "nested_braces": "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "unbalanced": "\\boxed{" + "{" * 20000,
    "nul": "\x00" * 10000 + "\\boxed{\x00}",
    "lone_surrogate": "\\boxed{\ud800}",
    "random_unicode": _random_unicode(100_000),
    "deep_parens": "<answer>" + "(" * 10000 + "1" + ")" * 10000 + "</answer>",
    "nested_sqrt": "\\boxed{" + "\\sqrt{" * 40 + "2" + "}" * 40 + "}",
    "big_power": "\\boxed{(x+1)^{1000}}",
    "dollars": "$" * 100_000,
    "backticks": "`" * 200_000,
    "unclosed_answer_tags": "<answer>" * 25_000,
    "unclosed_answer_tags_text": "<answer>x " * 25_000,
    "unclosed_boxes": "\\boxed{" * 25_000,
    "unclosed_boxes_digits": "\\boxed{1" * 25_000,
    "spaced_boxes": "\\boxed " * 25_000,
    "unclosed_inline_math": "\\(" * 25_000,
    "unclosed_display_math": "\\[" * 25_000,
    "answer_phrases": "the answer is " * 15_000,
    "cjk_markers": "答案：" * 25_000,
    "bold_runs": "**1" * 60_000,
}

# Runs that once made a regex scan quadratically, each followed by a real final answer.
RUNS = {
    "backticks": "`" * 200_000,
    "unclosed_answer_tags": "<answer>" * 25_000,
    "unclosed_boxes": "\\boxed{" * 25_000,
    "spaced_boxes": "\\boxed " * 25_000,
    "unclosed_inline_math": "\\(" * 25_000,
    "dollar_letters": "$x" * 50_000,
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("gold", ["5", "x^2+1", "\\sqrt{2}"])
def test_hostile_input_is_wrong_and_bounded(name, gold):
    t0 = time.perf_counter()
    r = mv.check(HOSTILE[name], gold)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, f"{name}: {elapsed:.2f}s"
    assert r.correct is False
    assert r.error is None


@pytest.mark.parametrize("name", sorted(RUNS))
@pytest.mark.parametrize(
    "template",
    ["{} The answer is $5$.", "The answer is {}", "<answer>{}", "{}\nSo the total is 5."],
)
def test_long_runs_stay_within_the_budget(name, template):
    text = template.format(RUNS[name])
    t0 = time.perf_counter()
    r = mv.check(text, "5", timeout=5.0)
    elapsed = time.perf_counter() - t0
    assert elapsed < 5.0, f"{name}: {elapsed:.2f}s"
    assert r.error is None
    if template.startswith("{} The answer"):
        assert r.correct, (name, r.extracted)  # the final answer after the run is still read


def test_hostile_gold_does_not_raise():
    for bad in ("\\boxed{" + "{" * 5000, "\x00\ud800", "10^{10^{10^{10}}}", ""):
        assert mv.check("\\boxed{1}", bad).correct is False


def test_timeout_reports_a_verifier_error_and_recovers():
    # A symbolic comparison with a tiny budget: the helper is killed, the error is reported.
    r = mv.check("\\boxed{\\sqrt{2}+\\sqrt{3}}", "\\sqrt{5+2\\sqrt{6}}", timeout=0.0)
    assert r.correct is False
    assert r.error is not None and "timed out" in r.error
    # The next call starts a fresh helper and succeeds.
    assert mv.check("\\boxed{\\sqrt{2}+\\sqrt{3}}", "\\sqrt{5+2\\sqrt{6}}").correct


SYMBOLIC = [
    ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\sqrt{3}/2", True),
    ("\\boxed{(x+1)^2}", "x^2+2x+1", True),
    ("\\boxed{\\frac{1}{2006!}}", "\\frac{1}{2004!}", False),
    ("\\boxed{x+y=2}", "x-y=2", False),
    ("\\boxed{10^{10^{10^{10}}}}", "5", False),
    ("\\boxed{42}", "42", True),
] * 8


def _run_all() -> list[bool]:
    return [mv.check(c, g).correct for c, g, _ in SYMBOLIC]


def test_threads_share_the_bound():
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=8) as ex:
        results = list(ex.map(lambda cg: mv.check(cg[0], cg[1], timeout=5.0), SYMBOLIC))
    assert time.perf_counter() - t0 < 30.0
    assert [r.correct for r in results] == [e for _, _, e in SYMBOLIC]
    assert all(r.error is None for r in results)


def test_timeout_in_threads():
    slow = ("\\boxed{\\sqrt{2}+\\sqrt{3}}", "\\sqrt{5+2\\sqrt{6}}")
    budgets = [0.0, 0.05, 0.0, 0.05, 0.0, 5.0]
    with ThreadPoolExecutor(max_workers=6) as ex:
        t0 = time.perf_counter()
        results = list(ex.map(lambda b: mv.check(*slow, timeout=b), budgets))
        elapsed = time.perf_counter() - t0
    assert elapsed < 6.0
    for budget, r in zip(budgets, results, strict=True):
        # Either a verdict, or a reported verifier timeout: never a silent wrong answer.
        assert (r.correct and r.error is None) or (not r.correct and "timed out" in r.error)
        if budget == 0.0:
            assert r.error is not None


def _daemon_target(queue: mp.Queue) -> None:
    t0 = time.perf_counter()
    out = _run_all()
    timed = mv.check("\\boxed{\\sqrt{2}+\\sqrt{3}}", "\\sqrt{5+2\\sqrt{6}}", timeout=0.0)
    queue.put((out, timed.error is not None, time.perf_counter() - t0))


def test_daemonic_process():
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_daemon_target, args=(queue,), daemon=True)
    proc.start()
    out, timed_out, elapsed = queue.get(timeout=60)
    proc.join(timeout=10)
    assert out == [e for _, _, e in SYMBOLIC]
    assert timed_out
    assert elapsed < 30.0


def test_fork_child_gets_its_own_helpers():
    mv.check("\\boxed{\\sqrt{8}}", "2\\sqrt{2}")  # parent's helper is running
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=_daemon_target, args=(queue,), daemon=True)
    proc.start()
    out, _, _ = queue.get(timeout=60)
    proc.join(timeout=10)
    assert out == [e for _, _, e in SYMBOLIC]
    assert mv.check("\\boxed{\\sqrt{8}}", "2\\sqrt{2}").correct


def test_slow_start_keeps_the_helper():
    mv.shutdown_workers()
    pool = mv._get_pool()
    first = mv.check("\\boxed{\\sqrt{8}}", "2\\sqrt{2}", timeout=0.0)  # helper still importing
    assert first.error is not None
    assert pool.total == 1  # kept, not killed: its late reply is consumed by the next call
    assert mv.check("\\boxed{\\sqrt{8}}", "2\\sqrt{2}").correct
    assert mv.check("\\boxed{\\sqrt{8}}", "3\\sqrt{2}").correct is False
    assert pool.total == 1


def test_works_with_more_than_1024_open_files():
    import os
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200:
        if hard != resource.RLIM_INFINITY and hard < 1200:
            pytest.skip(f"file limit too low to open 1200 files, hard limit: {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    mv.shutdown_workers()
    fds = []
    try:
        while len(fds) < 1100:
            fds.extend(os.pipe())
        # the helper's pipes now have numbers above 1024, beyond what select() accepts
        assert mv.check("\\boxed{\\sqrt{8}}", "2\\sqrt{2}").correct
    finally:
        for fd in fds:
            os.close(fd)
        mv.shutdown_workers()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_symbolic_grading_inside_async_vector_env_workers():
    # AsyncVectorEnv workers are daemonic processes: they cannot start multiprocessing
    # children, but the subprocess-based helper works there.
    import gymnasium as gym
    from gymnasium.vector import AsyncVectorEnv

    import r1envs  # noqa: F401

    envs = AsyncVectorEnv([lambda: gym.make("r1/Math-v0") for _ in range(2)], shared_memory=False)
    try:
        problem = {"question": "Simplify the square root of 8.", "answer": "2\\sqrt{2}"}
        envs.reset(seed=0, options={"problem": problem})
        actions = (
            "<think>8 = 4 * 2</think> <answer>\\sqrt{8}</answer>",
            "<think>guess</think> <answer>3</answer>",
        )
        _, _, _, _, info = envs.step(actions)
        assert list(info["correct"]) == [True, False]
        assert list(info["error"]) == [None, None]
    finally:
        envs.close()
