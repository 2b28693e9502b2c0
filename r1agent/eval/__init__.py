"""Evaluation with pass@k / cons@k rollouts (:mod:`~r1agent.eval.evaluate`) and the pipeline
report (:mod:`~r1agent.eval.report`).
"""
