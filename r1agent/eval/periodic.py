"""Held-out pass@1 during training, every ``eval_every`` steps.

:class:`PeriodicEval` samples one completion for each of ``problems`` held-out problems
(env seeds from :data:`r1agent.eval.evaluate.HELDOUT_SEED` up, which training never uses)
and grades it through the env (``info["correct"]``). Design decisions:

* The same problems every time (problem ``i`` is ``env_ids[i % len(env_ids)]`` with seed
  ``HELDOUT_SEED + i``, as in :func:`r1agent.eval.evaluate.evaluate`), and the same sampling
  seed, so the points of the curve differ by the weights only.
* Sampling at the evaluation defaults of the paper (temperature 0.6, top-p 0.95), through
  the trainer's own generation function when given (its rollout engine: transformers or
  vLLM), so evaluation sees the weights rollouts see.
* No side effects on training: the model is put in eval mode and its mode restored after;
  the Python, NumPy and torch RNG states are saved and restored, so training draws the same
  random numbers with or without evaluation.
* Under ``torch.distributed`` each rank grades its share of the problems
  (``problems[rank::world]``) and the counts are summed over ranks; every rank must call it.
  Under FSDP2, call it inside :func:`r1agent.infra.distributed.fsdp_gathered` as rollouts do.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist

from r1agent.eval.evaluate import HELDOUT_SEED, Problem, _sample_and_grade, heldout_problems
from r1agent.infra.checkpoint import rng_state, set_rng_state
from r1agent.rollout.episodes import make_env
from r1agent.rollout.transformers_engine import generate

__all__ = ["PeriodicEval"]


class PeriodicEval:
    """Held-out pass@1 every ``every`` steps (``eval/pass@1``, ``eval/pass@1/<env_id>``).

    Args:
        env_ids: env ids taken in turn for problem ``i``.
        every: evaluate when ``step % every == 0`` (0: never).
        problems: held-out problems per evaluation.
        max_new_tokens: completion length cap.
        prompt_format: ``"observation"`` or ``"chat"``.
        temperature: sampling temperature (0 = greedy).
        top_p: nucleus sampling mass.
        seed: sampling seed, the same at every evaluation.
        batch_size: prompts per generation call.
        env_kwargs: ``gym.make`` kwargs per env id (default: the env's defaults).
        base_seed: problem ``i`` uses env seed ``base_seed + i``.
        rank: this process's rank (its share is ``problems[rank::world]``).
        world: the number of processes.

    Raises:
        ValueError: for no env ids, ``every < 0``, ``problems < 1`` or a rank outside
            ``[0, world)``.
    """

    def __init__(
        self,
        env_ids: Sequence[str],
        *,
        every: int,
        problems: int = 64,
        max_new_tokens: int,
        prompt_format: str = "observation",
        temperature: float = 0.6,
        top_p: float = 0.95,
        seed: int = 0,
        batch_size: int = 64,
        env_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
        base_seed: int = HELDOUT_SEED,
        rank: int = 0,
        world: int = 1,
    ) -> None:
        if not env_ids:
            raise ValueError(f"need at least one env id, env_ids: {list(env_ids)}")
        if every < 0 or problems < 1:
            raise ValueError(
                f"need every >= 0 and problems >= 1, every: {every}, problems: {problems}"
            )
        if not 0 <= rank < world:
            raise ValueError(f"need 0 <= rank < world, rank: {rank}, world: {world}")
        self.env_ids = list(env_ids)
        self.every, self.n = every, problems
        self.max_new_tokens, self.prompt_format = max_new_tokens, prompt_format
        self.temperature, self.top_p, self.seed = temperature, top_p, seed
        self.batch_size, self.base_seed = batch_size, base_seed
        self.env_kwargs = {k: dict(v) for k, v in (env_kwargs or {}).items()}
        self.rank, self.world = rank, world
        self._problems: list[Problem] | None = None

    @classmethod
    def from_config(cls, c: Any, *, rank: int = 0, world: int = 1) -> PeriodicEval:
        """The evaluation a :class:`~r1agent.infra.config.GRPOConfig` asks for (``eval_every``)."""
        return cls(
            list(c.envs),
            every=c.eval_every,
            problems=c.eval_problems,
            max_new_tokens=c.max_new_tokens,
            prompt_format=c.prompt_format,
            seed=c.seed,
            batch_size=c.rollout.batch_size,
            env_kwargs=c.env_kwargs,
            rank=rank,
            world=world,
        )

    def due(self, step: int) -> bool:
        """Whether ``step`` is an evaluation step (a multiple of ``every``; 0 is one)."""
        return self.every > 0 and step % self.every == 0

    def problems(self, tokenizer: Any) -> list[Problem]:
        """This rank's held-out problems (built once, then the same at every call)."""
        if self._problems is None:
            every = heldout_problems(
                self.env_ids,
                self.n,
                tokenizer=tokenizer,
                prompt_format=self.prompt_format,
                base_seed=self.base_seed,
                env_kwargs=self.env_kwargs,
            )
            self._problems = every[self.rank :: self.world]
        return self._problems

    def __call__(
        self,
        step: int,
        model: Any,
        tokenizer: Any,
        generate_fn: Callable[..., list[Any]] | None = None,
    ) -> dict[str, float]:
        """Evaluate at an evaluation step; ``{}`` at other steps.

        Args:
            step: the training step just finished.
            model: the policy (the plain module, not a DDP wrapper).
            tokenizer: its tokenizer.
            generate_fn: the trainer's generation function (signature of
                :func:`r1agent.rollout.generate`; default: that function).

        Returns:
            ``eval/pass@1``, ``eval/pass@1/<env_id>``, ``eval/response_length_mean``,
            ``eval/truncated`` and ``eval/seconds``.
        """
        if not self.due(step):
            return {}
        t0 = time.perf_counter()
        problems = self.problems(tokenizer)
        graded = self._graded(problems, model, tokenizer, generate_fn or generate)
        metrics = self._reduce(problems, graded, _device(model))
        metrics["eval/seconds"] = time.perf_counter() - t0
        return metrics

    def _graded(
        self, problems: list[Problem], model: Any, tokenizer: Any, generate_fn: Callable[..., Any]
    ) -> list[dict[str, Any]]:
        """One graded sample per problem, with the model in eval mode and the RNGs untouched."""
        sample = functools.partial(
            generate_fn,
            model,
            tokenizer,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
        )
        envs = {e: make_env(e, self.env_kwargs.get(e)) for e in dict.fromkeys(self.env_ids)}
        training, rng = getattr(model, "training", False), rng_state()
        if hasattr(model, "eval"):
            model.eval()
        try:
            seed = self.seed + self.rank * 1_000_003  # ranks sample different streams
            per_problem = _sample_and_grade(sample, envs, problems, 1, self.batch_size, seed)
        finally:
            set_rng_state(rng)
            if hasattr(model, "train"):
                model.train(training)
            for env in envs.values():
                env.close()
        return [g[0] for g in per_problem]

    def _reduce(
        self, problems: list[Problem], graded: list[dict[str, Any]], device: torch.device
    ) -> dict[str, float]:
        """pass@1 overall and per env, summed over ranks."""
        ids = list(dict.fromkeys(self.env_ids))
        stats = torch.zeros(len(ids) + 1, 4, dtype=torch.float64)  # (E+1, [n, correct, len, trunc])
        for p, g in zip(problems, graded, strict=True):
            row = torch.tensor(
                [1.0, g["correct"], g["length"], g["truncated"]], dtype=torch.float64
            )
            stats[ids.index(p.env_id)] += row
            stats[-1] += row
        if self.world > 1 and dist.is_available() and dist.is_initialized():
            stats = stats.to(device)
            dist.all_reduce(stats)
            stats = stats.cpu()
        n = stats[:, 0].clamp(min=1)
        out = {"eval/pass@1": float(stats[-1, 1] / n[-1])}
        out.update({f"eval/pass@1/{e}": float(stats[i, 1] / n[i]) for i, e in enumerate(ids)})
        out["eval/response_length_mean"] = float(stats[-1, 2] / n[-1])
        out["eval/truncated"] = float(stats[-1, 3] / n[-1])
        return out


def _device(model: Any) -> torch.device:
    """The device of the model's first parameter (CPU for a model without any)."""
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return torch.device("cpu")
