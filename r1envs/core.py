"""The core environment: a verifiable task behind the Gymnasium API.

A :class:`Task` knows three things: how to draw a problem from a seeded RNG (``sample``),
how to state it (``prompt``) and how to grade a completion (``grade``). Its problems are
pydantic models, so ``reset(options={"problem": {...}})`` validates a user's dict.

:class:`ReasoningEnv` wraps a task as a single-turn (or multi-turn, ``max_turns > 1``)
Gymnasium env: the observation is the prompt, the action is the model's whole completion,
and ``step`` returns the weighted sum of the reward components (accuracy, format, language
consistency, plus optional overlong and repetition penalties and task extras such as a
code pass rate), every component by name in ``info["rewards"]``.

Design decisions:

* Same seed, same problem: ``reset(seed=s)`` seeds ``np_random`` and draws the problem from a
  ``random.Random`` seeded from it, so a trainer gets a group of G episodes on one problem
  by resetting G envs with one seed.
* ``step`` never raises on any completion: grading errors become ``info["error"]`` (the
  verifier failed, not the answer) with reward 0, and completions longer than
  ``max_completion_chars`` score 0 without being graded.
* ``info`` is deterministic (no timings, paths or pids) and fresh on every call, so
  ``gymnasium.utils.env_checker.check_env`` passes.
"""

from __future__ import annotations

import math
import random
import reprlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import gymnasium as gym
from pydantic import BaseModel, ConfigDict, ValidationError

from r1envs import formats, rewards
from r1envs.spaces import UnicodeText

P = TypeVar("P", bound=BaseModel)

DEFAULT_REWARD_WEIGHTS: dict[str, float] = {"accuracy": 1.0, "format": 0.2, "language": 0.0}
MAX_OBSERVATION_CHARS = 1 << 20
DEFAULT_MAX_COMPLETION_CHARS = 1_000_000


@dataclass
class Grade:
    """A task's verdict on one completion.

    Attributes:
        correct: whether the answer is right, whatever the output format.
        extracted_answer: what was graded, or ``None`` if no answer was found.
        score: the accuracy reward; ``None`` means ``float(correct)``.
        extra: further reward components by name (e.g. ``pass_rate``), unweighted.
        error: set when grading itself failed (sandbox down, verifier crashed).
        feedback: text shown to the policy on the next turn of a multi-turn episode.
    """

    correct: bool
    extracted_answer: str | None = None
    score: float | None = None
    extra: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    feedback: str | None = None


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 3, 60, 60, 6, 6


def short_repr(value: Any) -> str:
    """A bounded ``repr`` (safe on huge or deeply nested values) for error messages."""
    try:
        return _REPR.repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


def validation_message(err: ValidationError) -> str:
    """One line naming each bad field of a pydantic validation error."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "<root>"
        parts.append(f"{loc}: {e['msg']} (got {short_repr(e.get('input'))})")
    return "; ".join(parts)


class Task(ABC, Generic[P]):
    """A verifiable task: problems, prompts and a grader.

    Subclasses set ``Problem`` (a pydantic model) and implement ``sample``, ``prompt`` and
    ``grade``. ``grade`` must return within a bounded time on any string and should not
    raise; the env turns exceptions into ``info["error"]`` anyway.
    """

    Problem: ClassVar[type[BaseModel]]
    #: Reward components this task adds through ``Grade.extra`` (always present in info).
    extra_rewards: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def sample(self, rng: random.Random) -> P:
        """Draw a problem. Deterministic given the RNG's state."""

    @abstractmethod
    def prompt(self, problem: P) -> str:
        """The question as the user would ask it (no format instructions)."""

    @abstractmethod
    def grade(self, completion: str, problem: P, answer_text: str | None = None) -> Grade:
        """Grade ``completion`` against ``problem``.

        Args:
            completion: the full completion.
            problem: the problem it answers.
            answer_text: the answer section found by the output format (``<answer>`` block or
                r1 summary), or ``None`` when the completion is not well-formed. Tasks may use
                it or extract from ``completion`` themselves.
        """

    def validate(self, data: Mapping[str, Any] | BaseModel) -> P:
        """Validate a plain dict as this task's problem.

        Raises:
            ValueError: naming each bad field.
        """
        if isinstance(data, self.Problem):
            return data  # type: ignore[return-value]
        if isinstance(data, BaseModel):
            data = data.model_dump()
        if not isinstance(data, Mapping):
            raise ValueError(
                f"problem must be a dict for {type(self).__name__}, problem: {short_repr(data)}"
            )
        try:
            return self.Problem.model_validate(dict(data))  # type: ignore[return-value]
        except ValidationError as err:
            raise ValueError(
                f"invalid {type(self).__name__} problem: {validation_message(err)}"
            ) from None

    def describe(self, problem: P) -> dict[str, Any]:
        """The problem as a JSON-able dict (goes into ``info["problem"]``)."""
        return problem.model_dump(mode="json")

    def close(self) -> None:
        """Release resources (sandboxes, worker processes)."""


class MixProblem(BaseModel):
    """A problem of one family of a :class:`MixTask`."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)
    family: str
    problem: BaseModel


class MixTask(Task[MixProblem]):
    """Draws each problem from one of several tasks, by weight.

    Pinned problems name their family with a ``"family"`` key; without one, the first
    family whose schema accepts the dict is used.
    """

    Problem = MixProblem

    def __init__(self, tasks: Mapping[str, Task], weights: Mapping[str, float] | None = None):
        if not tasks:
            raise ValueError("MixTask needs at least one task, tasks: {}")
        self.tasks = dict(tasks)
        weights = dict(weights or {name: 1.0 for name in self.tasks})
        unknown = set(weights) - set(self.tasks)
        if unknown:
            raise ValueError(f"weights name unknown families: {sorted(unknown)}")
        if any(w < 0 or not math.isfinite(w) for w in weights.values()) or not sum(
            weights.values()
        ):
            raise ValueError(f"weights must be finite, >= 0 and not all 0, weights: {weights}")
        self.names = [n for n in self.tasks if weights.get(n, 0.0) > 0]
        self.weights = [weights[n] for n in self.names]
        self.extra_rewards = tuple(
            sorted({k for t in self.tasks.values() for k in t.extra_rewards})
        )

    def sample(self, rng: random.Random) -> MixProblem:
        """Pick a family by weight, then draw from it."""
        name = rng.choices(self.names, weights=self.weights)[0]
        return MixProblem(family=name, problem=self.tasks[name].sample(rng))

    def prompt(self, problem: MixProblem) -> str:
        """The chosen family's prompt."""
        return self.tasks[problem.family].prompt(problem.problem)

    def grade(self, completion: str, problem: MixProblem, answer_text: str | None = None) -> Grade:
        """The chosen family's grade."""
        return self.tasks[problem.family].grade(completion, problem.problem, answer_text)

    def validate(self, data: Mapping[str, Any] | BaseModel) -> MixProblem:
        """Validate a dict as a problem of its ``family`` (or of the first family that fits)."""
        if isinstance(data, MixProblem):
            return data
        if not isinstance(data, Mapping):
            raise ValueError(f"problem must be a dict, problem: {short_repr(data)}")
        data = dict(data)
        family = data.pop("family", None)
        if family is not None:
            if not isinstance(family, str) or family not in self.tasks:
                raise ValueError(
                    f"family must be one of {sorted(self.tasks)}, family: {short_repr(family)}"
                )
            return MixProblem(family=family, problem=self.tasks[family].validate(data))
        errors = []
        for name, task in self.tasks.items():
            try:
                return MixProblem(family=name, problem=task.validate(data))
            except ValueError as err:
                errors.append(f"[{name}] {err}")
        raise ValueError("problem fits no family of this mix: " + " | ".join(errors))

    def describe(self, problem: MixProblem) -> dict[str, Any]:
        """The family's description plus a ``family`` key."""
        return {"family": problem.family, **self.tasks[problem.family].describe(problem.problem)}

    def family(self, problem: MixProblem) -> str:
        """The family name of ``problem``."""
        return problem.family

    def close(self) -> None:
        """Close every family."""
        for task in self.tasks.values():
            task.close()


def _sanitize(action: Any) -> str:
    if isinstance(action, bytes):
        action = action.decode("utf-8", "replace")
    elif not isinstance(action, str):
        action = "" if action is None else str(action)
    # Lone surrogates cannot be encoded; replace them so every verifier sees valid text.
    try:
        action.encode("utf-8")
    except UnicodeEncodeError:
        action = action.encode("utf-8", "replace").decode("utf-8")
    return action


class ReasoningEnv(gym.Env[str, str]):
    """A verifiable reasoning task as a Gymnasium env.

    Args:
        task: the task (problems, prompts, grader).
        output_format: ``"r1-zero"`` (think/answer tags) or ``"r1"`` (readable reasoning
            delimiters plus summary); see :mod:`r1envs.formats`.
        reward_weights: weights of the reward components by name; unspecified components
            keep their defaults (accuracy 1.0, format 0.2, language 0.0, others 0.0 unless
            enabled below).
        template: the prompt template, a string with a ``{question}`` field; defaults to the
            format's template (the R1-Zero paper's for ``"r1-zero"``).
        system_prompt: the system message of ``info["messages"]``; defaults to the format's.
        language: target language of the language-consistency reward (``"en"``, ``"zh"``...).
        prompt_language: language of the default template and system prompt (``"en"`` or
            ``"zh"``); ignored where ``template`` / ``system_prompt`` are given.
        think_prefill: ``True`` if the prompt pre-fills the opening reasoning tag (the
            observation then ends with it), ``None`` to detect it from the completion,
            ``False`` to require the tag in the completion.
        strict: require an explicit final-answer marker for accuracy (tasks that support it).
        overlong: ``(max_length, buffer)`` enables DAPO's soft overlong penalty (weight 1.0
            unless ``reward_weights`` says otherwise); lengths are characters unless
            ``length_fn`` counts otherwise (e.g. a tokenizer).
        length_fn: counts a completion's length for the overlong penalty.
        repetition_ngram: enables the repetition penalty over word n-grams of this size.
        max_turns: turns per episode; above 1, a wrong answer with task feedback continues the
            episode with the feedback as the next observation.
        max_completion_chars: completions longer than this score 0 without grading.
        render_mode: ``"ansi"`` or ``"human"``.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 4}

    def __init__(
        self,
        task: Task,
        *,
        output_format: str = "r1-zero",
        reward_weights: Mapping[str, float] | None = None,
        template: str | None = None,
        system_prompt: str | None = None,
        language: str = "en",
        prompt_language: str = "en",
        think_prefill: bool | None = None,
        strict: bool | None = None,
        overlong: tuple[int, int] | None = None,
        length_fn: Callable[[str], int] | None = None,
        repetition_ngram: int | None = None,
        max_turns: int = 1,
        max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS,
        render_mode: str | None = None,
    ) -> None:
        self.task = task
        self.output_format = formats.check_format_name(output_format)
        self.language = rewards.check_language(language)
        self.template = (
            template
            if template is not None
            else formats.default_template(output_format, prompt_language)
        )
        if "{question}" not in self.template:
            raise ValueError(f"template must contain '{{question}}', template: {template!r:.80}")
        if think_prefill:
            open_tag = (
                formats.THINK_START if output_format == "r1-zero" else formats.REASONING_START
            )
            if not self.template.rstrip().endswith(open_tag):
                self.template = self.template.rstrip() + " " + open_tag
        self.system_prompt = (
            system_prompt
            if system_prompt is not None
            else formats.default_system_prompt(output_format, prompt_language)
        )
        self.think_prefill = think_prefill
        self.strict = strict
        if overlong is not None:
            max_len, buffer = overlong
            rewards.overlong_penalty(0, max_len, buffer)  # validates
        self.overlong = overlong
        self.length_fn = length_fn or rewards.char_length
        if repetition_ngram is not None and repetition_ngram < 1:
            raise ValueError(f"repetition_ngram must be >= 1, repetition_ngram: {repetition_ngram}")
        self.repetition_ngram = repetition_ngram
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, max_turns: {max_turns}")
        self.max_turns = max_turns
        self.max_completion_chars = max_completion_chars
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be one of {self.metadata['render_modes']}, "
                f"render_mode: {render_mode!r}"
            )
        self.render_mode = render_mode

        components = ["accuracy", "format", "language", *task.extra_rewards]
        if overlong is not None:
            components.append("overlong")
        if repetition_ngram is not None:
            components.append("repetition")
        self.reward_components: tuple[str, ...] = tuple(components)
        weights = {name: DEFAULT_REWARD_WEIGHTS.get(name, 0.0) for name in components}
        weights.update({k: 1.0 for k in ("overlong", "repetition") if k in components})
        for name, w in dict(reward_weights or {}).items():
            if name not in weights:
                raise ValueError(
                    f"reward_weights names an unknown component, component: {name!r}, "
                    f"known: {list(weights)}"
                )
            if not isinstance(w, (int, float)) or not math.isfinite(w):
                raise ValueError(f"reward weight must be a finite number, {name}: {w!r}")
            weights[name] = float(w)
        self.reward_weights = weights
        if strict is not None and hasattr(task, "strict"):
            task.strict = strict

        self.observation_space = UnicodeText(MAX_OBSERVATION_CHARS)
        self.action_space = UnicodeText(max_completion_chars)
        self._problem: BaseModel | None = None
        self._prompt = ""
        self._turn = 0
        self._last: tuple[str, float] | None = None

    # -- gymnasium API -------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Draw (or pin, with ``options={"problem": {...}}``) a problem and return its prompt.

        Raises:
            ValueError: if a pinned problem is malformed (the message names the bad field).
        """
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"problem"}
        if unknown:
            raise ValueError(f"unknown reset options: {sorted(unknown)}; known: ['problem']")
        if options.get("problem") is not None:
            self._problem = self.task.validate(options["problem"])
        else:
            rng = random.Random(int(self.np_random.integers(0, 2**63 - 1)))
            self._problem = self.task.sample(rng)
        question = self.task.prompt(self._problem)
        template = self.template
        if question.rstrip().endswith((".", "?", "!")):  # "User: {question}. Assistant:"
            template = template.replace("{question}.", "{question}")
        self._prompt = template.replace("{question}", question.rstrip())
        self._turn = 0
        self._last = None
        info = {
            "messages": [
                {"role": "system", "content": self.system_prompt},
                {"role": "user", "content": question},
            ],
            "question": question,
            "problem": self.task.describe(self._problem),
            "output_format": self.output_format,
        }
        if isinstance(self._problem, MixProblem):
            info["family"] = self._problem.family
        return self._prompt, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Grade a completion. Never raises on any completion.

        Returns:
            ``(observation, reward, terminated, truncated, info)``; single-turn episodes
            terminate after one step.
        """
        if self._problem is None:
            raise gym.error.ResetNeeded("Cannot call step() before reset()")
        completion = _sanitize(action)
        self._turn += 1
        values, grade = self._score(completion)
        reward = float(sum(self.reward_weights[k] * v for k, v in values.items()))
        last_turn = self._turn >= self.max_turns
        terminated = bool(grade.correct or last_turn or grade.feedback is None or grade.error)
        observation = "" if terminated else grade.feedback or ""
        info: dict[str, Any] = {
            "rewards": values,
            "correct": bool(grade.correct),
            "extracted_answer": grade.extracted_answer,
            "error": grade.error,
            "turn": self._turn,
        }
        if isinstance(self._problem, MixProblem):
            info["family"] = self._problem.family
        self._last = (completion, reward)
        if self.render_mode == "human":
            self.render()
        return observation, reward, terminated, False, info

    def render(self) -> str | None:
        """The prompt and the last completion with its reward: returned (ansi) or printed (human)."""
        if self.render_mode is None:
            return None
        text = self._prompt
        if self._last is not None:
            completion, reward = self._last
            text += f"\n--- completion ---\n{completion}\n--- reward: {reward:.3f} ---"
        if self.render_mode == "human":
            print(text)
            return None
        return text

    def close(self) -> None:
        """Release the task's resources."""
        self.task.close()
        super().close()

    # -- scoring -----------------------------------------------------------------------

    def _score(self, completion: str) -> tuple[dict[str, float], Grade]:
        values = {name: 0.0 for name in self.reward_components}
        if len(completion) > self.max_completion_chars:
            return values, Grade(correct=False, extracted_answer=None)
        parsed = formats.parse(completion, self.output_format, self.think_prefill)
        values["format"] = 1.0 if parsed.well_formed else 0.0
        values["language"] = rewards.language_consistency(parsed.reasoning, self.language)
        try:
            answer_text = parsed.answer if parsed.well_formed else None
            grade = self.task.grade(completion, self._problem, answer_text)
        except Exception as err:  # the verifier failed, not the answer
            grade = Grade(correct=False, error=f"{type(err).__name__}: {err}")
        score = float(grade.correct) if grade.score is None else float(grade.score)
        values["accuracy"] = score if math.isfinite(score) else 0.0
        for name, v in grade.extra.items():
            if name in values:
                values[name] = float(v) if math.isfinite(v) else 0.0
        if self.overlong is not None:
            values["overlong"] = rewards.overlong_penalty(
                self.length_fn(completion), *self.overlong
            )
        if self.repetition_ngram is not None:
            values["repetition"] = rewards.repetition_penalty(completion, self.repetition_ngram)
        return values, grade
