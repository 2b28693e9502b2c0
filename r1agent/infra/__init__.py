"""Infrastructure: run config (:mod:`~r1agent.infra.config`), checkpoints, distributed
plumbing, model loading, metrics logging and the tiny model factory.
"""
