from __future__ import annotations

from transformers import AutoModelForCausalLM, AutoTokenizer

from r1agent.infra.models import load_model
from r1agent.infra.tiny import build_tiny_model, format_tags
from r1envs import formats


def test_tiny_model_roundtrip(tmp_path):
    path = build_tiny_model(
        tmp_path / "m",
        texts=["hello tiny world"],
        hidden=32,
        layers=1,
        heads=2,
        kv_heads=1,
        intermediate=64,
        vocab_size=300,
    )
    model = AutoModelForCausalLM.from_pretrained(path)
    tok = AutoTokenizer.from_pretrained(path)
    assert model.config.tie_word_embeddings is False
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    text = f"<think> 12 + 345 </think> <answer> 357 </answer> {formats.REASONING_START} x {formats.REASONING_END}"
    ids = tok(text)["input_ids"]
    pieces = [tok.decode([i]) for i in ids]
    for tag in format_tags():
        assert tag in pieces, tag  # one token each
    assert [p for p in pieces if p.strip().isdigit()] == list("12345357")  # one digit per token
    assert tok.decode(ids) == text
    m2, tok2 = load_model(str(path))
    assert (
        tok2.padding_side == "left"
        and tok2.pad_token is not None
        and tok2.eos_token == "<|im_end|>"
    )
    assert tok2(text)["input_ids"] == ids
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_cli_tiny(tmp_path):
    from typer.testing import CliRunner

    from r1agent.cli import app

    res = CliRunner().invoke(
        app, ["tiny", str(tmp_path / "t"), "--hidden", "32", "--layers", "1", "--vocab-size", "300"]
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "t" / "model.safetensors").is_file()
