"""The optional CPU accelerator: :mod:`~r1agent.accel.fastlm` (a lean Llama-family forward),
:mod:`~r1agent.accel.native` (fused C kernels) and :mod:`~r1agent.accel.cpu` (threads and
malloc tuning). The ``forward`` setting (``auto | hf | fast``) chooses it
(:func:`~r1agent.accel.fastlm.use_fast`).
"""
