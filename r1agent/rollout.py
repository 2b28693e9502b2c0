"""Batched sampling from a causal LM with a KV cache (the default rollout engine).

:func:`generate` is the one entry point used by the trainer, evaluation, rejection
sampling and distillation. It left-pads a batch of prompts, pre-fills the KV cache once,
then decodes one token per step for the whole batch, tracking end-of-sequence per row
(finished rows get the pad token and stop counting). Prompts are sorted by length and
batched in chunks of ``batch_size`` so padding stays small; results come back in the
order given. Sampling uses a seeded ``torch.Generator`` when ``seed`` is set, so runs are
reproducible; the log-probability of each sampled token under the temperature-scaled
distribution is returned (the trainer compares it with its own to measure engine/trainer
mismatch).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from r1agent import fastlm
from r1agent.models import cpu_threads, small_model_threads

__all__ = [
    "Completion",
    "EnvPool",
    "Episode",
    "RewardFn",
    "collect_episodes",
    "encode_prompts",
    "eos_token_ids",
    "generate",
    "render_prompt",
    "sample_tokens",
]


@dataclass
class Completion:
    """One sampled completion.

    Attributes:
        prompt_ids: the prompt's token ids (unpadded).
        completion_ids: generated ids, including the final eos token when one was produced.
        text: the completion decoded without eos/pad tokens (other added tokens kept).
        logprobs: per ``completion_ids`` token, log-probability under the sampling
            distribution (temperature applied, before top-p), or ``None``.
        truncated: ``True`` when ``max_new_tokens`` was reached without an eos token.
    """

    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    logprobs: list[float] | None
    truncated: bool


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """All ids that end a completion: the tokenizer's eos plus the generation config's."""
    ids = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos is not None:
        ids.update(gen_eos)
    return sorted(i for i in ids if i is not None)


def encode_prompts(
    tokenizer: Any, prompts: Sequence[str] | Sequence[Sequence[int]]
) -> list[list[int]]:
    """Token ids of each prompt (lists of ids pass through).

    A string already starting with the tokenizer's bos token (a rendered chat template) is
    encoded without adding special tokens again.
    """
    out: list[list[int]] = []
    bos = tokenizer.bos_token
    for p in prompts:
        if isinstance(p, str):
            add = not (bos and p.startswith(bos))
            out.append(list(tokenizer(p, add_special_tokens=add)["input_ids"]))
        else:
            out.append([int(t) for t in p])
    return out


def sample_tokens(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one token per row; returns ``(tokens (B,), logprobs (B,))``.

    ``temperature == 0`` is greedy. Log-probs are under ``softmax(logits / temperature)``.
    """
    if temperature == 0:
        logp = torch.log_softmax(logits, dim=-1)  # (B, V)
        tokens = logits.argmax(dim=-1)
        return tokens, logp.gather(-1, tokens[:, None]).squeeze(-1)
    logp = torch.log_softmax(logits / temperature, dim=-1)  # (B, V)
    probs = logp.exp()
    if top_p < 1.0:
        sorted_p, idx = probs.sort(dim=-1, descending=True)
        cum = sorted_p.cumsum(dim=-1)
        sorted_p = sorted_p.masked_fill(cum - sorted_p > top_p, 0.0)  # keep the nucleus
        probs = torch.zeros_like(probs).scatter_(-1, idx, sorted_p)
    # inverse-CDF sampling: one uniform per row (torch.multinomial draws one per vocab entry).
    # The first index whose cumulative sum exceeds x has p > 0 (a zero adds nothing), and x
    # stays below the total: u < 1 and the total is shrunk by more than a rounding step.
    cdf = probs.double().cumsum(dim=-1)  # (B, V)
    u = torch.rand((probs.shape[0], 1), generator=generator, device=probs.device, dtype=cdf.dtype)
    x = u * (cdf[:, -1:] * (1.0 - 2.0**-50))
    tokens = torch.searchsorted(cdf, x, right=True)  # (B, 1)
    return tokens.squeeze(-1), logp.gather(-1, tokens).squeeze(-1)


@torch.inference_mode()
def _decode_batch(
    model: Any,
    batch: list[list[int]],
    *,
    pad_id: int,
    eos: torch.Tensor,
    max_new_tokens: int,
    min_new_tokens: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode one batch; returns ``(tokens (B,N), logprobs (B,N), lengths (B,))``.

    Llama-family models run on :mod:`r1agent.fastlm` (static KV cache, shared prompts
    pre-filled once); any other causal LM through its Hugging Face forward.
    """
    if fastlm.supports(model):
        tokens, logps, lengths = fastlm.decode(
            model,
            batch,
            pad_id=pad_id,
            eos=eos,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            sample=lambda x: sample_tokens(
                x, temperature=temperature, top_p=top_p, generator=generator
            ),
        )
        return tokens.cpu(), logps.cpu(), lengths.cpu()
    from transformers import DynamicCache

    device = next(model.parameters()).device
    b, p = len(batch), max(len(x) for x in batch)
    input_ids = torch.full((b, p), pad_id, dtype=torch.long)
    attn = torch.zeros((b, p + max_new_tokens), dtype=torch.long)
    for i, ids in enumerate(batch):
        input_ids[i, p - len(ids) :] = torch.tensor(ids, dtype=torch.long)
        attn[i, p - len(ids) : p] = 1
    input_ids, attn = input_ids.to(device), attn.to(device)
    positions = (attn[:, :p].cumsum(-1) - 1).clamp(min=0)  # (B, P)
    cache = DynamicCache(config=model.config)
    out = model(
        input_ids=input_ids,
        attention_mask=attn[:, :p],
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    logits = out.logits[:, -1, :].float()  # (B, V)
    next_pos = positions[:, -1:] + 1  # (B, 1)
    tokens = torch.full((b, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((b, max_new_tokens), dtype=torch.float32, device=device)
    lengths = torch.full((b,), max_new_tokens, dtype=torch.long, device=device)
    done = torch.zeros(b, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        if t < min_new_tokens:
            logits[:, eos] = float("-inf")
        tok, lp = sample_tokens(logits, temperature=temperature, top_p=top_p, generator=generator)
        tok = tok.masked_fill(done, pad_id)
        tokens[:, t], logps[:, t] = tok, lp.masked_fill(done, 0.0)
        ended = torch.isin(tok, eos) & ~done
        lengths = torch.where(ended, t + 1, lengths)
        done |= ended
        if t + 1 == max_new_tokens or bool(done.all()):
            break
        attn[:, p + t] = 1
        out = model(
            input_ids=tok[:, None],
            attention_mask=attn[:, : p + t + 1],
            position_ids=next_pos,
            past_key_values=cache,
            use_cache=True,
        )
        logits = out.logits[:, -1, :].float()
        next_pos = next_pos + 1
    return tokens.cpu(), logps.cpu(), lengths.cpu()


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str] | Sequence[Sequence[int]],
    *,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    min_new_tokens: int = 0,
    seed: int | None = None,
    batch_size: int = 64,
) -> list[Completion]:
    """Sample one completion per prompt (repeat a prompt to get several).

    Args:
        model: a Hugging Face causal LM (put in eval mode by the caller when it matters).
        tokenizer: its tokenizer (pad and eos tokens set).
        prompts: strings (encoded with the tokenizer) or lists of token ids.
        max_new_tokens: completion cap in tokens.
        temperature: sampling temperature; 0 means greedy.
        top_p: nucleus sampling mass (1.0 disables it).
        min_new_tokens: eos is forbidden before this many tokens.
        seed: seeds the sampler (``None``: torch's global RNG).
        batch_size: prompts decoded together.

    Returns:
        One :class:`Completion` per prompt, in order.

    Raises:
        ValueError: for non-positive ``max_new_tokens``/``batch_size`` or ``top_p`` outside
            ``(0, 1]``.
    """
    if max_new_tokens < 1 or batch_size < 1:
        raise ValueError(
            f"max_new_tokens and batch_size must be >= 1, max_new_tokens: {max_new_tokens}, "
            f"batch_size: {batch_size}"
        )
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], top_p: {top_p}")
    ids = encode_prompts(tokenizer, prompts)
    if any(len(x) == 0 for x in ids):
        raise ValueError("every prompt needs at least one token (got an empty prompt)")
    device = next(model.parameters()).device
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed))
    eos_list = eos_token_ids(model, tokenizer)
    eos = torch.tensor(eos_list, dtype=torch.long, device=device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_list[0]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    results: list[Completion | None] = [None] * len(ids)
    with cpu_threads(small_model_threads(model)):
        _generate_sorted(
            model,
            tokenizer,
            ids,
            order,
            results,
            batch_size,
            eos_list,
            eos,
            pad_id,
            max_new_tokens=max_new_tokens,
            min_new_tokens=min_new_tokens,
            temperature=temperature,
            top_p=top_p,
            generator=generator,
        )
    return results  # type: ignore[return-value]


def _generate_sorted(
    model: Any,
    tokenizer: Any,
    ids: list[list[int]],
    order: list[int],
    results: list[Completion | None],
    batch_size: int,
    eos_list: list[int],
    eos: torch.Tensor,
    pad_id: int,
    **sampling: Any,
) -> None:
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        tokens, logps, lengths = _decode_batch(
            model, [ids[i] for i in chunk], pad_id=pad_id, eos=eos, **sampling
        )
        texts_ids = []
        for row, i in enumerate(chunk):
            n = int(lengths[row])
            comp = tokens[row, :n].tolist()
            truncated = not (n and comp[-1] in eos_list)
            results[i] = Completion(ids[i], comp, "", logps[row, :n].tolist(), truncated)
            texts_ids.append(comp if truncated else comp[:-1])
        for row, text in enumerate(tokenizer.batch_decode(texts_ids, skip_special_tokens=False)):
            results[chunk[row]].text = text  # type: ignore[union-attr]


# --------------------------------------------------------------------------- episodes

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

    def acquire(self, env_id: str) -> Any:
        """A free env for ``env_id`` (made when none is free)."""
        import gymnasium as gym

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
        """Close every pooled env."""
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


def _step_env(pool: EnvPool, ep: Episode, completion: str) -> tuple[str, bool]:
    """Step the episode's env; records reward/failure; returns ``(observation, finished)``."""
    try:
        if ep.env is None:
            ep.env = pool.acquire(ep.env_id)
            ep.env.reset(seed=ep.seed)
        obs, reward, terminated, truncated, info = ep.env.step(completion)
    except Exception as exc:  # a failing env masks this episode, training goes on
        ep.error = f"{type(exc).__name__}: {exc}"
        return "", True
    reward = float(reward)
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
) -> list[Episode]:
    """Run ``group_size`` episodes on each ``(env_id, env_seed)`` problem.

    Every turn of every live episode is sampled in one batched call; an env that does not
    terminate answers with an observation, appended as the next user turn (masked from the
    loss). Env failures (exception, ``info["error"]``, non-finite reward) end the episode
    with ``error`` set. Groups are contiguous in the returned list.
    """
    gen = generate_fn or generate
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
            obs, finished = _step_env(pool, ep, out.text)
            if finished or turn == max_turns - 1:
                ep.done = True
                if ep.env is not None:
                    pool.release(ep.env_id, ep.env, broken=ep.error is not None)
                    ep.env = None
                continue
            turn_ids = encode_prompts(
                tokenizer, [_next_turn_text(tokenizer, ep, out.text, obs, prompt_format)]
            )[0]
            ep.response_ids += turn_ids
            ep.loss_mask += [0.0] * len(turn_ids)
            ep.gen_logprobs += [0.0] * len(turn_ids)
        live = [ep for ep in live if not ep.done]
        if not live:
            break
    if reward_fn is not None:
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
    return episodes
