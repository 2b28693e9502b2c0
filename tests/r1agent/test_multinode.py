"""GRPO across two "nodes": two torchrun launchers on this machine, one process each.

Each launcher gets its own ``--node_rank`` and its own output directory (nodes do not share
a filesystem), so the test sees which node wrote what: rank 0's node holds the metrics,
the step checkpoint and the final model; rank 1's node writes none of them.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import torch

from tests.r1agent.grpo_helpers import tiny_model

ROOT = Path(__file__).resolve().parents[2]

_SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
import torch, torch.distributed as dist
from r1agent.infra.models import load_model
from r1agent.recipes.grpo import train_grpo
from tests.r1agent.grpo_helpers import base_config, register_test_envs
register_test_envs()
node = int(sys.argv[1])
out = {out!r} + f"/node{{node}}"
model, tok = load_model({model!r})
train_grpo(base_config({model!r}, out, steps=2, save_every=1), model=model, tokenizer=tok)
rank = dist.get_rank()
facts = dict(rank=rank, world=dist.get_world_size(), local=int(os.environ["LOCAL_RANK"]))
state = {{k: v.detach().clone() for k, v in model.state_dict().items()}}
torch.save(dict(facts=facts, state=state), {shared!r} + f"/node{{node}}.pt")
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(script: Path, node: int, port: int, log: Path) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc_per_node",
        "1",
        "--node_rank",
        str(node),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        str(script),
        str(node),
    ]
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, text=True)


def _launch_both(tmp_path: Path, script: Path, tag: str) -> tuple[list[int], list[str]]:
    """Start node 0 and node 1, wait for both; their exit codes and logs."""
    port = _free_port()
    logs = [tmp_path / f"{tag}-node{i}.log" for i in range(2)]
    procs = [_launch(script, i, port, logs[i]) for i in range(2)]
    try:
        codes = [p.wait(timeout=300) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return codes, [log.read_text() for log in logs]


def _run_two_nodes(tmp_path: Path) -> tuple[Path, Path, Path]:
    model = tiny_model(tmp_path / "tiny")
    out, shared = tmp_path / "run", tmp_path / "shared"
    out.mkdir()
    shared.mkdir()
    script = tmp_path / "node.py"
    script.write_text(_SCRIPT.format(root=str(ROOT), model=model, out=str(out), shared=str(shared)))
    codes, logs = _launch_both(tmp_path, script, "first")
    for i, code in enumerate(codes):
        assert code == 0, f"node {i} exited {code}:\n" + logs[i][-3000:]
    return out, shared, script


def test_two_nodes_one_process_each(tmp_path):
    out, shared, script = _run_two_nodes(tmp_path)
    a, b = torch.load(shared / "node0.pt"), torch.load(shared / "node1.pt")
    # global ranks differ across nodes while each node's only process is local rank 0
    assert a["facts"] == {"rank": 0, "world": 2, "local": 0}
    assert b["facts"] == {"rank": 1, "world": 2, "local": 0}
    # DDP kept the replicas identical, and training moved them
    for k in a["state"]:
        torch.testing.assert_close(a["state"][k], b["state"][k], rtol=0, atol=0, msg=k)
    from transformers import AutoModelForCausalLM

    init = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny").state_dict()
    assert any(not torch.equal(init[k], a["state"][k]) for k in a["state"])
    # only global rank 0 writes: metrics, checkpoints and the final model live on node 0
    node0, node1 = out / "node0", out / "node1"
    assert (node0 / "metrics.jsonl").read_text().count("\n") == 2
    assert (node0 / "model.safetensors").is_file()
    assert (node0 / "checkpoints" / "step-000001" / "model.safetensors").is_file()
    written = sorted(p.relative_to(node1).as_posix() for p in node1.rglob("*") if p.is_file())
    assert not any(
        name.endswith((".safetensors", ".pt", "metrics.jsonl")) or "checkpoints" in name
        for name in written
    ), written

    # Running again resumes by default, but only node 0 holds the checkpoint: both ranks stop
    # with an error naming what each sees instead of training from different states.
    codes, logs = _launch_both(tmp_path, script, "resume")
    assert codes[0] != 0 and codes[1] != 0, codes
    for log in logs:
        assert "the ranks disagree on the checkpoint to resume" in log, log[-3000:]
        assert "rank 0: 'step-000001', rank 1: None" in log, log[-3000:]
