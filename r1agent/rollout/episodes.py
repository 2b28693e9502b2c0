"""Episodes: groups of rollouts on Gymnasium text envs, with their rewards.

:func:`collect_episodes` resets one env per problem, samples ``group_size`` completions per
prompt with a rollout engine (any :data:`r1agent.rollout.engine.GenerateFn`), steps the env
with each (multi-turn envs answer with an observation, appended as the next user turn)
and records reward components, correctness and infrastructure errors per
:class:`Episode`. The envs of a turn are stepped concurrently, each within a time limit,
by the pool's :class:`~r1agent.rollout.grading.Grader`. :class:`EnvPool` reuses env instances; :func:`make_env` makes one env
with the ``r1`` ids registered.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

import r1envs  # noqa: F401  (registers the r1 ids)
from r1agent.rollout.engine import Completion, encode_prompts
from r1agent.rollout.grading import DEFAULT_TIMEOUT, Grader, Job, Outcome
from r1agent.rollout.transformers_engine import generate

__all__ = [
    "EnvPool",
    "Episode",
    "RewardFn",
    "collect_episodes",
    "make_env",
    "render_prompt",
]


#: ``reward_fn(prompts, completions, infos) -> list[float | None]``: an extra reward added
#: to the env reward (``None``: not applicable, adds nothing). ``prompts`` are the rendered
#: first-turn prompts, ``completions`` the policy's texts (turns joined), ``infos`` the
#: env's last ``info`` per episode (includes ``env_id``).
RewardFn = Callable[[list[str], list[str], list[dict[str, Any]]], Sequence[float | None]]


@dataclass
class Episode:
    """One episode: a prompt, the policy's turns and the env's replies, with its reward.

    ``response_ids`` holds every token after the prompt (policy turns and env turns);
    ``loss_mask`` is 1 on policy tokens, 0 on env tokens; ``gen_logprobs`` are the engine's
    log-probs (0 on env tokens).
    """

    group: int
    env_id: str
    seed: int
    prompt: str
    prompt_ids: list[int]
    messages: list[dict[str, str]] = field(default_factory=list)
    response_ids: list[int] = field(default_factory=list)
    loss_mask: list[float] = field(default_factory=list)
    gen_logprobs: list[float] = field(default_factory=list)
    completions: list[str] = field(default_factory=list)
    reward: float = 0.0
    components: dict[str, float] = field(default_factory=dict)
    correct: bool = False
    error: str | None = None
    truncated: bool = False
    done: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    env: Any = None
    policy_version: int = 0  # steps the sampling weights had taken (the trainer sets it)

    @property
    def text(self) -> str:
        """The policy's completions joined (what a reward model would read)."""
        return "\n".join(self.completions)


class EnvPool:
    """Env instances per id, reused across episodes (one is held per live multi-turn episode).

    Args:
        kwargs: ``gym.make`` kwargs per env id.
    """

    def __init__(self, kwargs: dict[str, dict[str, Any]] | None = None) -> None:
        self.kwargs = kwargs or {}
        self._free: dict[str, list[Any]] = {}
        self._grader: Grader | None = None

    def grader(
        self, workers: int | None = None, timeout: float = DEFAULT_TIMEOUT, pool: str = "auto"
    ) -> Grader:
        """The pool's :class:`~r1agent.rollout.grading.Grader` with these settings (kept
        across batches, so worker processes start once)."""
        if self._grader is None:
            self._grader = Grader(
                self.acquire, self.kwargs, workers=workers, timeout=timeout, pool=pool
            )
        else:
            self._grader.configure(workers, timeout, pool)
        return self._grader

    def acquire(self, env_id: str) -> Any:
        """A free env for ``env_id`` (made when none is free)."""
        free = self._free.setdefault(env_id, [])
        return free.pop() if free else gym.make(env_id, **self.kwargs.get(env_id, {}))

    def release(self, env_id: str, env: Any, *, broken: bool = False) -> None:
        """Give an env back (a broken one is closed instead)."""
        if broken:
            with contextlib.suppress(Exception):
                env.close()
        else:
            self._free.setdefault(env_id, []).append(env)

    def close(self) -> None:
        """Close every pooled env (and stop grading worker processes)."""
        if self._grader is not None:
            self._grader.close()
        for envs in self._free.values():
            for env in envs:
                with contextlib.suppress(Exception):
                    env.close()
        self._free.clear()


def render_prompt(
    tokenizer: Any, observation: str, info: dict[str, Any], prompt_format: str
) -> str:
    """The first-turn prompt: the observation, or ``info["messages"]`` via the chat template."""
    if prompt_format == "observation":
        return observation
    if prompt_format == "chat":
        msgs = info.get("messages") or [{"role": "user", "content": observation}]
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    raise ValueError(
        f"prompt_format must be 'observation' or 'chat', prompt_format: {prompt_format!r}"
    )


def _next_turn_text(
    tokenizer: Any, ep: Episode, completion: str, obs: str, prompt_format: str
) -> str:
    """Text appended after a policy turn when the env replies (a user turn in chat format)."""
    if prompt_format != "chat":
        return obs
    before = [*ep.messages, {"role": "assistant", "content": completion}]
    after = [*before, {"role": "user", "content": obs}]
    prev = tokenizer.apply_chat_template(before, tokenize=False)
    full = tokenizer.apply_chat_template(after, tokenize=False, add_generation_prompt=True)
    ep.messages = after
    return full[len(prev) :] if full.startswith(prev) else obs


def _record_step(ep: Episode, outcome: Outcome) -> tuple[str, bool]:
    """Record a graded step (reward, components, failure); returns ``(observation, finished)``."""
    ep.env = None if outcome.abandoned else outcome.env
    if outcome.error is not None or outcome.result is None:
        ep.error = outcome.error or "not graded"
        return "", True
    obs, reward, terminated, truncated, info = outcome.result
    try:
        reward = float(reward)
    except (TypeError, ValueError) as exc:
        ep.error = f"{type(exc).__name__}: {exc}"
        return "", True
    ep.info = dict(info)
    if info.get("error"):
        ep.error = str(info["error"])
    elif not math.isfinite(reward):
        ep.error = f"non-finite reward: {reward}"
    ep.reward += reward
    for k, v in (info.get("rewards") or {}).items():
        ep.components[k] = ep.components.get(k, 0.0) + float(v)
    ep.correct = bool(info.get("correct", False))
    return str(obs), bool(terminated or truncated) or ep.error is not None


def _after_step(
    tokenizer: Any,
    pool: EnvPool,
    ep: Episode,
    completion: str,
    outcome: Outcome,
    last: bool,
    prompt_format: str,
) -> None:
    """Record a graded turn: finish the episode (env back to the pool, a broken one closed)
    or append the env's reply as the next, masked, user turn."""
    obs, finished = _record_step(ep, outcome)
    if finished or last:
        ep.done = True
        if ep.env is not None:
            pool.release(ep.env_id, ep.env, broken=ep.error is not None)
            ep.env = None
        return
    turn_ids = encode_prompts(
        tokenizer, [_next_turn_text(tokenizer, ep, completion, obs, prompt_format)]
    )[0]
    ep.response_ids += turn_ids
    ep.loss_mask += [0.0] * len(turn_ids)
    ep.gen_logprobs += [0.0] * len(turn_ids)


def _failed_episode(
    group: int, env_id: str, env_seed: int, tokenizer: Any, exc: Exception
) -> Episode:
    """A finished, masked episode for a problem whose ``reset`` raised (one masked token)."""
    eos = [tokenizer.eos_token_id]
    return Episode(
        group,
        env_id,
        env_seed,
        "",
        eos,
        [],
        response_ids=list(eos),
        loss_mask=[0.0],
        gen_logprobs=[0.0],
        completions=[""],
        error=f"reset: {type(exc).__name__}: {exc}",
        done=True,
    )


def collect_episodes(
    model: Any,
    tokenizer: Any,
    pool: EnvPool,
    problems: Sequence[tuple[str, int]],
    *,
    group_size: int,
    prompt_format: str,
    max_new_tokens: int,
    max_turns: int = 1,
    temperature: float = 1.0,
    top_p: float = 1.0,
    min_new_tokens: int = 0,
    seed: int | None = None,
    batch_size: int = 64,
    reward_fn: RewardFn | None = None,
    generate_fn: Callable[..., list[Completion]] | None = None,
    grading_workers: int | None = None,
    grading_timeout: float = DEFAULT_TIMEOUT,
    grading_pool: str = "auto",
) -> list[Episode]:
    """Run ``group_size`` episodes on each ``(env_id, env_seed)`` problem.

    Every turn of every live episode is sampled in one batched call; an env that does not
    terminate answers with an observation, appended as the next user turn (masked from the
    loss). Env failures (exception, ``info["error"]``, non-finite reward) end the episode
    with ``error`` set. Groups are contiguous in the returned list.

    The envs of a turn are graded concurrently (:mod:`r1agent.rollout.grading`):
    ``grading_workers`` threads or processes (``None``: sized to the CPUs; 0: one after
    another, without a time limit), ``grading_pool`` ``"auto"``/``"thread"``/``"process"``;
    a step that takes over ``grading_timeout`` seconds fails its episode only.

    Raises:
        ValueError: for bad grading settings (naming the value).
    """
    gen = generate_fn or generate
    grader = pool.grader(grading_workers, grading_timeout, grading_pool)
    episodes = _start_episodes(tokenizer, pool, problems, group_size, prompt_format)
    live = [ep for ep in episodes if not ep.done]
    for turn in range(max_turns):
        if not live:
            break
        outs = gen(
            model,
            tokenizer,
            [ep.prompt_ids + ep.response_ids for ep in live],
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            min_new_tokens=min_new_tokens,
            seed=None if seed is None else seed + 7919 * turn,
            batch_size=batch_size,
        )
        for ep, out in zip(live, outs, strict=True):
            ep.response_ids += out.completion_ids
            ep.loss_mask += [1.0] * len(out.completion_ids)
            ep.gen_logprobs += out.logprobs or [0.0] * len(out.completion_ids)
            ep.completions.append(out.text)
            ep.truncated = out.truncated
        graded = grader.grade(
            [Job(ep.env_id, ep.seed, list(ep.completions), ep.env) for ep in live]
        )
        for ep, out, outcome in zip(live, outs, graded, strict=True):
            last = turn == max_turns - 1
            _after_step(tokenizer, pool, ep, out.text, outcome, last, prompt_format)
        live = [ep for ep in live if not ep.done]
        if not live:
            break
    if reward_fn is not None:
        _add_extra_reward(episodes, reward_fn)
    return episodes


def _start_episodes(
    tokenizer: Any,
    pool: EnvPool,
    problems: Sequence[tuple[str, int]],
    group_size: int,
    prompt_format: str,
) -> list[Episode]:
    """Reset one env per problem; ``group_size`` fresh episodes on its prompt (a failing
    reset gives a group of finished, masked episodes)."""
    episodes: list[Episode] = []
    for g, (env_id, env_seed) in enumerate(problems):
        try:
            env = pool.acquire(env_id)
            try:
                obs, info = env.reset(seed=env_seed)
            finally:
                pool.release(env_id, env)
        except Exception as exc:  # a failing reset masks the group, training goes on
            episodes += [
                _failed_episode(g, env_id, env_seed, tokenizer, exc) for _ in range(group_size)
            ]
            continue
        prompt = render_prompt(tokenizer, obs, info, prompt_format)
        ids = encode_prompts(tokenizer, [prompt])[0]
        msgs = list(info.get("messages") or [{"role": "user", "content": obs}])
        episodes += [
            Episode(g, env_id, env_seed, prompt, ids, list(msgs)) for _ in range(group_size)
        ]
    return episodes


def _add_extra_reward(episodes: Sequence[Episode], reward_fn: RewardFn) -> None:
    """Add ``reward_fn``'s rewards (``rewards/custom``); a non-finite one fails the episode."""
    extra = reward_fn(
        [ep.prompt for ep in episodes],
        [ep.text for ep in episodes],
        [{**ep.info, "env_id": ep.env_id} for ep in episodes],
    )
    for ep, x in zip(episodes, extra, strict=True):
        if x is None:
            continue
        if not math.isfinite(float(x)):
            ep.error = ep.error or f"reward_fn returned {x}"
            continue
        ep.reward += float(x)
        ep.components["custom"] = ep.components.get("custom", 0.0) + float(x)


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Any:
    """One env: ``gym.make(env_id, **env_kwargs)`` (the ``r1/`` ids are registered)."""
    return gym.make(env_id, **(env_kwargs or {}))
