"""``r1agent merge``: a LoRA adapter folded into its base gives the same logits, no PEFT needed."""

from __future__ import annotations

import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from r1agent.cli import app
from r1agent.infra.merge import MARKER, merge_adapter


@pytest.fixture(scope="module")
def adapter(tiny, tmp_path_factory):
    """A saved adapter with non-zero B matrices (a fresh LoRA is the identity)."""
    base = AutoModelForCausalLM.from_pretrained(tiny)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", lora_dropout=0.0)
    )
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    path = tmp_path_factory.mktemp("adapter") / "a"
    peft_model.save_pretrained(path)
    peft_model.eval()
    ids = AutoTokenizer.from_pretrained(tiny)("12 + 7 = 19", return_tensors="pt").input_ids
    with torch.no_grad():
        expected = peft_model(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(tiny)(ids).logits
    assert not torch.allclose(expected, plain, atol=1e-4)  # the adapter changes the output
    return path, ids, expected


def test_merged_model_matches_the_adapter_and_loads_without_peft(adapter, tmp_path):
    path, ids, expected = adapter
    out = tmp_path / "merged"
    res = CliRunner().invoke(app, ["merge", str(path), str(out)])
    assert res.exit_code == 0, res.output
    assert not (out / "adapter_config.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, expected, atol=1e-5, rtol=0)
    assert AutoTokenizer.from_pretrained(out)("12").input_ids
    record = json.loads((out / MARKER).read_text())
    assert "config.json" in record["files"] and record["adapter"] == str(path)


def test_base_override_and_merging_again_over_an_earlier_merge(adapter, tiny, tmp_path):
    path, ids, expected = adapter
    moved = tmp_path / "adapter"
    moved.mkdir()
    for f in path.iterdir():
        (moved / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((moved / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "base-was-here")
    (moved / "adapter_config.json").write_text(json.dumps(cfg))
    out = tmp_path / "merged"
    with pytest.raises(ValueError, match="base-was-here"):
        merge_adapter(moved, out)
    merge_adapter(moved, out, base=str(tiny))
    (out / "model-00009-of-00009.safetensors").write_bytes(b"")  # a stale file of that merge
    record = json.loads((out / MARKER).read_text())
    record["files"].append("model-00009-of-00009.safetensors")
    (out / MARKER).write_text(json.dumps(record))
    merge_adapter(moved, out, base=str(tiny))  # an earlier merge output may be replaced
    assert not (out / "model-00009-of-00009.safetensors").exists()
    with torch.no_grad():
        got = AutoModelForCausalLM.from_pretrained(out)(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_refuses_a_non_empty_directory_it_did_not_write(adapter, tmp_path):
    path, _, _ = adapter
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(app, ["merge", str(path), str(out)])
    assert res.exit_code == 2 and "mine" in res.output and "not empty" in res.output
    assert (out / "notes.txt").read_text() == "keep me" and len(list(out.iterdir())) == 1


def test_a_directory_without_adapter_config_is_named(tiny, tmp_path):
    res = CliRunner().invoke(app, ["merge", str(tiny), str(tmp_path / "out")])
    assert res.exit_code == 2 and str(tiny) in res.output and "adapter_config.json" in res.output
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="nowhere"):
        merge_adapter(tmp_path / "nowhere", tmp_path / "out")
