"""A Gymnasium env for general (non-reasoning) prompts, scored by judges (stage 4).

:class:`ChatEnv` serves a prompt from a ``{"prompt", ...}`` JSONL set; its reward is a
weighted sum of a helpfulness judge's score of the summary (the text after the reasoning)
and a harmlessness judge's score of the whole response. Judges are loaded once per spec
(:func:`cached_judge`); :meth:`ChatEnv.step_many` scores a batch of envs with one ``score``
call per judge (the rollout's grading pool steps them so). :func:`register_chat_env`
registers it as ``r1agent/Chat-v0``; importing this module does so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym

from r1agent.data.general import GENERAL_TEMPLATE, general_examples
from r1agent.rewards.judges import load_judge
from r1envs import formats
from r1envs.spaces import UnicodeText

__all__ = ["CHAT_ENV_ID", "GENERAL_TEMPLATE", "ChatEnv", "cached_judge", "register_chat_env"]


CHAT_ENV_ID = "r1agent/Chat-v0"


def summary_part(text: str) -> str:
    """The summary (answer) part of a response: after the reasoning block when there is one."""
    for end in (formats.REASONING_END, formats.THINK_END):
        k = text.rfind(end)
        if k >= 0:
            return text[k + len(end) :].strip()
    return text.strip()


_JUDGES: dict[str, Any] = {}


def cached_judge(spec: str) -> Any:
    """Load a judge once per process (envs are made many times)."""
    if spec not in _JUDGES:
        _JUDGES[spec] = load_judge(spec)
    return _JUDGES[spec]


class ChatEnv(gym.Env[str, str]):
    """General prompts scored by model rewards (stage 4's non-reasoning scenarios).

    Reward = ``helpfulness_weight * helpfulness(prompt, summary)`` +
    ``harmlessness_weight * harmlessness(prompt, whole response)``. ``info["correct"]`` is
    ``False`` (no rule checks these answers); ``info["rewards"]`` holds both components.

    Args:
        helpfulness: judge spec (``rm:PATH``, ``lm:PATH``, endpoint URL) for the summary.
        harmlessness: judge spec for the whole response (defaults to ``helpfulness``).
        data: ``{"prompt", "answer"}`` JSONL of general prompts (default: the shipped set).
        helpfulness_weight: weight of the helpfulness score.
        harmlessness_weight: weight of the harmlessness score.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        helpfulness: str,
        harmlessness: str | None = None,
        data: str | None = None,
        helpfulness_weight: float = 1.0,
        harmlessness_weight: float = 0.5,
    ) -> None:

        self.prompts = [e.prompt for e in general_examples(data)]
        self.help_judge = cached_judge(helpfulness)
        self.harm_judge = cached_judge(harmlessness or helpfulness)
        self.weights = (helpfulness_weight, harmlessness_weight)
        self.observation_space = UnicodeText(1 << 16)
        self.action_space = UnicodeText(1 << 20)
        self._question = ""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Draw a general prompt."""
        super().reset(seed=seed)
        prompt = self.prompts[int(self.np_random.integers(len(self.prompts)))]
        self._question = prompt[len("User: ") : -len("\nAssistant:")]
        return prompt, {"messages": [{"role": "user", "content": self._question}]}

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Score the response with the two judges."""
        return type(self).step_many([self], [action])[0]

    @classmethod
    def step_many(
        cls, envs: Sequence[ChatEnv], actions: Sequence[str]
    ) -> list[tuple[str, float, bool, bool, dict[str, Any]]]:
        """Step several envs at once: each judge scores all of them in one ``score`` call
        (one per pair of judges in use), as a batch. Same results as stepping each env."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, env in enumerate(envs):
            groups.setdefault((id(env.help_judge), id(env.harm_judge)), []).append(i)
        out: list[Any] = [None] * len(envs)
        for idx in groups.values():
            first = envs[idx[0]]
            questions = [envs[i]._question for i in idx]
            helpful = first.help_judge.score(questions, [summary_part(actions[i]) for i in idx])
            harmless = first.harm_judge.score(questions, [actions[i] for i in idx])
            for i, h, s in zip(idx, helpful, harmless, strict=True):
                out[i] = envs[i]._result(h, s)
        return out

    def _result(
        self, h: float | None, s: float | None
    ) -> tuple[str, float, bool, bool, dict[str, Any]]:
        error = None if h is not None and s is not None else "judge could not score"
        values = {"helpfulness": float(h or 0.0), "harmlessness": float(s or 0.0)}
        reward = self.weights[0] * values["helpfulness"] + self.weights[1] * values["harmlessness"]
        info = {"rewards": values, "correct": False, "extracted_answer": None, "error": error}
        return "", float(reward), True, False, info


def register_chat_env() -> None:
    """Register :class:`ChatEnv` as ``r1agent/Chat-v0`` (idempotent)."""
    if CHAT_ENV_ID not in gym.registry:
        gym.register(CHAT_ENV_ID, entry_point="r1agent.rewards.chat_env:ChatEnv")


register_chat_env()
