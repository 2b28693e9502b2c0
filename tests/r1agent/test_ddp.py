from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

from tests.r1agent.grpo_helpers import tiny_model

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import torch, torch.distributed as dist
from r1agent.infra.models import load_model
from r1agent.recipes.grpo import train_grpo
from tests.r1agent.grpo_helpers import base_config, register_test_envs
register_test_envs()
model, tok = load_model({model!r})
summary = train_grpo(base_config({model!r}, {out!r}, steps=2, fsdp={fsdp!r}, save_every={save!r}), model=model, tokenizer=tok)
full = None
rank = dist.get_rank()
if {fsdp!r}:
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))
else:
    state = model.state_dict()
torch.save({{k: v.detach().clone() for k, v in state.items()}}, {out!r} + f"/rank{{rank}}.pt")
dist.destroy_process_group()
"""


def _run(tmp_path, fsdp: bool):
    model = tiny_model(tmp_path / "tiny")
    out = tmp_path / "run"
    out.mkdir()
    script = tmp_path / "ddp.py"
    script.write_text(
        _SCRIPT.format(root=str(ROOT), model=model, out=str(out), fsdp=fsdp, save=1 if fsdp else 0)
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(script),
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    a, b = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    from transformers import AutoModelForCausalLM

    init = AutoModelForCausalLM.from_pretrained(model).state_dict()
    assert any(not torch.equal(init[k], a[k]) for k in a), "training changed nothing"
    # rank 0 logged metrics averaged over both processes; the final model is saved once
    assert (out / "metrics.jsonl").read_text().count("\n") == 2
    assert (out / "model.safetensors").is_file()


def test_two_cpu_processes_keep_identical_replicas(tmp_path):
    _run(tmp_path, fsdp=False)


def test_fsdp2_two_cpu_processes(tmp_path):
    _run(tmp_path, fsdp=True)
    assert (tmp_path / "run" / "checkpoints" / "step-000001" / "model.safetensors").is_file()
