"""reasoning-gym's procedural generators as r1 ids.

With the optional extra installed (``pip install 'r1[reasoning-gym]'``), ``import r1envs``
registers ``r1/RG<CamelName>-v0`` for each generator of :data:`CURATED` (e.g.
``r1/RGBasicArithmetic-v0``, ``r1/RGKnightsKnaves-v0``). Registration does not import
reasoning-gym (its import takes about 1.5 s here); the first ``gym.make`` of such an id does.
Call :func:`register_reasoning_gym` with other names, or ``"all"``, for more::

    from r1envs.integrations.reasoning_gym import register_reasoning_gym
    register_reasoning_gym(["zebra_puzzles"])        # -> ["r1/RGZebraPuzzles-v0"]
    env = gym.make("r1/RGZebraPuzzles-v0", num_people=3)   # generator config as kwargs

Grading: the answer is :func:`r1envs.formats.final_answer_text` of the completion (the
last ``<answer>`` block, else the last ``\\boxed{}``, else the final line; with the r1
format, box the answer in the summary); the generator's own
``score_answer(answer, entry)`` scores it. ``info["correct"]`` is ``score >= 1`` (a full
score) and the accuracy reward is ``float(correct)`` by default. reasoning-gym's default
scorer gives partial credit when the gold text merely appears inside a longer answer (the
gold followed by junk scores 0.99 on ``spell_backward``, 0.33 on ``basic_arithmetic``),
which a policy learns to exploit; ``partial_credit=True`` uses the scorer's value as the
accuracy anyway (for generators with meaningful partial scores). Our format reward sits on
top as for any other id.

Problem schema (``options={"problem": ...}``): ``{"question": str, "answer": str | None,
"metadata": dict}``, a reasoning-gym entry (some scorers read ``metadata``).
"""

from __future__ import annotations

import functools
import importlib.util
import math
import random
import threading
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from r1envs.core import Grade, Task
from r1envs.formats import final_answer_text
from r1envs.integrations._rg_worker import ScoreTimeout, ScoreWorker
from r1envs.registry import _TASKS, register_task

#: Generators registered by default: cheap to build, and scorers we read that only compare
#: strings or parsed JSON/structures (scored in-process). ``puzzle24`` is left out: its
#: scorer runs sympy's ``parse_expr`` (Python ``eval``) on the model's answer.
CURATED: tuple[str, ...] = (
    "basic_arithmetic",
    "chain_sum",
    "gcd",
    "lcm",
    "prime_factorization",
    "fraction_simplification",
    "simple_equations",
    "base_conversion",
    "letter_counting",
    "spell_backward",
    "number_sorting",
    "word_sorting",
    "knights_knaves",
    "mini_sudoku",
    "propositional_logic",
    "graph_color",
    "tower_of_hanoi",
)
MAX_ANSWER_CHARS = 20_000


_WORKERS: dict[tuple[str, int, int, str], ScoreWorker] = {}
_WORKERS_LOCK = threading.Lock()


def shared_worker(name: str, seed: int, size: int, config: dict[str, Any]) -> ScoreWorker:
    """The scoring helper process for one generator config, shared by the envs of this
    process; started now (without waiting), so importing reasoning-gym there overlaps with
    the caller's work. It lives until :func:`close_workers` or the end of the process."""
    key = (name, seed, size, repr(sorted(config.items())))
    with _WORKERS_LOCK:
        if key not in _WORKERS:
            _WORKERS[key] = ScoreWorker((name, seed, size, dict(config)))
            _WORKERS[key].start()
        return _WORKERS[key]


def close_workers() -> None:
    """Stop every scoring helper process of this process."""
    with _WORKERS_LOCK:
        for worker in _WORKERS.values():
            worker.close()
        _WORKERS.clear()


def available() -> bool:
    """Whether reasoning-gym is installed (checked without importing it)."""
    return importlib.util.find_spec("reasoning_gym") is not None


def env_id_for(name: str) -> str:
    """The r1 id of a generator: ``"basic_arithmetic"`` → ``"r1/RGBasicArithmetic-v0"``."""
    camel = "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)
    return f"r1/RG{camel}-v0"


class RGProblem(BaseModel):
    """A reasoning-gym entry."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    question: str = Field(min_length=1)
    answer: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ReasoningGymTask(Task[RGProblem]):
    """One reasoning-gym generator, scored by its own ``score_answer``.

    Args:
        name: the generator's name in ``reasoning_gym.factory.DATASETS``.
        seed: the generator's seed (problems are drawn by index from it).
        size: how many distinct indices to draw from.
        timeout: seconds a score may take; a slower one counts as wrong (score 0).
        isolate: score in a helper process that is killed after ``timeout`` (some scorers
            evaluate the answer with sympy and never return on ``99999999!``), or in this
            process (faster, unbounded). ``None`` (the default) isolates every generator
            but the reviewed :data:`CURATED` ones.
        partial_credit: use the scorer's value as the accuracy (``True``) instead of only
            full scores (``False``, the default: accuracy is 1 when the score is >= 1, else 0).
        **config: the generator's config fields (e.g. ``min_terms=2``).
    """

    Problem = RGProblem

    def __init__(
        self,
        name: str,
        *,
        seed: int = 0,
        size: int = 100_000,
        partial_credit: bool = False,
        timeout: float = 3.0,
        isolate: bool | None = None,
        **config: Any,
    ) -> None:
        import reasoning_gym
        from reasoning_gym.factory import DATASETS

        if name not in DATASETS:
            raise ValueError(f"unknown reasoning-gym generator, name: {name!r}")
        if size < 1:
            raise ValueError(f"size must be >= 1, size: {size}")
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0, timeout: {timeout}")
        self.name = name
        self.dataset = reasoning_gym.create_dataset(name, seed=seed, size=size, **config)
        self.partial_credit = partial_credit
        self.timeout = timeout
        if isolate is None:
            isolate = name not in CURATED
        self._worker = shared_worker(name, seed, size, config) if isolate else None
        if self._worker is not None:
            self._worker.wait_ready()  # so that no step pays for the helper's start-up

    def sample(self, rng: random.Random) -> RGProblem:
        """Generate the entry at a random index."""
        entry = self.dataset[rng.randrange(len(self.dataset))]
        answer = entry.get("answer")
        return RGProblem(
            question=entry["question"],
            answer=None if answer is None else str(answer),
            metadata=dict(entry.get("metadata") or {}),
        )

    def prompt(self, problem: RGProblem) -> str:
        """The generator's question."""
        return problem.question

    def grade(self, completion: str, problem: RGProblem, answer_text: str | None = None) -> Grade:
        """Score the final answer with the generator's ``score_answer``."""
        answer = final_answer_text(completion)
        if answer is None:
            return Grade(correct=False, extracted_answer=None)
        if len(answer) > MAX_ANSWER_CHARS:
            return Grade(correct=False, extracted_answer=answer[:200])
        entry = {
            "question": problem.question,
            "answer": problem.answer,
            "metadata": dict(problem.metadata),
        }
        score = self._score(answer, entry)
        score = score if math.isfinite(score) else 0.0
        correct = score >= 1.0
        return Grade(
            correct=correct,
            extracted_answer=answer,
            score=score if self.partial_credit else float(correct),
        )

    def _score(self, answer: str, entry: dict[str, Any]) -> float:
        # Scorers parse the answer and raise on malformed ones, or never return on some
        # (sympy on ``99999999!``): both grade the answer wrong, without an error.
        if self._worker is None:
            try:
                return float(self.dataset.score_answer(answer, entry))
            except Exception:
                return 0.0
        try:
            status, value = self._worker.score(answer, entry, self.timeout)
        except ScoreTimeout:
            return 0.0
        return float(value) if status == "ok" else 0.0


def register_reasoning_gym(
    names: Iterable[str] | str | None = None, *, override: bool = False
) -> list[str]:
    """Register reasoning-gym generators as r1 ids (see :func:`env_id_for`).

    Args:
        names: generator names; ``None`` for :data:`CURATED` (registered without importing
            reasoning-gym), ``"all"`` for every generator of the installed version.
        override: replace existing registrations (otherwise registered ids are skipped).

    Returns:
        The ids registered by this call.

    Raises:
        ValueError: if reasoning-gym is not installed or a name is unknown.
    """
    if not available():
        raise ValueError("reasoning-gym is not installed: pip install 'r1[reasoning-gym]'")
    if names is None:
        chosen = list(CURATED)
    else:
        from reasoning_gym.factory import DATASETS

        chosen = (
            sorted(DATASETS)
            if names == "all"
            else [names]
            if isinstance(names, str)
            else list(names)
        )
        unknown = [n for n in chosen if n not in DATASETS]
        if unknown:
            raise ValueError(f"unknown reasoning-gym generators: {unknown}")
    ids = []
    for name in chosen:
        env_id = env_id_for(name)
        if env_id in _TASKS and not override:
            continue
        register_task(env_id, functools.partial(ReasoningGymTask, name), override=override)
        ids.append(env_id)
    return ids
