"""Cold-start data for stage 1, in DeepSeek-R1's readable format.

A cold-start response is ``<|begin_of_reasoning|> reasoning <|end_of_reasoning|> summary``
(the delimiters are :data:`r1envs.formats.REASONING_START` / ``REASONING_END``; they are
plain text in the project's tokenizers, so they survive ``decode(skip_special_tokens=True)``).
The summary states the final answer in ``\\boxed{}``, which every math grader reads.

Four sources (``r1agent coldstart --source ...``):

* ``solver`` — exact data from step-by-step solvers with a verification step:
  :func:`solve_arithmetic` for ``r1/Arithmetic-v0``, ``task.solution(problem, fmt)`` for task
  families that offer one (Countdown, ...).
* ``fewshot`` — few-shot prompting a model with long-CoT examples (solver-written).
* ``reflection`` — prompting a model to answer with reflection and verification.
* ``zero`` — R1-Zero-style outputs (``<think>…</think> <answer>…</answer>``), rewritten
  into the readable format by :func:`zero_to_r1` and filtered (:mod:`r1agent.rejection`).

Model-written samples are kept only when the env grades them correct.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from r1agent.data.rejection import dedup, readable
from r1agent.data.sft import Example
from r1agent.rollout.episodes import make_env, render_prompt
from r1agent.rollout.transformers_engine import generate
from r1envs import formats

ARITHMETIC_ID = "r1/Arithmetic-v0"
_EXPR = re.compile(r"What is (.+)\?\s*$")
_TOKEN = re.compile(r"-?\d+|[+\-*]")


def _apply(a: int, op: str, b: int) -> int:
    return a + b if op == "+" else a - b if op == "-" else a * b


def _detailed(total: int, sign: str, t: int) -> str:
    """``a + b`` with ``b`` split into tens and units: ``68 + 64 = 68 + 60 + 4 = 128 + 4 = 132``."""
    tens, units = (abs(t) // 10) * 10, abs(t) % 10
    if t < 10 or units == 0:
        return f"{total} {sign} {t} = {_apply(total, sign, t)}"
    mid = _apply(total, sign, tens)
    return f"{total} {sign} {t} = {total} {sign} {tens} {sign} {units} = {mid} {sign} {units} = {_apply(mid, sign, units)}"


def solve_arithmetic(question: str, *, detailed: bool = False) -> tuple[list[str], str]:
    """Step-by-step solution of ``What is 47 + 18 - 25?`` with a verification step.

    Products are worked out first, then sums left to right; the check undoes the additions
    and subtractions from the result back to the first term. ``detailed`` splits each
    addition or subtraction into tens and units (``68 + 64 = 68 + 60 + 4 = 128 + 4 = 132``):
    longer, but easier for a small model to learn.

    Returns:
        ``(steps, answer)``.

    Raises:
        ValueError: if the question is not an arithmetic expression of this form.
    """
    m = _EXPR.search(question.strip())
    if not m:
        raise ValueError(f"not an arithmetic question, question: {question!r:.80}")
    tokens = _TOKEN.findall(m.group(1))
    if len(tokens) < 3 or len(tokens) % 2 == 0:
        raise ValueError(f"malformed expression, question: {question!r:.80}")
    nums, ops = [int(t) for t in tokens[::2]], tokens[1::2]
    steps: list[str] = []
    terms, signs = [nums[0]], []
    for op, n in zip(ops, nums[1:], strict=True):
        if op == "*":
            steps.append(f"{terms[-1]} * {n} = {terms[-1] * n}")
            terms[-1] *= n
        else:
            terms.append(n)
            signs.append(op)
    total, chain = terms[0], []
    for sign, t in zip(signs, terms[1:], strict=True):
        new = _apply(total, sign, t)
        steps.append(_detailed(total, sign, t) if detailed else f"{total} {sign} {t} = {new}")
        chain.append((total, sign, t, new))
        total = new
    if chain:
        undo = []
        for before, sign, t, after in reversed(chain):
            inverse = "-" if sign == "+" else "+"
            undo.append(f"{after} {inverse} {t} = {before}")
        steps.append("Check: " + ", ".join(undo) + ".")
    return steps, str(total)


def r1_response(steps: Sequence[str], answer: str) -> str:
    """A response in the readable r1 format: reasoning block, then a summary with the answer."""
    reasoning = "\n".join(steps)
    return (
        f"{formats.REASONING_START}\n{reasoning}\n{formats.REASONING_END}\n"
        f"The answer is \\boxed{{{answer}}}."
    )


def r1_zero_response(steps: Sequence[str], answer: str) -> str:
    """A response in the R1-Zero format: ``<think>…</think> <answer>…</answer>``."""
    reasoning = "\n".join(steps)
    return f" {formats.THINK_START}\n{reasoning}\n{formats.THINK_END} {formats.ANSWER_START} {answer} {formats.ANSWER_END}"


def format_response(steps: Sequence[str], answer: str, output_format: str = "r1") -> str:
    """Render solver steps in ``output_format`` (``"r1"`` or ``"r1-zero"``)."""
    formats.check_format_name(output_format)
    return r1_response(steps, answer) if output_format == "r1" else r1_zero_response(steps, answer)


def solution_text(
    env: Any, info: dict[str, Any], output_format: str = "r1", *, detailed: bool = False
) -> str:
    """A correct step-by-step response to the problem of the env's last reset.

    Raises:
        ValueError: if the env's task has no solver.
    """
    task = env.unwrapped.task
    problem = task.validate(info["problem"])
    if hasattr(task, "solution"):
        return task.solution(problem, output_format)
    question = info.get("question", "")
    if _EXPR.search(question or ""):
        steps, answer = solve_arithmetic(question, detailed=detailed)
        return format_response(steps, answer, output_format)
    raise ValueError(f"no solver for this task, task: {type(task).__name__}")


def solver_examples(
    env_ids: Sequence[str],
    n: int,
    *,
    seed: int = 0,
    output_format: str = "r1",
    prompt_format: str = "observation",
    tokenizer: Any = None,
    check: bool = True,
    detailed: bool = False,
) -> list[Example]:
    """``n`` exact cold-start examples, env ids in turn, problem ``i`` from ``reset(seed=seed+i)``.

    Args:
        env_ids: env ids (their tasks need a solver).
        n: number of examples.
        seed: first env seed (keep ``seed + n`` below the held-out range).
        output_format: the response format.
        prompt_format: ``"observation"`` or ``"chat"`` (needs ``tokenizer``).
        tokenizer: for chat prompts.
        check: grade each solution through the env and fail loudly if one is wrong.

    Raises:
        AssertionError: if ``check`` and a solver's answer is graded wrong (a solver bug).
    """

    envs = {e: make_env(e) for e in dict.fromkeys(env_ids)}
    out = []
    for i in range(n):
        env = envs[env_ids[i % len(env_ids)]]
        obs, info = env.reset(seed=seed + i)
        response = solution_text(env, info, output_format, detailed=detailed)
        if check:
            _, _, _, _, step_info = env.step(response)
            assert step_info["correct"], f"solver wrote a wrong answer: {response!r:.200}"
        out.append(Example(render_prompt(tokenizer, obs, info, prompt_format), response))
    for env in envs.values():
        env.close()
    return out


# --------------------------------------------------------------------------- prompting a model


def fewshot_prompt(shots: Sequence[Example], question_prompt: str) -> str:
    """A few-shot prompt: solved examples (prompt + long-CoT response), then the new prompt."""
    parts = [f"{s.prompt} {s.response}" for s in shots]
    return "\n\n".join([*parts, question_prompt])


REFLECTION_INSTRUCTION = (
    "Answer with detailed reasoning: work step by step, reflect on each step, verify the "
    f"result at the end, and write the reasoning between {formats.REASONING_START} and "
    f"{formats.REASONING_END}, followed by a short summary with the answer in \\boxed{{}}."
)


def reflection_prompt(question_prompt: str) -> str:
    """A prompt asking for an answer with reflection and verification."""
    return f"{REFLECTION_INSTRUCTION}\n\n{question_prompt}"


def cut_at_next_example(text: str) -> str:
    """Keep a few-shot continuation up to the start of an invented next example."""
    for marker in ("\n\nA conversation between", "\n\nProblem:", "\n\nUser:"):
        i = text.find(marker)
        if i >= 0:
            text = text[:i]
    return text.strip()


def zero_to_r1(completion: str) -> str | None:
    """Rewrite an R1-Zero completion (think + answer blocks) in the readable r1 format.

    Returns:
        The rewritten response, or ``None`` if the completion is not well-formed r1-zero.
    """
    parsed = formats.parse(completion, "r1-zero")
    if not parsed.well_formed or parsed.reasoning is None or parsed.answer is None:
        return None
    reasoning = parsed.reasoning.strip()
    answer = parsed.answer.strip()
    if not reasoning:
        return None
    boxed = formats.last_boxed(answer)
    answer = boxed.strip() if boxed is not None else answer
    return r1_response(reasoning.splitlines(), answer)


def model_examples(
    model: Any,
    tokenizer: Any,
    env_ids: Sequence[str],
    n: int,
    *,
    source: str,
    seed: int = 0,
    samples: int = 4,
    shots: int = 2,
    max_new_tokens: int = 256,
    temperature: float = 0.7,
    prompt_format: str = "observation",
    generate_fn: Any = None,
) -> list[Example]:
    """Cold-start examples written by a model (``fewshot``, ``reflection`` or ``zero``).

    Each of ``n`` problems gets ``samples`` completions; the correct ones that pass the
    readability filters (:func:`r1agent.rejection.readable`) are kept, deduplicated. The
    training example pairs the plain problem prompt with the readable response.
    """

    gen = generate_fn or generate
    if source not in ("fewshot", "reflection", "zero"):
        raise ValueError(f"source must be fewshot, reflection or zero, source: {source!r}")
    shot_examples = (
        solver_examples(env_ids, shots, seed=seed + n + 1) if source == "fewshot" else []
    )
    envs = {e: make_env(e) for e in dict.fromkeys(env_ids)}
    items = []
    for i in range(n):
        env_id = env_ids[i % len(env_ids)]
        obs, info = envs[env_id].reset(seed=seed + i)
        prompt = render_prompt(tokenizer, obs, info, prompt_format)
        if source == "fewshot":
            query = fewshot_prompt(shot_examples, prompt)
        elif source == "reflection":
            query = reflection_prompt(prompt)
        else:
            query = prompt
        items.append((env_id, seed + i, prompt, query))
    outs = gen(
        model,
        tokenizer,
        [q for *_, q in items for _ in range(samples)],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
    )
    kept: list[Example] = []
    for j, (env_id, env_seed, prompt, _) in enumerate(items):
        for out in outs[j * samples : (j + 1) * samples]:
            text = out.text if source != "fewshot" else cut_at_next_example(out.text)
            if source == "zero":
                text = zero_to_r1(text) or ""
            if not text or out.truncated:
                continue
            env = envs[env_id]
            env.reset(seed=env_seed)
            _, _, _, _, step = env.step(text)
            if step["correct"] and readable(text):
                kept.append(Example(prompt, text))
    for env in envs.values():
        env.close()
    return dedup(kept)
