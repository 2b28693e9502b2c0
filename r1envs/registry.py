"""The task registry: verifiable tasks become Gymnasium ids.

``register_task("r1/MyTask-v0", factory)`` records a task factory (a :class:`~r1envs.core.Task`
subclass, any callable returning a task, or a lazy ``"module:attr"`` string) and registers
the id with Gymnasium, so ``gym.make("r1/MyTask-v0", **kwargs)`` builds a
:class:`~r1envs.core.ReasoningEnv`. ``gym.make`` kwargs that are ReasoningEnv parameters
(``output_format``, ``reward_weights``, ...) configure the env; the rest go to the task
factory (``difficulty``, ``data_files``, ``sandbox`` ...).
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym

from r1envs.core import ReasoningEnv, Task

_ID = re.compile(r"^[A-Za-z0-9_\-.]+/[A-Z][A-Za-z0-9_]*-v\d+$")
_TASKS: dict[str, tuple[Callable[..., Task] | str, dict[str, Any]]] = {}
_ENV_PARAMS = frozenset(inspect.signature(ReasoningEnv.__init__).parameters) - {"self", "task"}

TaskFactory = Callable[..., Task] | str


def _resolve(factory: TaskFactory) -> Callable[..., Task]:
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj
    return factory


def register_task(
    env_id: str,
    factory: TaskFactory,
    *,
    kwargs: Mapping[str, Any] | None = None,
    override: bool = False,
) -> None:
    """Register a verifiable task as a Gymnasium id.

    Args:
        env_id: a versioned id ``namespace/Name-vN``, e.g. ``"r1/Sum-v0"``.
        factory: a Task subclass, a callable returning a Task, or a ``"module:attr"`` string
            resolved when the env is first made.
        kwargs: default kwargs of ``gym.make`` for this id (env and task kwargs alike).
        override: replace an existing registration instead of raising.

    Raises:
        ValueError: if the id is malformed or already registered (and ``override`` is false).
    """
    if not isinstance(env_id, str) or not _ID.match(env_id):
        raise ValueError(f"env_id must look like 'namespace/Name-vN', env_id: {env_id!r}")
    if not (isinstance(factory, str) or callable(factory)):
        raise ValueError(f"factory must be a callable or 'module:attr', factory: {factory!r}")
    if not override and (env_id in _TASKS or env_id in gym.registry):
        raise ValueError(f"env id already registered, env_id: {env_id!r}")
    _TASKS[env_id] = (factory, dict(kwargs or {}))
    gym.register(
        id=env_id,
        entry_point="r1envs.registry:make_env",
        kwargs={"env_id": env_id},
        disable_env_checker=False,
    )


def split_kwargs(kwargs: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``gym.make`` kwargs into (ReasoningEnv kwargs, task kwargs)."""
    env_kwargs = {k: v for k, v in kwargs.items() if k in _ENV_PARAMS}
    task_kwargs = {k: v for k, v in kwargs.items() if k not in _ENV_PARAMS}
    return env_kwargs, task_kwargs


def make_task(env_id: str, **task_kwargs: Any) -> Task:
    """Build the task registered under ``env_id`` (without an env around it).

    Raises:
        ValueError: if ``env_id`` is not registered or a task kwarg is unknown.
    """
    if env_id not in _TASKS:
        raise ValueError(f"unknown task id, env_id: {env_id!r}; known: {list_envs()}")
    factory, defaults = _TASKS[env_id]
    _, default_task = split_kwargs(defaults)
    fn = _resolve(factory)
    merged = {**default_task, **task_kwargs}
    try:
        return fn(**merged)
    except TypeError as err:
        raise ValueError(f"bad kwargs for {env_id}: {err}; kwargs: {sorted(merged)}") from None


def make_env(env_id: str, **kwargs: Any) -> ReasoningEnv:
    """Build the env registered under ``env_id`` (the entry point ``gym.make`` calls)."""
    if env_id not in _TASKS:
        raise ValueError(f"unknown task id, env_id: {env_id!r}; known: {list_envs()}")
    _, defaults = _TASKS[env_id]
    env_kwargs, task_kwargs = split_kwargs({**defaults, **kwargs})
    task = make_task(env_id, **task_kwargs)
    return ReasoningEnv(task, **env_kwargs)


def list_envs(namespace: str | None = None) -> list[str]:
    """The registered task ids, sorted; optionally only those of ``namespace``."""
    return sorted(i for i in _TASKS if namespace is None or i.startswith(namespace + "/"))


def unregister_task(env_id: str) -> None:
    """Remove a registration (mainly for tests and notebooks)."""
    _TASKS.pop(env_id, None)
    gym.registry.pop(env_id, None)
