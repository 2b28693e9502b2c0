"""Cold-start data for stage 1, in DeepSeek-R1's readable format (or the R1-Zero one).

A cold-start response is ``<|begin_of_reasoning|> reasoning <|end_of_reasoning|> summary``
(the delimiters are :data:`r1envs.formats.REASONING_START` / ``REASONING_END``; they are
plain text in the project's tokenizers, so they survive ``decode(skip_special_tokens=True)``).
The summary states the final answer in ``\\boxed{}``, which every math grader reads. With
``output_format="r1-zero"`` responses are ``<think>…</think> <answer>…</answer>`` instead:
the data's format should be the one the RL envs reward (their ``output_format`` kwarg).

Four sources (``r1agent coldstart --source ...``):

* ``solver`` — exact data from step-by-step solvers with a verification step:
  :func:`solve_arithmetic` for ``r1/Arithmetic-v0``, ``task.solution(problem, fmt)`` for task
  families that offer one (Countdown, ...); :func:`has_solver` tells which envs qualify.
* ``fewshot`` — few-shot prompting a model with long-CoT examples (solver-written).
* ``reflection`` — prompting a model to answer with reflection and verification.
* ``zero`` — R1-Zero-style outputs (``<think>…</think> <answer>…</answer>``), rewritten
  into the readable format by :func:`zero_to_r1` and filtered (:mod:`r1agent.rejection`).

The model is a local one or an OpenAI-compatible endpoint (:func:`endpoint_generate`).
Model-written samples are kept only when the env grades them correct and they are
well-formed in the output format.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from r1agent.data.rejection import dedup, readable
from r1agent.data.sft import Example
from r1agent.rewards.judges import EndpointJudge
from r1agent.rollout.engine import Completion
from r1agent.rollout.episodes import make_env, render_prompt
from r1agent.rollout.transformers_engine import generate
from r1envs import formats

ARITHMETIC_ID = "r1/Arithmetic-v0"
_EXPR = re.compile(r"(?:What is (.+)\?|^(.+?)\s*等于多少？)\s*$")
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
    """Step-by-step solution of ``What is 47 + 18 - 25?`` (or ``47 + 18 - 25 等于多少？``) with a
    verification step.

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
    tokens = _TOKEN.findall(m.group(1) or m.group(2))
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
    env_kwargs: dict[str, dict[str, Any]] | None = None,
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
        detailed: the arithmetic solver splits sums into tens and units.
        env_kwargs: ``gym.make`` kwargs per env id (the prompts are those envs' prompts).

    Raises:
        AssertionError: if ``check`` and a solver's answer is graded wrong (a solver bug).
        ValueError: if an env's task has no solver.
    """

    envs = {e: make_env(e, (env_kwargs or {}).get(e)) for e in dict.fromkeys(env_ids)}
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


def has_solver(env_id: str, env_kwargs: dict[str, Any] | None = None, probes: int = 3) -> bool:
    """Whether :func:`solution_text` can write correct solutions for ``env_id``'s problems.

    True for tasks with a ``solution`` method; otherwise the first ``probes`` problems are
    solved and graded (the arithmetic solver reads ``What is …?`` questions).
    """
    env = make_env(env_id, env_kwargs)
    try:
        task = getattr(env.unwrapped, "task", None)
        if task is None:
            return False
        if hasattr(task, "solution"):
            return True
        for seed in range(probes):
            _, info = env.reset(seed=seed)
            try:
                text = solution_text(env, info, info.get("output_format", "r1"))
            except ValueError:
                return False
            if not env.step(text)[4]["correct"]:
                return False
        return True
    finally:
        env.close()


# --------------------------------------------------------------------------- prompting a model

MODEL_SOURCES: tuple[str, ...] = ("fewshot", "reflection", "zero")
"""The cold-start sources that prompt a model (``solver`` and ``file`` need none)."""


def fewshot_prompt(shots: Sequence[Example], question_prompt: str) -> str:
    """A few-shot prompt: solved examples (prompt + long-CoT response), then the new prompt."""
    parts = [f"{s.prompt} {s.response}" for s in shots]
    return "\n\n".join([*parts, question_prompt])


REFLECTION_INSTRUCTION = (
    "Answer with detailed reasoning: work step by step, reflect on each step, verify the "
    f"result at the end, and write the reasoning between {formats.REASONING_START} and "
    f"{formats.REASONING_END}, followed by a short summary with the answer in \\boxed{{}}."
)
REFLECTION_INSTRUCTION_ZERO = (
    "Answer with detailed reasoning: work step by step, reflect on each step, verify the "
    f"result at the end, and write the reasoning between {formats.THINK_START} and "
    f"{formats.THINK_END}, followed by the final answer between {formats.ANSWER_START} and "
    f"{formats.ANSWER_END}."
)


def reflection_instruction(output_format: str = "r1") -> str:
    """The reflection instruction asking for responses in ``output_format``."""
    formats.check_format_name(output_format)
    return REFLECTION_INSTRUCTION if output_format == "r1" else REFLECTION_INSTRUCTION_ZERO


def reflection_prompt(question_prompt: str, output_format: str = "r1") -> str:
    """A prompt asking for an answer with reflection and verification."""
    return f"{reflection_instruction(output_format)}\n\n{question_prompt}"


def cut_at_next_example(text: str) -> str:
    """Keep a few-shot continuation up to the start of an invented next example."""
    for marker in (
        "\n\nA conversation between",
        "\n\nSolve the problem below",
        "\n\nProblem:",
        "\n\nUser:",
        "<|im_start|>",
    ):
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


def endpoint_generate(spec: str, *, api_key: str | None = None) -> Any:
    """A ``generate_fn`` that samples from an OpenAI-compatible endpoint (``URL#model``).

    Each prompt is sent as one user message; a failed request yields an empty completion
    (dropped by the filters, counted in the endpoint's log).

    Raises:
        ValueError: if ``spec`` is not an ``http(s)://`` URL.
    """
    url, _, name = spec.partition("#")
    client = EndpointJudge(url, name or "default", api_key=api_key, timeout=600.0)

    def gen(
        model: Any, tokenizer: Any, prompts: Sequence[str], *, max_new_tokens: int, **kw: Any
    ) -> list[Any]:
        temperature = kw.get("temperature", 1.0)
        out = []
        for p in prompts:
            text = client.chat(p, max_tokens=max_new_tokens, temperature=temperature)
            out.append(Completion([], [], text or "", None, False))
        return out

    return gen


def _shots(
    env_ids: Sequence[str], n: int, seed: int, output_format: str, env_kwargs: dict[str, Any]
) -> list[tuple[str, dict[str, Any], str]]:
    """``(observation, info, solver response)`` shots from the envs that have a solver.

    Falls back to ``r1/Arithmetic-v0`` when none of ``env_ids`` has one (any long-CoT
    example teaches the format).
    """
    solvable = [e for e in dict.fromkeys(env_ids) if has_solver(e, env_kwargs.get(e))]
    ids = solvable or [ARITHMETIC_ID]
    shots = []
    for i in range(n):
        env_id = ids[i % len(ids)]
        kw = {"output_format": output_format, **env_kwargs.get(env_id, {})}
        env = make_env(env_id, kw)
        obs, info = env.reset(seed=seed + i)
        shots.append((obs, info, solution_text(env, info, output_format)))
        env.close()
    return shots


def model_query(
    source: str,
    tokenizer: Any,
    obs: str,
    info: dict[str, Any],
    prompt_format: str,
    *,
    shots: Sequence[tuple[str, dict[str, Any], str]] = (),
    output_format: str = "r1",
) -> str:
    """The text a model is prompted with for one problem under a model-based ``source``.

    ``zero`` prompts with the problem as an R1-Zero env states it (``obs``/``info`` come
    from such an env); ``reflection`` prepends :func:`reflection_instruction`; ``fewshot``
    puts solved ``shots`` first. With ``prompt_format="chat"`` the instruction goes into
    the user message and the shots become earlier user/assistant turns of the chat.
    """
    if source == "zero":
        return render_prompt(tokenizer, obs, info, prompt_format)
    if prompt_format == "chat":
        msgs = [dict(m) for m in info.get("messages") or [{"role": "user", "content": obs}]]
        if source == "reflection":
            msgs[-1]["content"] = reflection_prompt(msgs[-1]["content"], output_format)
        else:
            turns = []
            for s_obs, s_info, response in shots:
                question = (s_info.get("messages") or [{"content": s_obs}])[-1]["content"]
                turns += [
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": response},
                ]
            msgs = [*msgs[:-1], *turns, msgs[-1]]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    if source == "reflection":
        return reflection_prompt(render_prompt(tokenizer, obs, info, prompt_format), output_format)
    return fewshot_prompt([Example(o, r) for o, _, r in shots], obs)


def model_response(source: str, text: str, output_format: str = "r1") -> str | None:
    """A model's completion as a cold-start response in ``output_format``, or ``None``.

    ``fewshot`` continuations are cut where the model starts inventing a next example;
    ``zero`` outputs are rewritten by :func:`zero_to_r1` when the format is ``r1``. The
    result must be well-formed in ``output_format``.
    """
    if source == "fewshot":
        text = cut_at_next_example(text)
    if source == "zero" and output_format == "r1":
        text = zero_to_r1(text) or ""
    text = text.strip()
    if not text or not formats.parse(text, output_format).well_formed:
        return None
    return text


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
    output_format: str = "r1",
    env_kwargs: dict[str, dict[str, Any]] | None = None,
    query_format: str | None = None,
    prompt_tokenizer: Any = None,
    generate_fn: Any = None,
) -> list[Example]:
    """Cold-start examples written by a model (``fewshot``, ``reflection`` or ``zero``).

    Each of ``n`` problems gets ``samples`` completions; the correct ones that are
    well-formed in ``output_format`` and pass the readability filters
    (:func:`r1agent.rejection.readable`) are kept, deduplicated. The training example pairs
    the problem's prompt (as the env states it, rendered with ``prompt_format``) with the
    response.

    Args:
        model: the model to sample from (``None`` with an endpoint ``generate_fn``).
        tokenizer: its tokenizer (renders chat prompts).
        env_ids: env ids, in turn.
        n: number of problems (env seeds ``seed .. seed + n - 1``).
        source: ``fewshot``, ``reflection`` or ``zero``.
        seed: first env seed.
        samples: completions per problem.
        shots: solved examples in a few-shot prompt.
        max_new_tokens: completion cap.
        temperature: sampling temperature.
        prompt_format: ``observation`` or ``chat``: how training prompts are rendered.
        output_format: ``r1`` or ``r1-zero``: the format of the kept responses.
        env_kwargs: ``gym.make`` kwargs per env id (``output_format`` defaults to the above).
        query_format: how the model is prompted (default ``prompt_format``; an endpoint
            takes plain text: ``observation``).
        prompt_tokenizer: renders the training prompts when the model that writes the data
            is not the one trained (default ``tokenizer``).
        generate_fn: replaces :func:`r1agent.rollout.transformers_engine.generate`.

    Raises:
        ValueError: for an unknown ``source`` or ``output_format``.
    """
    if source not in MODEL_SOURCES:
        raise ValueError(f"source must be fewshot, reflection or zero, source: {source!r}")
    formats.check_format_name(output_format)
    gen = generate_fn or generate
    kwargs = {e: {"output_format": output_format, **(env_kwargs or {}).get(e, {})} for e in env_ids}
    shot_list = (
        _shots(env_ids, shots, seed + n + 1, output_format, kwargs) if source == "fewshot" else []
    )
    items = _model_items(
        env_ids,
        n,
        seed,
        source,
        (tokenizer, prompt_tokenizer or tokenizer),
        prompt_format,
        query_format or prompt_format,
        shot_list,
        output_format,
        kwargs,
    )
    outs = gen(
        model,
        tokenizer,
        [q for *_, q in items for _ in range(samples)],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
    )
    return _keep_correct(items, outs, samples, source, output_format, kwargs)


def _keep_correct(
    items: Sequence[tuple[str, int, str, str]],
    outs: Sequence[Any],
    samples: int,
    source: str,
    output_format: str,
    kwargs: dict[str, dict[str, Any]],
) -> list[Example]:
    """The completions graded correct, well-formed and readable, deduplicated."""
    envs = {e: make_env(e, kw) for e, kw in kwargs.items()}
    kept: list[Example] = []
    for j, (env_id, env_seed, prompt, _) in enumerate(items):
        for out in outs[j * samples : (j + 1) * samples]:
            text = None if out.truncated else model_response(source, out.text, output_format)
            if text is None:
                continue
            env = envs[env_id]
            env.reset(seed=env_seed)
            _, _, _, _, step = env.step(text)
            if step["correct"] and readable(text):
                kept.append(Example(prompt, text))
    for env in envs.values():
        env.close()
    return dedup(kept)


def _model_items(
    env_ids: Sequence[str],
    n: int,
    seed: int,
    source: str,
    tokenizers: tuple[Any, Any],
    prompt_format: str,
    query_format: str,
    shots: Sequence[tuple[str, dict[str, Any], str]],
    output_format: str,
    kwargs: dict[str, dict[str, Any]],
) -> list[tuple[str, int, str, str]]:
    """``(env id, env seed, training prompt, model query)`` per problem.

    ``tokenizers`` are ``(the sampled model's, the trained model's)``.
    """
    tokenizer, prompt_tokenizer = tokenizers
    envs = {e: make_env(e, kwargs[e]) for e in dict.fromkeys(env_ids)}
    zero_kwargs = {
        e: {k: v for k, v in kw.items() if k not in ("template", "system_prompt", "think_prefill")}
        | {"output_format": "r1-zero"}
        for e, kw in kwargs.items()
    }
    query_envs = {e: make_env(e, zero_kwargs[e]) for e in envs} if source == "zero" else envs
    items = []
    for i in range(n):
        env_id = env_ids[i % len(env_ids)]
        obs, info = envs[env_id].reset(seed=seed + i)
        prompt = render_prompt(prompt_tokenizer, obs, info, prompt_format)
        if source == "zero":
            obs, info = query_envs[env_id].reset(seed=seed + i)
        query = model_query(
            source, tokenizer, obs, info, query_format, shots=shots, output_format=output_format
        )
        items.append((env_id, seed + i, prompt, query))
    for env in {*envs.values(), *query_envs.values()}:
        env.close()
    return items
