"""The tiny factory: a small Qwen2-style causal LM with a tokenizer trained locally.

``build_tiny_model(DIR)`` (CLI: ``r1agent tiny DIR``) trains a byte-level BPE tokenizer on
text drawn from the registered environments (prompts in both output formats plus answers
in the ``<think> … </think> <answer> … </answer>`` and r1 formats), builds a randomly
initialised Qwen2 model with **untied** embeddings (vLLM-CPU weight reload needs them) and
saves both as a Hugging Face directory that plain ``AutoModelForCausalLM`` /
``AutoTokenizer`` load. Nothing is downloaded.

Design notes:

* The pre-tokenizer is the Qwen2 split regex followed by ByteLevel. transformers 5.x rebuilds
  ``Qwen2Tokenizer`` from vocab + merges on load, so any other pre-tokenizer would tokenize
  differently after a reload. Digits are one token each (the regex splits ``\\p{N}`` singly).
* The format tags (``<think>``, ``</think>``, ``<answer>``, ``</answer>``) and the r1
  reasoning delimiters are added tokens (single ids, never dropped by ``decode``);
  ``<|endoftext|>`` (pad) and ``<|im_end|>`` (eos) are special tokens.
* The chat template is ChatML (``<|im_start|>role\\n…<|im_end|>\\n``).
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

import gymnasium as gym
import torch
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

import r1envs  # noqa: F401  (registers the ids)
from r1envs import formats

log = logging.getLogger(__name__)

__all__ = ["CHAT_TEMPLATE", "QWEN_REGEX", "build_tiny_model", "default_texts", "build_tokenizer"]

QWEN_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
PAD, EOS, IM_START = "<|endoftext|>", "<|im_end|>", "<|im_start|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
#: Env ids whose observations feed the default tokenizer corpus (missing ids are skipped).
CORPUS_ENVS: tuple[str, ...] = (
    "r1/Arithmetic-v0",
    "r1/Math-v0",
    "r1/Countdown-v0",
    "r1/KnightsKnaves-v0",
    "r1/GraphColoring-v0",
    "r1/MiniSudoku-v0",
    "r1/Code-v0",
)


def format_tags() -> list[str]:
    """The answer-format markers made single tokens (r1-zero tags and r1 delimiters)."""

    return [
        formats.THINK_START,
        formats.THINK_END,
        formats.ANSWER_START,
        formats.ANSWER_END,
        *formats.R1_SPECIAL_TOKENS,
    ]


def _answers(rng: random.Random) -> str:

    a, b = rng.randint(0, 999), rng.randint(0, 99)
    steps = f"{a} + {b} = {a + b}. Check: {a + b} - {b} = {a}."
    if rng.random() < 0.5:
        return f"<think> {steps} </think> <answer> {a + b} </answer>"
    return (
        f"{formats.REASONING_START} {steps} {formats.REASONING_END} "
        f"The answer is \\boxed{{{a + b}}}."
    )


def default_texts(n_per_env: int = 200, seed: int = 0) -> list[str]:
    """Prompts of the registered envs (both formats, plain and chat) plus answer-shaped text."""

    rng = random.Random(seed)
    texts: list[str] = []
    for env_id in CORPUS_ENVS:
        if env_id not in gym.registry:
            continue
        for output_format in ("r1-zero", "r1"):
            try:
                env = gym.make(env_id, output_format=output_format)
            except Exception as exc:  # an optional family may not be installable here
                log.warning("tiny corpus: skipping %s (%s)", env_id, exc)
                break
            for i in range(n_per_env // 2):
                obs, info = env.reset(seed=seed * 1_000_003 + i)
                texts.append(obs)
                msgs = info.get("messages") or []
                texts.append("".join(f"{IM_START}{m['role']}\n{m['content']}{EOS}\n" for m in msgs))
            env.close()
    texts += [_answers(rng) for _ in range(max(200, len(texts) // 2))]
    return texts


def build_tokenizer(
    texts: Iterable[str], *, vocab_size: int = 1024, extra_special_tokens: Sequence[str] = ()
):
    """Train a byte-level BPE tokenizer; returns a left-padded ``PreTrainedTokenizerFast``."""

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    specials = [PAD, IM_START, EOS, *extra_special_tokens]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=None,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=None,
        additional_special_tokens=[IM_START, *extra_special_tokens],
        padding_side="left",
    )
    fast.add_tokens(format_tags())
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def build_tiny_model(
    out_dir: str | os.PathLike[str],
    *,
    texts: Sequence[str] | None = None,
    hidden: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    intermediate: int = 512,
    vocab_size: int = 1024,
    max_positions: int = 1024,
    seed: int = 0,
    extra_special_tokens: Sequence[str] = (),
) -> Path:
    """Build and save the tiny model and its tokenizer.

    Args:
        out_dir: directory to write (created).
        texts: tokenizer training text; extended with :func:`default_texts` (the envs' text),
            so user text adds to, never replaces, the env vocabulary.
        hidden: hidden size.
        layers: number of decoder layers.
        heads: attention heads.
        kv_heads: key/value heads (grouped-query attention).
        intermediate: MLP width.
        vocab_size: BPE vocabulary size target (plus special and added tokens).
        max_positions: maximum sequence length.
        seed: seeds the corpus sample and the weight initialisation.
        extra_special_tokens: more special tokens for the tokenizer.

    Returns:
        The output directory.

    Raises:
        ValueError: if ``hidden`` is not divisible by ``heads`` or ``heads`` by ``kv_heads``.
    """

    if hidden % heads or heads % kv_heads:
        raise ValueError(
            f"hidden must be divisible by heads and heads by kv_heads, hidden: {hidden}, "
            f"heads: {heads}, kv_heads: {kv_heads}"
        )
    corpus = list(texts or []) + default_texts(seed=seed)
    tokenizer = build_tokenizer(
        corpus, vocab_size=vocab_size, extra_special_tokens=extra_special_tokens
    )
    cfg = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    log.info("tiny model: %d parameters, vocab %d, saved to %s", n, len(tokenizer), out)
    return out
