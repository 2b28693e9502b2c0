"""r1envs: verifiable reasoning environments for RL on language models.

``import r1envs`` registers the built-in task ids in the ``r1`` namespace::

    import gymnasium as gym
    import r1envs

    env = gym.make("r1/Math-v0")
    prompt, info = env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step("<think>...</think> <answer>42</answer>")
"""

from __future__ import annotations

from r1envs.core import Grade, MixTask, ReasoningEnv, Task
from r1envs.registry import list_envs, make_task, register_task, unregister_task

__all__ = [
    "Grade",
    "MixTask",
    "ReasoningEnv",
    "Task",
    "list_envs",
    "make_task",
    "register_task",
    "unregister_task",
]

from r1envs import builtin as _builtin  # noqa: E402  (registers the built-in ids)

_builtin.register_all()
