"""The memory estimate: parameter counts of real shapes and what fits an 80 GB GPU."""

from __future__ import annotations

import pytest

from r1agent.infra.memory import GIB, Shape, estimate

QWEN = {  # published configs: (vocab, hidden, intermediate, layers, heads, kv heads, tied)
    "qwen2.5-0.5b": ((151936, 896, 4864, 24, 14, 2, True), 494e6),
    "qwen2.5-1.5b": ((151936, 1536, 8960, 28, 12, 2, True), 1544e6),
    "qwen2.5-7b": ((152064, 3584, 18944, 28, 28, 4, False), 7616e6),
}


@pytest.mark.parametrize("name", sorted(QWEN))
def test_parameter_counts_match_published_models(name):
    dims, published = QWEN[name]
    assert Shape(*dims).parameters() == pytest.approx(published, rel=0.01)


def test_seven_b_full_fine_tuning_does_not_fit_80gb_and_lora_does():
    shape = Shape(*QWEN["qwen2.5-7b"][0])
    full = estimate(shape, micro_batch_size=4, seq_len=1024, gradient_checkpointing=True)
    lora = estimate(shape, micro_batch_size=4, seq_len=1024, gradient_checkpointing=True, lora_r=16)
    assert not full.fits(80 * GIB)
    assert lora.fits(80 * GIB)
    assert lora.trainable < 0.01 * full.trainable
    assert "optimizer (AdamW)" in full.table() and "total" in full.table()


def test_checkpointing_and_reference_move_the_estimate_the_right_way():
    shape = Shape(*QWEN["qwen2.5-0.5b"][0])
    kw = {"micro_batch_size": 8, "seq_len": 512}
    plain = estimate(shape, **kw)
    assert estimate(shape, gradient_checkpointing=True, **kw).total < plain.total
    assert estimate(shape, reference=True, **kw).total > plain.total
    # under LoRA the reference is the base with adapters disabled: no second copy
    with_ref = estimate(shape, reference=True, lora_r=8, **kw)
    assert "reference model" not in with_ref.parts


def test_config_missing_dimensions_is_named():
    with pytest.raises(ValueError, match="hidden_size"):
        Shape.from_config({"vocab_size": 10, "num_hidden_layers": 2})
    s = Shape.from_config(
        {"vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 2, "num_attention_heads": 2}
    )
    assert s.kv_heads == 2 and s.intermediate == 32
