"""Training data: SFT examples and packing (:mod:`~r1agent.data.sft`), cold-start builders
(:mod:`~r1agent.data.coldstart`), rejection sampling (:mod:`~r1agent.data.rejection`) and
general non-reasoning data (:mod:`~r1agent.data.general`).
"""
