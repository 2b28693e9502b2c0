"""Rollouts: generation engines behind one interface, and episodes on Gymnasium envs.

* :mod:`~r1agent.rollout.engine` — the interface (:class:`Completion`, ``GenerateFn``);
* :mod:`~r1agent.rollout.transformers_engine` — :func:`generate`, batched KV-cache
  sampling with the Hugging Face forward or the CPU accelerator;
* :mod:`~r1agent.rollout.vllm_engine` — :class:`VLLMEngine` (optional ``vllm``);
* :mod:`~r1agent.rollout.episodes` — :func:`collect_episodes`, :class:`EnvPool`.

The names of the earlier ``r1agent/rollout.py`` module are re-exported here.
"""

from r1agent.rollout.engine import Completion, GenerateFn, encode_prompts, eos_token_ids
from r1agent.rollout.episodes import (
    EnvPool,
    Episode,
    RewardFn,
    collect_episodes,
    make_env,
    render_prompt,
)
from r1agent.rollout.transformers_engine import generate, sample_tokens

__all__ = [
    "Completion",
    "EnvPool",
    "Episode",
    "GenerateFn",
    "RewardFn",
    "collect_episodes",
    "encode_prompts",
    "eos_token_ids",
    "generate",
    "make_env",
    "render_prompt",
    "sample_tokens",
]
