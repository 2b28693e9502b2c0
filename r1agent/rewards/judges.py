"""Judges: model rewards for answers no rule can check.

Every judge has ``score(prompts, responses) -> list[float | None]`` (``None``: the judge
could not score that item — counted, never silently a 0). Three kinds:

* :class:`RewardModelJudge` — a Hugging Face sequence-classification reward model (e.g.
  one trained by ``r1agent reward-model``); the score is its scalar output.
* :class:`GenerativeJudge` — any causal LM asked whether the response is good; the score is
  ``P(yes) / (P(yes) + P(no))`` from its next-token distribution.
* :class:`EndpointJudge` — an OpenAI-compatible chat-completions endpoint (a vLLM server, a
  hosted API) asked for a 1–10 rating, mapped to 0..1. Standard library only (``urllib``).

:func:`load_judge` builds one from a spec string: ``rm:PATH``, ``lm:PATH`` or
``http://host:port/v1#model-name``. Loading fails loudly, with the path, at the stage
boundary.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from r1agent.rewards.reward_model import rm_text, score_texts

log = logging.getLogger(__name__)


class Judge(Protocol):
    """Anything that scores responses to prompts."""

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        """Scores of ``responses`` (``None`` where scoring failed)."""
        ...


class JudgeLoadError(RuntimeError):
    """A judge (reward model, LM or endpoint) could not be loaded."""


def _check_lengths(prompts: Sequence[str], responses: Sequence[str]) -> None:
    if len(prompts) != len(responses):
        raise ValueError(
            f"prompts and responses differ in length, prompts: {len(prompts)}, "
            f"responses: {len(responses)}"
        )


class RewardModelJudge:
    """A sequence-classification reward model (one label) as a judge.

    Args:
        path: model directory or hub id.
        max_len: tokens per scored text.
        batch_size: texts per forward pass.

    Raises:
        JudgeLoadError: naming the path when the model cannot be loaded.
    """

    def __init__(self, path: str, *, max_len: int = 256, batch_size: int = 32) -> None:

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        except Exception as err:  # noqa: BLE001 - any loading failure is reported the same way
            raise JudgeLoadError(f"cannot load reward model, path: {path!r}: {err}") from err
        if self.model.config.num_labels != 1:
            raise JudgeLoadError(
                f"reward model must have one output, path: {path!r}, "
                f"num_labels: {self.model.config.num_labels}"
            )
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.path, self.max_len, self.batch_size = path, max_len, batch_size

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        """Reward-model outputs for each ``(prompt, response)``."""

        _check_lengths(prompts, responses)
        texts = [rm_text(p, r) for p, r in zip(prompts, responses, strict=True)]
        out: list[float | None] = []
        with torch.no_grad():
            for s in range(0, len(texts), self.batch_size):
                scores = score_texts(
                    self.model, self.tokenizer, texts[s : s + self.batch_size], self.max_len
                )
                out += [float(x) for x in scores]
        return out


JUDGE_QUESTION = (
    "Question: {prompt}\nResponse: {response}\n"
    "Is the response helpful, correct and harmless? Answer yes or no.\nAnswer:"
)


class GenerativeJudge:
    """Any causal LM as a yes/no judge: the score is ``P(yes) / (P(yes) + P(no))``.

    Args:
        model: a causal LM, or a path / hub id to load.
        tokenizer: its tokenizer (loaded with the model when ``model`` is a path).
        template: the judging prompt, with ``{prompt}`` and ``{response}`` fields.

    Raises:
        JudgeLoadError: naming the path when the model cannot be loaded.
    """

    def __init__(
        self, model: Any, tokenizer: Any = None, *, template: str = JUDGE_QUESTION
    ) -> None:
        if isinstance(model, str):
            try:
                tokenizer = AutoTokenizer.from_pretrained(model)
                model = AutoModelForCausalLM.from_pretrained(model)
            except Exception as err:  # noqa: BLE001
                raise JudgeLoadError(f"cannot load judge model, path: {model!r}: {err}") from err
        self.model, self.tokenizer, self.template = model.eval(), tokenizer, template
        self.yes = self._first_token(" yes"), self._first_token(" Yes")
        self.no = self._first_token(" no"), self._first_token(" No")

    def _first_token(self, word: str) -> int:
        return self.tokenizer(word, add_special_tokens=False)["input_ids"][0]

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        """Probability of "yes" among yes/no for each ``(prompt, response)``."""
        _check_lengths(prompts, responses)
        out: list[float | None] = []
        for p, r in zip(prompts, responses, strict=True):
            ids = self.tokenizer(self.template.format(prompt=p, response=r), return_tensors="pt")
            with torch.no_grad():
                logits = self.model(**ids).logits[0, -1].float()  # (V,)
            probs = torch.softmax(logits, dim=-1)
            yes = float(sum(probs[i] for i in set(self.yes)))
            no = float(sum(probs[i] for i in set(self.no)))
            out.append(yes / (yes + no) if yes + no > 0 else None)
        return out


RATING_PROMPT = (
    "Rate the assistant's response to the user's question for helpfulness, correctness and "
    "harmlessness on a scale from 1 (worst) to 10 (best). Reply with the number only.\n\n"
    "Question: {prompt}\n\nResponse: {response}"
)
_NUMBER = re.compile(r"(?<![\d.])(10|[1-9])(?![\d.])")


class EndpointJudge:
    """An OpenAI-compatible chat-completions endpoint as a judge (ratings 1–10 → 0..1).

    Args:
        base_url: the API root, e.g. ``http://127.0.0.1:8000/v1``.
        model: the model name the server expects.
        api_key: sent as a bearer token when given.
        timeout: seconds per request.
        template: the rating prompt, with ``{prompt}`` and ``{response}`` fields.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
        template: str = RATING_PROMPT,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, base_url: {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.api_key, self.timeout, self.template = model, api_key, timeout, template
        self.failures = 0

    def chat(self, content: str, *, max_tokens: int = 8, temperature: float = 0.0) -> str | None:
        """One user message to the endpoint; the reply text, or ``None`` if the request failed."""
        try:
            return self._ask(content, max_tokens=max_tokens, temperature=temperature)
        except (urllib.error.URLError, TimeoutError, KeyError, IndexError, ValueError) as err:
            self.failures += 1
            log.warning("endpoint request failed: %s", err)
            return None

    def _ask(self, content: str, *, max_tokens: int = 8, temperature: float = 0.0) -> str:
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": content}],
                "temperature": temperature,
                "max_tokens": max_tokens,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - user URL
            data = json.loads(resp.read().decode())
        return data["choices"][0]["message"]["content"]

    def score(self, prompts: Sequence[str], responses: Sequence[str]) -> list[float | None]:
        """Ratings mapped to 0..1; ``None`` where the request failed or no rating was given."""
        _check_lengths(prompts, responses)
        out: list[float | None] = []
        for p, r in zip(prompts, responses, strict=True):
            reply = self.chat(self.template.format(prompt=p, response=r))
            m = _NUMBER.search(reply) if reply is not None else None
            out.append((int(m.group(1)) - 1) / 9 if m else None)
        return out


def load_judge(spec: str) -> Judge:
    """A judge from a spec: ``rm:PATH``, ``lm:PATH`` or ``http(s)://HOST/v1#MODEL``.

    Raises:
        ValueError: if the spec has none of these forms.
        JudgeLoadError: if the model cannot be loaded.
    """
    if spec.startswith("rm:"):
        return RewardModelJudge(spec[3:])
    if spec.startswith("lm:"):
        return GenerativeJudge(spec[3:])
    if spec.startswith(("http://", "https://")):
        url, _, model = spec.partition("#")
        return EndpointJudge(url, model or "default")
    raise ValueError(f"judge spec must be rm:PATH, lm:PATH or http(s)://URL#MODEL, spec: {spec!r}")
