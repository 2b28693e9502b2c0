from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1agent.infra import checkpoint as ckpt
from r1agent.infra.metrics import read_jsonl
from r1agent.recipes.grpo import train_grpo
from tests.r1agent.grpo_helpers import base_config, register_test_envs, tiny_model

register_test_envs()
ROOT = Path(__file__).resolve().parents[2]


def _state(path):
    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def test_latest_ignores_partial_dirs(tmp_path):
    (tmp_path / "checkpoints" / ".tmp-step-000009-x").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-000010").mkdir()  # no trainer_state: incomplete
    assert ckpt.latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoints" / "step-000004").mkdir()
    (tmp_path / "checkpoints" / "step-000004" / ckpt.STATE_FILE).write_bytes(b"x")
    assert ckpt.latest_checkpoint(tmp_path).name == "step-000004"


def test_resume_matches_uninterrupted_run(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    full = train_grpo(base_config(model, tmp_path / "full", steps=3))
    # 2 steps with checkpoints, then a second invocation resumes from step 2 for the third
    train_grpo(base_config(model, tmp_path / "resumed", steps=2, save_every=1, keep_checkpoints=5))
    resumed = train_grpo(base_config(model, tmp_path / "resumed", steps=3))
    rows = read_jsonl(tmp_path / "resumed" / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert resumed["steps"] == 3
    a, b = _state(tmp_path / "full"), _state(tmp_path / "resumed")
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
    assert full["history"][-1]["charts/reward"] == resumed["history"][-1]["charts/reward"]


_RUN = """
import sys
sys.path.insert(0, {root!r})
from tests.r1agent.grpo_helpers import base_config, register_test_envs
from r1agent.recipes.grpo import train_grpo
register_test_envs()
train_grpo(base_config({model!r}, {out!r}, steps=200, save_every=1, keep_checkpoints=3))
"""


def test_kill_9_then_resume(tmp_path):
    model = tiny_model(tmp_path / "tiny")
    out = tmp_path / "run"
    script = tmp_path / "run.py"
    script.write_text(_RUN.format(root=str(ROOT), model=model, out=str(out)))
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            latest = ckpt.latest_checkpoint(out)
            if latest is not None and int(latest.name.split("-")[1]) >= 3:
                break
            assert proc.poll() is None, "training process ended early"
            time.sleep(0.05)
        else:
            raise AssertionError("no checkpoint written in time")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = ckpt.latest_checkpoint(out)
    step = int(killed_at.name.split("-")[1])
    # every complete checkpoint loads with plain transformers
    for d in (out / "checkpoints").glob("step-*"):
        if (d / ckpt.STATE_FILE).is_file():
            AutoModelForCausalLM.from_pretrained(d)
            AutoTokenizer.from_pretrained(d)
            ckpt.load_trainer_state(d)
    summary = train_grpo(base_config(model, out, steps=step + 2, save_every=1, keep_checkpoints=3))
    assert summary["steps"] == step + 2
    rows = read_jsonl(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, step + 3))
    AutoModelForCausalLM.from_pretrained(out)
    assert not list((out / "checkpoints").glob(".tmp-*"))
