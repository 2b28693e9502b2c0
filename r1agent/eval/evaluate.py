"""Evaluation with pass@k rollouts: pass@1 (mean over k samples), unbiased pass@k, cons@k.

``r1agent eval --model DIR --env r1/Arithmetic-v0 --k 16 --n 500`` samples ``k`` completions
for each of ``n`` held-out problems and grades them through the env (``info["correct"]``).

Design decisions:

* Problem ``i`` is ``env_ids[i % len(env_ids)]`` reset with ``seed=base_seed + i``
  (default base ``10_000_000``: training uses seeds below it), each env with its default
  ``gym.make`` kwargs unless ``env_kwargs`` says otherwise.
* The prompt is the observation string as is (``prompt_format="observation"``) or
  ``info["messages"]`` through the tokenizer's chat template (``"chat"``). Completions are
  decoded with ``skip_special_tokens=True``, as a plain transformers user would.
* pass@k is the unbiased estimator of Chen et al. (2021), ``1 - C(n-c, k) / C(n, k)``,
  computed as a product so large ``n`` never overflows; cons@k is a majority vote over
  the extracted answers (ties go to the answer seen first).
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from r1agent.infra.config import RolloutConfig
from r1agent.infra.models import load_model, load_tokenizer
from r1agent.rollout.engine import Completion
from r1agent.rollout.episodes import make_env, render_prompt
from r1agent.rollout.factory import make_generate, needs_model
from r1agent.rollout.transformers_engine import generate

HELDOUT_SEED = 10_000_000
PromptFormat = Literal["observation", "chat"]


# --------------------------------------------------------------------------- metrics


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct.

    ``1 - C(n-c, k) / C(n, k) = 1 - prod_{i=n-c+1}^{n} (1 - k / i)``.

    Raises:
        ValueError: unless ``0 <= c <= n`` and ``1 <= k <= n``.
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, c: {c}, n: {n}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, k: {k}, n: {n}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def majority_vote(answers: Sequence[str | None], correct: Sequence[bool]) -> bool:
    """cons@k for one problem: is the most common extracted answer a correct one?

    Samples with no answer do not vote; ties go to the answer seen first.
    """
    if len(answers) != len(correct):
        raise ValueError(
            f"answers and correct differ in length, answers: {len(answers)}, "
            f"correct: {len(correct)}"
        )
    votes = Counter(_norm(a) for a in answers if a is not None and _norm(a))
    if not votes:
        return False
    best = max(votes.values())
    first_best = next(_norm(a) for a in answers if a is not None and votes.get(_norm(a)) == best)
    return any(
        ok
        for a, ok in zip(answers, correct, strict=True)
        if a is not None and _norm(a) == first_best
    )


def _norm(answer: str) -> str:
    return " ".join(answer.split())


def pass_k_values(k: int) -> list[int]:
    """The k's reported for ``k`` samples: 1, powers of two below ``k``, and ``k``."""
    ks, v = [], 1
    while v < k:
        ks.append(v)
        v *= 2
    return ks + [k]


# --------------------------------------------------------------------------- problems


@dataclass
class Problem:
    """One held-out problem: its env, seed, prompt and the reset info."""

    env_id: str
    seed: int
    prompt: str
    info: dict[str, Any]


def heldout_problems(
    env_ids: Sequence[str],
    n: int,
    *,
    tokenizer: Any = None,
    prompt_format: str = "observation",
    base_seed: int = HELDOUT_SEED,
    env_kwargs: dict[str, dict[str, Any]] | None = None,
) -> list[Problem]:
    """Problems ``base_seed + i`` for ``i < n``, env ids taken in turn."""
    if not env_ids:
        raise ValueError("need at least one env id, env_ids: []")
    envs = {e: make_env(e, (env_kwargs or {}).get(e)) for e in dict.fromkeys(env_ids)}
    problems = []
    for i in range(n):
        env_id = env_ids[i % len(env_ids)]
        obs, info = envs[env_id].reset(seed=base_seed + i)
        problems.append(
            Problem(env_id, base_seed + i, render_prompt(tokenizer, obs, info, prompt_format), info)
        )
    for env in envs.values():
        env.close()
    return problems


def grade(env: Any, problem: Problem, completion: str) -> dict[str, Any]:
    """Step a fresh reset of the problem's env with ``completion``; returns its info + reward."""
    env.reset(seed=problem.seed)
    _, reward, _, _, info = env.step(completion)
    return {**info, "reward": float(reward)}


# --------------------------------------------------------------------------- evaluation


@dataclass
class EnvResult:
    """Aggregated metrics of one env."""

    env_id: str
    n: int
    k: int
    pass1: float
    pass_k: dict[int, float]
    cons_k: float
    mean_length: float
    truncated: float
    format_rate: float
    errors: int
    #: share of samples whose chain of thought is all in the env's target language
    #: (language-consistency reward 1.0; ``info["rewards"]["language"]``)
    single_language: float = 0.0


@dataclass
class EvalReport:
    """All results of an evaluation run."""

    model: str
    settings: dict[str, Any]
    envs: list[EnvResult]
    overall: dict[str, float] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (pass@k keys as strings ``"pass@4"``)."""
        return {
            "model": self.model,
            "settings": self.settings,
            "overall": self.overall,
            "envs": [
                {
                    "env_id": r.env_id,
                    "n": r.n,
                    "k": r.k,
                    "pass@1": r.pass1,
                    **{f"pass@{k}": v for k, v in r.pass_k.items()},
                    f"cons@{r.k}": r.cons_k,
                    "mean_length": r.mean_length,
                    "truncated": r.truncated,
                    "format_rate": r.format_rate,
                    "errors": r.errors,
                    "single_language": r.single_language,
                }
                for r in self.envs
            ],
        }

    def markdown(self) -> str:
        """A Markdown table, one row per env."""
        if not self.envs:
            return "(no results)\n"
        ks = list(self.envs[0].pass_k)
        k = self.envs[0].k
        head = [
            "env",
            "n",
            "pass@1",
            *[f"pass@{x}" for x in ks if x != 1],
            f"cons@{k}",
            "mean len",
            "trunc",
        ]
        lines = [
            f"Model: `{self.model}`  ",
            "Settings: " + ", ".join(f"{a}={b}" for a, b in self.settings.items()),
            "",
            "| " + " | ".join(head) + " |",
            "|" + "---|" * len(head),
        ]
        for r in self.envs:
            cells = [r.env_id, str(r.n), f"{r.pass1:.3f}"]
            cells += [f"{r.pass_k[x]:.3f}" for x in ks if x != 1]
            cells += [f"{r.cons_k:.3f}", f"{r.mean_length:.1f}", f"{r.truncated:.2f}"]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


GenerateFn = Callable[..., list[Any]]


def evaluate(
    model: Any,
    tokenizer: Any,
    env_ids: Sequence[str],
    *,
    n: int = 500,
    k: int = 16,
    temperature: float = 0.6,
    top_p: float = 0.95,
    max_new_tokens: int = 1024,
    prompt_format: str = "observation",
    seed: int = 0,
    base_seed: int = HELDOUT_SEED,
    batch_size: int = 64,
    env_kwargs: dict[str, dict[str, Any]] | None = None,
    model_name: str = "",
    keep_samples: int = 0,
    generate_fn: GenerateFn | None = None,
) -> EvalReport:
    """Sample ``k`` completions for ``n`` held-out problems and grade them.

    Args:
        model: a causal LM.
        tokenizer: its tokenizer.
        env_ids: env ids taken in turn for problem ``i``.
        n: number of problems.
        k: samples per problem.
        temperature: sampling temperature (0 = greedy).
        top_p: nucleus sampling threshold.
        max_new_tokens: completion length cap.
        prompt_format: ``"observation"`` or ``"chat"``.
        seed: sampling seed (fixed: the same call gives the same numbers).
        base_seed: problem ``i`` uses env seed ``base_seed + i``.
        batch_size: prompts per generation call (each with ``k`` samples... flattened).
        env_kwargs: ``gym.make`` kwargs per env id (default: none, the env's defaults).
        model_name: shown in the report.
        keep_samples: how many graded samples to keep in the report (for reading).
        generate_fn: the generation function (default :func:`r1agent.rollout.generate`).

    Returns:
        An :class:`EvalReport`.
    """
    if k < 1 or n < 1:
        raise ValueError(f"need n >= 1 and k >= 1, n: {n}, k: {k}")
    generate_fn = generate_fn or generate
    problems = heldout_problems(
        env_ids,
        n,
        tokenizer=tokenizer,
        prompt_format=prompt_format,
        base_seed=base_seed,
        env_kwargs=env_kwargs,
    )
    envs = {e: make_env(e, (env_kwargs or {}).get(e)) for e in dict.fromkeys(env_ids)}
    sample = functools.partial(
        generate_fn,
        model,
        tokenizer,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
    )
    try:
        per_problem = _sample_and_grade(sample, envs, problems, k, batch_size, seed)
    finally:
        for env in envs.values():
            env.close()
    settings = {
        "n": n,
        "k": k,
        "temperature": temperature,
        "top_p": top_p,
        "max_new_tokens": max_new_tokens,
        "prompt_format": prompt_format,
        "seed": seed,
        "base_seed": base_seed,
    }
    return _report(model_name, settings, env_ids, problems, per_problem, keep_samples)


def _sample_and_grade(
    sample: Callable[..., list[Completion]],
    envs: dict[str, Any],
    problems: Sequence[Problem],
    k: int,
    batch_size: int,
    seed: int,
) -> list[list[dict[str, Any]]]:
    """``k`` graded samples per problem; ``sample(prompts, seed=...)`` generates."""
    per_problem: list[list[dict[str, Any]]] = []
    chunk = max(1, batch_size // k) if k <= batch_size else 1
    for start in range(0, len(problems), chunk):
        group = problems[start : start + chunk]
        outs = sample([p.prompt for p in group for _ in range(k)], seed=seed + start)
        for j, p in enumerate(group):
            per_problem.append([_graded(envs[p.env_id], p, o) for o in outs[j * k : (j + 1) * k]])
    return per_problem


def _graded(env: Any, problem: Problem, out: Completion) -> dict[str, Any]:
    """One sample's grade as the report keeps it."""
    info = grade(env, problem, out.text)
    return {
        "correct": bool(info["correct"]),
        "answer": info.get("extracted_answer"),
        "format": float(info["rewards"].get("format", 0.0)),
        "language": float(info["rewards"].get("language", 0.0)),
        "error": info.get("error"),
        "length": len(out.completion_ids),
        "truncated": bool(out.truncated),
        "text": out.text,
    }


def _report(
    model_name: str,
    settings: dict[str, Any],
    env_ids: Sequence[str],
    problems: Sequence[Problem],
    per_problem: list[list[dict[str, Any]]],
    keep_samples: int,
) -> EvalReport:
    """Aggregate graded samples per env and overall into an :class:`EvalReport`."""
    k = settings["k"]
    results = [
        _aggregate(e, k, [g for p, g in zip(problems, per_problem, strict=True) if p.env_id == e])
        for e in dict.fromkeys(env_ids)
    ]
    overall = _aggregate("all", k, per_problem)
    samples = [
        {"env_id": p.env_id, "seed": p.seed, **g[0]}
        for p, g in list(zip(problems, per_problem, strict=True))[:keep_samples]
    ]
    return EvalReport(
        model=model_name,
        settings=settings,
        envs=results,
        overall={
            "pass@1": overall.pass1,
            f"pass@{k}": overall.pass_k[k],
            f"cons@{k}": overall.cons_k,
            "mean_length": overall.mean_length,
        },
        samples=samples,
    )


def _aggregate(env_id: str, k: int, graded: list[list[dict[str, Any]]]) -> EnvResult:
    n = len(graded)
    if n == 0:
        return EnvResult(
            env_id, 0, k, 0.0, {x: 0.0 for x in pass_k_values(k)}, 0.0, 0.0, 0.0, 0.0, 0
        )
    flat = [s for g in graded for s in g]
    counts = [sum(s["correct"] for s in g) for g in graded]
    return EnvResult(
        env_id=env_id,
        n=n,
        k=k,
        pass1=sum(c / k for c in counts) / n,
        pass_k={x: sum(pass_at_k(k, c, x) for c in counts) / n for x in pass_k_values(k)},
        cons_k=sum(
            majority_vote([s["answer"] for s in g], [s["correct"] for s in g]) for g in graded
        )
        / n,
        mean_length=sum(s["length"] for s in flat) / len(flat),
        truncated=sum(s["truncated"] for s in flat) / len(flat),
        format_rate=sum(s["format"] for s in flat) / len(flat),
        errors=sum(1 for s in flat if s["error"]),
        single_language=sum(s.get("language", 0.0) >= 1.0 for s in flat) / len(flat),
    )


def write_report(report: EvalReport, out_dir: str | Path, name: str = "eval") -> tuple[Path, Path]:
    """Write ``<name>.json`` and ``<name>.md`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / f"{name}.json", out / f"{name}.md"
    data = report.to_json()
    data["samples"] = report.samples
    j.write_text(json.dumps(data, indent=2))
    m.write_text(report.markdown())
    return j, m


def evaluate_checkpoint(
    path: str | Path,
    env_ids: Sequence[str],
    *,
    rollout: RolloutConfig | None = None,
    **kwargs: Any,
) -> EvalReport:
    """Evaluate a checkpoint directory (or hub id) with :func:`evaluate`.

    ``rollout`` chooses the engine (:func:`r1agent.rollout.factory.make_generate`): ``hf``
    (the default) loads the model with :func:`r1agent.models.load_model`; ``vllm`` and
    ``vllm-server`` sample from their own copy, so only the tokenizer is loaded here.
    """
    if kwargs.get("generate_fn") is None and not needs_model(rollout):
        tokenizer = load_tokenizer(str(path))
        kwargs["generate_fn"] = make_generate(rollout, path, tokenizer=tokenizer)
        return evaluate(None, tokenizer, env_ids, model_name=str(path), **kwargs)
    model, tokenizer = load_model(str(path))
    model.eval()
    return evaluate(model, tokenizer, env_ids, model_name=str(path), **kwargs)
