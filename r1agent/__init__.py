"""r1agent: a GRPO trainer and the four DeepSeek-R1 stages over Gymnasium text envs.

Layout (recipes apart from components):

* :mod:`r1agent.cli` — the ``r1agent`` command line;
* :mod:`r1agent.recipes` — scripts that wire components together, each readable top to
  bottom: ``grpo`` (:func:`~r1agent.recipes.grpo.train_grpo`), ``sft``, ``reward_model``,
  ``pretrain``, ``stages`` and ``pipeline`` (the four R1 stages), ``distill``, ``demo``;
* :mod:`r1agent.rl` — GRPO math (pure functions), batches and log-probs, step statistics;
* :mod:`r1agent.rollout` — generation engines (transformers, vLLM) behind one interface;
  episodes and env pools;
* :mod:`r1agent.data` — SFT examples and packing, cold-start builders, rejection sampling,
  general (non-reasoning) data;
* :mod:`r1agent.rewards` — reward models, judges, the chat env for general prompts;
* :mod:`r1agent.eval` — pass@k / cons@k evaluation and reports;
* :mod:`r1agent.infra` — config, checkpoints, distributed plumbing, model loading,
  metrics logging, the tiny model factory;
* :mod:`r1agent.accel` — the optional CPU accelerator: fastlm, native kernels, CPU tuning.

The module paths of the earlier flat layout (``r1agent.trainer``, ``r1agent.evaluate``,
``r1agent.sft`` ...) remain importable as compatibility aliases (:mod:`r1agent._compat`).
"""

from r1agent import _compat

_compat.install()

__version__ = "0.1.0"
