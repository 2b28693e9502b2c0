"""FSDP2 CPU offload (``fsdp_offload``): where the setting goes and what it does on CPU.

FSDP2's ``CPUOffloadPolicy`` needs an accelerator ("Cannot access accelerator device when
none is available" on a CPU-only build), so on CUDA the policy reaches every
``fully_shard`` call (checked with a recording ``fully_shard``), and on CPU, where the
parameters already live in host memory, two gloo processes train with the setting on
exactly as with it off.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed.fsdp as fsdp_mod
from transformers import AutoModelForCausalLM

from r1agent.infra.distributed import Dist, wrap_model
from tests.r1agent.grpo_helpers import tiny_model

ROOT = Path(__file__).resolve().parents[2]


def _recorded_calls(monkeypatch, model, device, **kw):
    calls = []

    def fake_fully_shard(module, **kwargs):
        calls.append((module, kwargs))
        return module

    monkeypatch.setattr(fsdp_mod, "fully_shard", fake_fully_shard)
    wrap_model(model, Dist(rank=0, world=2), device, fsdp=True, **kw)
    return calls


def test_offload_policy_reaches_every_fully_shard_call_on_cuda(monkeypatch, tiny):
    model = AutoModelForCausalLM.from_pretrained(tiny)
    calls = _recorded_calls(monkeypatch, model, torch.device("cuda", 0), offload=True)
    layers = list(model.model.layers)
    assert [m for m, _ in calls] == [*layers, model]  # each layer, then the whole model
    assert all(isinstance(kw["offload_policy"], fsdp_mod.CPUOffloadPolicy) for _, kw in calls)
    plain = _recorded_calls(monkeypatch, model, torch.device("cuda", 0), offload=False)
    assert all("offload_policy" not in kw for _, kw in plain)


def test_offload_is_not_applied_on_cpu_and_says_so(monkeypatch, tiny, caplog):
    model = AutoModelForCausalLM.from_pretrained(tiny)
    with caplog.at_level(logging.WARNING, logger="r1agent.infra.distributed"):
        calls = _recorded_calls(monkeypatch, model, torch.device("cpu"), offload=True)
    assert calls and all("offload_policy" not in kw for _, kw in calls)
    assert "already in host memory" in caplog.text


def test_offload_without_fsdp_or_with_one_process_warns(tiny, caplog):
    model = AutoModelForCausalLM.from_pretrained(tiny)
    with caplog.at_level(logging.WARNING, logger="r1agent.infra.distributed"):
        same = wrap_model(model, Dist(), torch.device("cpu"), fsdp=True, offload=True)
    assert same is model and "fsdp_offload has no effect" in caplog.text


_SCRIPT = """
import sys
sys.path.insert(0, {root!r})
import torch, torch.distributed as dist
from transformers import AutoModelForCausalLM
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from r1agent.infra.distributed import setup_distributed, wrap_model
dd = setup_distributed(torch.device("cpu"))
ids = torch.randint(0, 300, (4, 12), generator=torch.Generator().manual_seed(dd.rank))
states = []
for offload in (False, True):
    model = AutoModelForCausalLM.from_pretrained({model!r})
    wrapped = wrap_model(model, dd, torch.device("cpu"), fsdp=True, offload=offload)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, foreach=True)
    for _ in range(2):
        wrapped(ids, labels=ids).loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
    states.append(get_model_state_dict(model, options=StateDictOptions(full_state_dict=True)))
if dd.rank == 0:
    torch.save(states, {out!r})
dist.destroy_process_group()
"""


def test_two_cpu_processes_train_the_same_with_offload_on(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    script = tmp_path / "offload.py"
    out = tmp_path / "states.pt"
    script.write_text(_SCRIPT.format(root=str(ROOT), model=model, out=str(out)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    res = subprocess.run([*cmd, str(script)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    off, on = torch.load(out)
    init = AutoModelForCausalLM.from_pretrained(model).state_dict()
    assert any(not torch.equal(init[k], off[k]) for k in off), "training changed nothing"
    for k in off:
        torch.testing.assert_close(on[k], off[k], rtol=0, atol=0, msg=k)
