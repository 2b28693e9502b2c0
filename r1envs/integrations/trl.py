"""Train with TRL's ``GRPOTrainer`` on any r1envs id, unchanged.

Two functions bridge the Gymnasium API to TRL's data-set-plus-reward-function API::

    from trl import GRPOConfig, GRPOTrainer
    from r1envs.integrations.trl import prompt_dataset, reward_function

    dataset = prompt_dataset("r1/Math-v0", n=500, seed=0)         # "prompt" + r1_* columns
    trainer = GRPOTrainer(model=..., reward_funcs=[reward_function("r1/Math-v0")],
                          train_dataset=dataset, args=GRPOConfig(...))

* :func:`prompt_dataset` resets the env with seeds ``seed .. seed + n - 1`` and stores each
  problem: ``prompt`` (the chat messages of ``info["messages"]``, or the plain templated
  prompt with ``chat=False``), ``r1_env_id``, ``r1_problem`` (the problem as a JSON string)
  and ``r1_seed``.
* :func:`reward_function` grades through the env itself, so there is one source of truth:
  for each row it calls ``reset(options={"problem": ...})`` then ``step(completion)`` and
  returns the env's reward. It returns ``None`` (TRL: "not applicable") for rows of another
  env id, rows without the ``r1_*`` columns, and completions whose grading failed
  (``info["error"]``), and logs the share of correct answers through TRL's ``log_metric``
  as ``<env id>/correct`` (e.g. ``r1/Math-v0/correct``) next to ``rewards/<env id>/mean``.

Envs are built once per process and cached by id and make kwargs. Pass the same make
kwargs (``output_format``, ``reward_weights``...) to both functions.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium as gym

from r1envs.core import ReasoningEnv

logger = logging.getLogger(__name__)

ENV_ID_COLUMN = "r1_env_id"
PROBLEM_COLUMN = "r1_problem"
SEED_COLUMN = "r1_seed"

_ENVS: dict[tuple[str, str], tuple[ReasoningEnv, threading.Lock]] = {}
_ENVS_LOCK = threading.Lock()


def _cache_key(env_id: str, make_kwargs: Mapping[str, Any]) -> tuple[str, str]:
    return env_id, repr(sorted(make_kwargs.items()))


def cached_env(env_id: str, **make_kwargs: Any) -> tuple[ReasoningEnv, threading.Lock]:
    """The process-wide env for ``env_id`` and these make kwargs, with a lock guarding it."""
    key = _cache_key(env_id, make_kwargs)
    with _ENVS_LOCK:
        if key not in _ENVS:
            import r1envs  # noqa: F401  (registers the ids)

            env = gym.make(env_id, disable_env_checker=True, **make_kwargs).unwrapped
            if not isinstance(env, ReasoningEnv):
                raise ValueError(f"env_id must name an r1envs task env, env_id: {env_id!r}")
            _ENVS[key] = (env, threading.Lock())
        return _ENVS[key]


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """The text of a completion: a string, or the assistant messages of a chat completion."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        if message.get("role", "assistant") != "assistant":
            continue
        content = message.get("content", "")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        parts.append(str(content))
    return "".join(parts)


class EnvReward:
    """A TRL reward function that grades completions through an r1envs env.

    Args:
        env_id: the env whose rows this function grades.
        component: return this reward component (e.g. ``"accuracy"``) instead of the
            weighted total.
        **make_kwargs: ``gym.make`` kwargs of the env.
    """

    def __init__(self, env_id: str, component: str | None = None, **make_kwargs: Any) -> None:
        self.env_id = env_id
        self.component = component
        self.make_kwargs = make_kwargs
        suffix = f"/{component}" if component else ""
        self.__name__ = f"{env_id}{suffix}"  # TRL logs rewards/<name>/mean
        env, _ = cached_env(env_id, **make_kwargs)  # fail early on a bad id or kwargs
        if component is not None and component not in env.reward_components:
            raise ValueError(
                f"component must be one of {list(env.reward_components)}, component: {component!r}"
            )

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any
    ) -> list[float | None]:
        """Grade each completion of its row's problem; ``None`` where it does not apply."""
        ids = kwargs.get(ENV_ID_COLUMN)
        problems = kwargs.get(PROBLEM_COLUMN)
        if ids is None or problems is None:
            return [None] * len(completions)
        env, lock = cached_env(self.env_id, **self.make_kwargs)
        rewards: list[float | None] = []
        correct: list[bool] = []
        for completion, row_id, problem in zip(completions, ids, problems, strict=True):
            if row_id != self.env_id:
                rewards.append(None)
                continue
            with lock:
                env.reset(options={"problem": json.loads(problem)})
                _, reward, _, _, info = env.step(completion_text(completion))
            if info["error"] is not None:
                logger.warning("%s: grading failed: %s", self.env_id, info["error"])
                rewards.append(None)
                continue
            rewards.append(float(info["rewards"][self.component]) if self.component else reward)
            correct.append(bool(info["correct"]))
        log_metric: Callable[[str, float], None] | None = kwargs.get("log_metric")
        if log_metric is not None and correct and self.component is None:
            log_metric(f"{self.env_id}/correct", sum(correct) / len(correct))
        return rewards


def reward_function(env_id: str, component: str | None = None, **make_kwargs: Any) -> EnvReward:
    """A TRL GRPO reward function ``f(prompts, completions, **kwargs) -> list[float | None]``.

    It reads the ``r1_env_id`` and ``r1_problem`` columns of :func:`prompt_dataset` rows,
    which TRL passes as kwargs, and grades through ``env.reset(options={"problem": ...})``
    and ``env.step(completion)``. Completions may be strings or chat message lists.

    Args:
        env_id: the r1envs id, e.g. ``"r1/Math-v0"``.
        component: return one reward component (``"accuracy"``, ``"format"``...) instead
            of the env's weighted reward (useful as separate TRL reward functions).
        **make_kwargs: ``gym.make`` kwargs (output format, reward weights, task kwargs).

    Raises:
        ValueError: for an unknown id, bad make kwargs or an unknown component.
    """
    return EnvReward(env_id, component, **make_kwargs)


def prompt_rows(
    env_id: str, n: int, seed: int = 0, *, chat: bool = True, **make_kwargs: Any
) -> list[dict[str, Any]]:
    """The rows of :func:`prompt_dataset` as plain dicts (no ``datasets`` needed)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, n: {n}")
    env, lock = cached_env(env_id, **make_kwargs)
    rows = []
    with lock:
        for s in range(seed, seed + n):
            prompt, info = env.reset(seed=s)
            rows.append(
                {
                    "prompt": info["messages"] if chat else prompt,
                    ENV_ID_COLUMN: env_id,
                    PROBLEM_COLUMN: json.dumps(info["problem"], ensure_ascii=False),
                    SEED_COLUMN: s,
                }
            )
    return rows


def prompt_dataset(
    env_id: str, n: int, seed: int = 0, *, chat: bool = True, **make_kwargs: Any
) -> Any:
    """A ``datasets.Dataset`` of ``n`` problems of ``env_id`` for TRL trainers.

    Args:
        env_id: the r1envs id.
        n: number of rows (problems drawn with seeds ``seed .. seed + n - 1``; a finite
            problem set repeats problems when ``n`` exceeds its size).
        seed: the first seed.
        chat: ``prompt`` as chat messages (system + user, for the tokenizer's chat template)
            or, with ``False``, the plain prompt string with the format's template.
        **make_kwargs: ``gym.make`` kwargs; use the same for :func:`reward_function`.

    Returns:
        A Dataset with columns ``prompt``, ``r1_env_id``, ``r1_problem`` (JSON), ``r1_seed``.

    Raises:
        ValueError: if ``datasets`` is not installed or ``n < 1``.
    """
    try:
        from datasets import Dataset
    except ImportError:
        raise ValueError(
            "prompt_dataset needs the 'datasets' package: pip install 'r1[trl]'"
        ) from None
    return Dataset.from_list(prompt_rows(env_id, n, seed, chat=chat, **make_kwargs))
