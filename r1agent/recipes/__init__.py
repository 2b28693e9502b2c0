"""Recipes: scripts that wire components together, each readable top to bottom.

``grpo`` (the GRPO trainer), ``sft``, ``reward_model``, ``pretrain`` (stage 0 of the tiny
model), ``stages`` and ``pipeline`` (the four DeepSeek-R1 stages), ``distill``, ``demo``.
"""
