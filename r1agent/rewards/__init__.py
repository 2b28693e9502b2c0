"""Model rewards: reward models (:mod:`~r1agent.rewards.reward_model`), judges
(:mod:`~r1agent.rewards.judges`) and the chat env that scores general prompts with them
(:mod:`~r1agent.rewards.chat_env`).
"""
