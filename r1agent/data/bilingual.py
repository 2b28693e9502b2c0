"""Cold-start chains of thought that mix English and Chinese, as R1-Zero's did.

DeepSeek-R1-Zero's reasoning often switched language mid-chain; the language-consistency
reward of stage 2 exists to stop that. :func:`mixed_examples` writes solver-exact arithmetic
solutions whose sentences are each in the prompt's language with probability ``keep``, and
in the other language otherwise, so a cold start on them reproduces the mixing. Problems of
envs whose question is not arithmetic (e.g. Countdown) get their task's own solution.

Each sentence of an arithmetic chain exists in both languages::

    First, 7 + 5 = 12.            首先，7 + 5 = 12。
    Next, 12 + 1 = 13.            接着，12 + 1 = 13。
    Check: 13 - 1 = 12, ...       检查：13 - 1 = 12，...
    So the result is 13.          所以结果是 13。
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

from r1agent.data.coldstart import format_response, solution_text, solve_arithmetic
from r1agent.data.sft import Example
from r1agent.rollout.episodes import make_env, render_prompt
from r1envs import formats

__all__ = ["LEADS", "free_form_documents", "mixed_chain", "mixed_examples"]

#: Sentence frames per language: first step, later steps, check, conclusion.
LEADS: dict[str, dict[str, str]] = {
    "en": {
        "first": "First, {step}.",
        "next": "Next, {step}.",
        "check": "Check: {step}.",
        "so": "So the result is {answer}.",
    },
    "zh": {
        "first": "首先，{step}。",
        "next": "接着，{step}。",
        "check": "检查：{step}。",
        "so": "所以结果是 {answer}。",
    },
}
_OTHER = {"en": "zh", "zh": "en"}
#: How a free-form (pretraining) solution states its answer, per language.
ANSWER_LINES = {"en": "The answer is {answer}.", "zh": "答案是 {answer}。"}


def mixed_chain(
    question: str, language: str, rng: random.Random, *, keep: float = 0.5
) -> tuple[list[str], str]:
    """Sentences solving an arithmetic ``question``, each in ``language`` with prob. ``keep``.

    Returns:
        ``(sentences, answer)``.

    Raises:
        ValueError: if ``language`` is not ``"en"`` or ``"zh"``, or the question is not
            arithmetic (see :func:`~r1agent.data.coldstart.solve_arithmetic`).
    """
    if language not in LEADS:
        raise ValueError(f"language must be one of {sorted(LEADS)}, language: {language!r}")
    steps, answer = solve_arithmetic(question)
    out = []
    for i, step in enumerate(steps):
        lang = language if rng.random() < keep else _OTHER[language]
        if step.startswith("Check: "):
            body = step[len("Check: ") :].rstrip(".")
            if lang == "zh":
                body = body.replace(", ", "，")
            out.append(LEADS[lang]["check"].format(step=body))
        else:
            out.append(LEADS[lang]["first" if i == 0 else "next"].format(step=step))
    lang = language if rng.random() < keep else _OTHER[language]
    out.append(LEADS[lang]["so"].format(answer=answer))
    return out, answer


def mixed_examples(
    env_ids: Sequence[str],
    n: int,
    *,
    seed: int = 0,
    keep: float = 0.5,
    output_format: str = "r1-zero",
    prompt_format: str = "observation",
    tokenizer: Any = None,
) -> list[Example]:
    """``n`` cold-start examples, env ids in turn, problem ``i`` from ``reset(seed=seed + i)``.

    Arithmetic problems get a :func:`mixed_chain` in the env's target language (its
    ``language`` kwarg); other problems their task's solution. Every response is graded
    through its env: a wrong one is a solver bug and raises.

    Raises:
        AssertionError: if a written solution is graded wrong.
        ValueError: if an env has no solver.
    """
    rng = random.Random(seed)
    out = []
    for env, obs, info in _problems(env_ids, n, seed):
        try:
            sentences, answer = mixed_chain(
                info.get("question", ""), env.unwrapped.language, rng, keep=keep
            )
            response = format_response(sentences, answer, output_format)
        except ValueError:
            response = solution_text(env, info, output_format)
        _, _, _, _, step_info = env.step(response)
        assert step_info["correct"], f"solver wrote a wrong answer: {response!r:.200}"
        out.append(Example(render_prompt(tokenizer, obs, info, prompt_format), response))
    return out


def free_form_documents(env_ids: Sequence[str], n: int, *, seed: int = 0) -> list[str]:
    """``n`` pretraining documents: an env's prompt followed by a worked solution in free form.

    The kind of text a base model has seen: the question, the working in the prompt's
    language and a closing ``The answer is …`` line, with none of the output format's tags
    (a base that has read them follows the prompt with an answer instead of stopping). Env
    ids in turn, problem ``i`` from ``reset(seed=seed + i)``.
    """
    rng = random.Random(seed)
    docs = []
    for env, obs, info in _problems(env_ids, n, seed):
        language = env.unwrapped.language
        try:
            sentences, answer = mixed_chain(info.get("question", ""), language, rng, keep=1.0)
            body = "\n".join(sentences[:-1])
        except ValueError:
            parsed = formats.parse(solution_text(env, info, "r1-zero"), "r1-zero")
            body, answer = parsed.reasoning or "", (parsed.answer or "").strip()
        line = ANSWER_LINES.get(language, ANSWER_LINES["en"]).format(answer=answer)
        lines = [" ".join(ln.split()) for ln in body.splitlines() if ln.strip()]
        docs.append(obs + " " + "\n".join([*lines, line]))
    return docs


def _problems(env_ids: Sequence[str], n: int, seed: int) -> Iterator[tuple[Any, str, dict]]:
    """``(env, observation, info)`` for problem ``i < n``: env ids in turn, ``seed + i``."""
    envs = {e: make_env(e) for e in dict.fromkeys(env_ids)}
    try:
        for i in range(n):
            env = envs[env_ids[i % len(env_ids)]]
            obs, info = env.reset(seed=seed + i)
            yield env, obs, info
    finally:
        for env in envs.values():
            env.close()
