"""GRPO components: the math as pure functions (:mod:`~r1agent.rl.grpo`), padded batches
and log-probs (:mod:`~r1agent.rl.batch`), per-step statistics (:mod:`~r1agent.rl.stats`).
"""
