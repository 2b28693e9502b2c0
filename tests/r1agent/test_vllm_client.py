"""The vllm-server client against fake servers (no vLLM needed).

``FakeServer`` (``http.server`` in a thread) speaks the endpoints ``r1agent serve`` offers:
``/v1/models``, ``/v1/completions`` (sampled tokens drawn from the request's seed, with
log-probs), ``/collective_rpc`` running the weight-sync extension's methods on a fake worker,
and ``/reset_prefix_cache``. Failures are injected per server.
"""

from __future__ import annotations

import base64
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file

from r1agent.infra.config import RolloutConfig
from r1agent.infra.models import load_model
from r1agent.rollout.factory import make_generate, server_client
from r1agent.rollout.vllm_server import (
    EXTENSION,
    VLLMServerClient,
    VLLMServerError,
    serve_command,
)

EOS = 2


class FakeServer:
    """A fake ``r1agent serve`` process on 127.0.0.1 (a free port)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.requests: list[dict[str, Any]] = []
        self.version = "initial"
        self.weights: dict[str, torch.Tensor] = {}
        self.chunks: list[bytes] = []
        self.resets = 0
        self.events: list[tuple[str, str]] = []  # ("gen" | "push", version at that moment)
        self.fail_chunk: int | None = None  # answer 500 on this http chunk index
        self.dev_mode = True
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- endpoints

    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            self.requests.append(body)
            self.events.append(("gen", self.version))
        choices = []
        for j in range(body["n"]):
            rng = random.Random(f"{body['prompt']}-{body['seed']}-{j}")
            length = rng.randint(1, body["max_tokens"])
            ids = [rng.randint(3, 90) for _ in range(length)]
            if length < body["max_tokens"] and length > body["min_tokens"]:
                ids[-1] = EOS
            logprobs = [-rng.random() for _ in ids]
            choices.append(
                {
                    "index": j,
                    "text": "ignored",
                    "token_ids": ids,
                    "logprobs": {"token_logprobs": logprobs, "tokens": [], "top_logprobs": []},
                    "finish_reason": "stop" if ids[-1] == EOS else "length",
                }
            )
        return {"choices": choices}

    def rpc(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        method, (arg,) = body["method"], body["args"]
        req = json.loads(arg)
        if method == "r1_version":
            return 200, {"results": [{"version": self.version, "rank": 0}]}
        if method == "r1_load_chunk":
            if req["index"] == self.fail_chunk:
                return 500, {"error": {"message": "worker died"}}
            if req["index"] == 0:
                self.chunks = []
            self.chunks.append(base64.b64decode(req["data"]))
            if req["final"]:
                for blob in self.chunks:
                    self.weights.update(load_safetensors(blob))
                self.version = req["version"]
                self.events.append(("push", self.version))
            return 200, {"results": [{"version": self.version}]}
        if method == "r1_receive_nccl":
            self.nccl_params = req["params"]
            self.version = req["version"]
            return 200, {"results": [{"version": self.version}]}
        if method == "r1_reload_files":
            self.version = "initial"
            return 200, {"results": [{"version": self.version}]}
        if method == "r1_load_file":
            self.weights.update(load_file(req["path"]))
            self.version = req["version"]
            return 200, {"results": [{"version": self.version}]}
        return 500, {"error": {"message": f"no method {method}"}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, payload: Any) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"data": [{"id": server.model}]})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                if self.path == "/v1/completions":
                    self._send(200, server.completions(body))
                elif self.path == "/collective_rpc" and server.dev_mode:
                    self._send(*server.rpc(body))
                elif self.path == "/reset_prefix_cache" and server.dev_mode:
                    server.resets += 1
                    self._send(200, {"success": True})
                else:
                    self._send(404, {"detail": "Not Found"})

        return Handler


@pytest.fixture()
def servers(tiny: Path):
    made = [FakeServer(str(tiny)), FakeServer(str(tiny))]
    yield made
    for s in made:
        s.close()


@pytest.fixture(scope="module")
def hf(tiny: Path):
    return load_model(str(tiny), dtype="float32", device="cpu")


def _client(servers: list[FakeServer], model: str, tokenizer: Any, **kw: Any) -> VLLMServerClient:
    return VLLMServerClient([s.url for s in servers], model, tokenizer=tokenizer, **kw)


# --------------------------------------------------------------------------- generation


def test_requests_spread_over_servers_and_completions_keep_order(servers, tiny, hf) -> None:
    model, tok = hf
    client = _client(servers, str(tiny), tok, eos_ids=[EOS])
    prompts = [[5, 6, 7]] * 3 + [[8, 9]] * 3 + [[10]] * 3 + [[11, 12]] * 3  # four groups of 3
    out = client.generate(prompts, max_new_tokens=6, temperature=0.7, top_p=1.0, seed=100)
    assert [c.prompt_ids for c in out] == prompts
    sent = [r for s in servers for r in s.requests]
    assert all(len(s.requests) == 2 for s in servers)  # round-robin: two groups each
    assert sorted(r["seed"] for r in sent) == [100, 103, 106, 109]  # seed + first index
    assert all(r["n"] == 3 and r["logprobs"] == 0 and r["return_token_ids"] for r in sent)
    assert all(r["stop_token_ids"] == [EOS] and r["temperature"] == 0.7 for r in sent)
    for c in out:
        assert len(c.logprobs) == len(c.completion_ids) >= 1
        assert c.truncated == (c.completion_ids[-1] != EOS)
        body = c.completion_ids if c.truncated else c.completion_ids[:-1]
        assert c.text == tok.decode(body, skip_special_tokens=False)
    groups = [tuple(map(tuple, (c.completion_ids for c in out[i : i + 3]))) for i in (0, 3)]
    assert all(len(set(g)) > 1 for g in groups)  # a group is n samples, not one repeated
    again = client.generate(prompts, max_new_tokens=6, temperature=0.7, seed=100)
    assert [c.completion_ids for c in again] == [c.completion_ids for c in out]


def test_client_is_a_generate_fn_with_string_prompts(servers, tiny, hf) -> None:
    model, tok = hf
    client = _client(servers[:1], str(tiny), None)
    out = client(model, tok, ["What is 1 + 1?", "Hi"], max_new_tokens=4, min_new_tokens=2)
    assert [c.prompt_ids for c in out] == [
        tok("What is 1 + 1?")["input_ids"],
        tok("Hi")["input_ids"],
    ]
    assert servers[0].requests[0]["min_tokens"] == 2


# --------------------------------------------------------------------------- bad input


def test_unreachable_server_names_the_url(servers, tiny) -> None:
    dead = FakeServer(str(tiny))
    dead.close()
    with pytest.raises(VLLMServerError, match=rf"{dead.url}/v1/models is unreachable"):
        VLLMServerClient([servers[0].url, dead.url], str(tiny))


def test_server_serving_another_model_is_refused(tiny) -> None:
    other = FakeServer("Qwen/Qwen2.5-0.5B")
    try:
        with pytest.raises(VLLMServerError, match=rf"{other.url} serves \['Qwen/Qwen2.5-0.5B'\]"):
            VLLMServerClient([other.url], str(tiny))
    finally:
        other.close()


def test_bad_urls_and_settings_are_named() -> None:
    with pytest.raises(ValueError, match="localhost:8000"):
        VLLMServerClient(["localhost:8000"], "m")
    with pytest.raises(ValueError, match="rollout.servers"):
        VLLMServerClient([], "m")
    with pytest.raises(ValueError, match="ftp://x"):
        RolloutConfig(engine="vllm-server", servers=["ftp://x"])
    with pytest.raises(ValueError, match="needs rollout.servers"):
        RolloutConfig(engine="vllm-server")


def test_server_without_dev_mode_is_named(servers, tiny, hf) -> None:
    model, tok = hf
    servers[1].dev_mode = False
    client = _client(servers, str(tiny), tok)
    with pytest.raises(VLLMServerError, match=rf"{servers[1].url} has no /collective_rpc"):
        client.sync_weights(model)


# --------------------------------------------------------------------------- weight push


@pytest.mark.parametrize("transport", ["http", "file"])
def test_push_reaches_every_server_with_a_new_version(servers, tiny, hf, tmp_path, transport):
    model, tok = hf
    client = _client(servers, str(tiny), tok, transport=transport, weight_dir=str(tmp_path))
    client.chunk_mb = 0.01  # several http chunks
    assert client.sync_weights(model) == len(model.state_dict())
    first = client.expected_version
    for s in servers:
        assert s.version == first and s.resets == 1
        assert s.weights.keys() == model.state_dict().keys()
        for name, t in model.state_dict().items():
            torch.testing.assert_close(s.weights[name], t)
    assert list(tmp_path.iterdir()) == []  # file pushes clean up
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    try:
        client.sync_weights(model)
        assert client.expected_version != first
        assert all(s.version == client.expected_version for s in servers)
        name, t = next(iter(model.state_dict().items()))
        torch.testing.assert_close(servers[1].weights[name], t)
    finally:
        with torch.no_grad():
            next(model.parameters()).sub_(1.0)


def test_push_failing_half_way_blocks_rollouts_until_a_good_push(servers, tiny, hf) -> None:
    model, tok = hf
    client = _client(servers, str(tiny), tok, transport="http", chunk_mb=0.01)
    client.sync_weights(model)
    servers[1].fail_chunk = 2
    with pytest.raises(VLLMServerError, match=rf"weight push to {servers[1].url} failed"):
        client.sync_weights(model)
    assert servers[0].version == client.expected_version != servers[1].version
    with pytest.raises(VLLMServerError, match=rf"{servers[1].url} holds weight version"):
        client.generate([[5, 6]], max_new_tokens=3)
    assert not servers[1].requests  # nothing was sampled from the old weights
    servers[1].fail_chunk = None
    client.sync_weights(model)
    assert len(client.generate([[5, 6]], max_new_tokens=3)) == 1


def test_version_check_fails_when_a_server_restarted(servers, tiny, hf) -> None:
    model, tok = hf
    client = _client(servers, str(tiny), tok)
    client.sync_weights(model)
    servers[0].version = "initial"  # the server restarted from the files
    with pytest.raises(VLLMServerError, match=rf"{servers[0].url} holds weight version.*initial"):
        client.generate([[5, 6]], max_new_tokens=3)


def test_a_fresh_client_wants_the_files_weights(servers, tiny, hf) -> None:
    model, tok = hf
    servers[1].version = "3f2a-7"  # a training run pushed weights into it
    client = _client(servers, str(tiny), tok)
    with pytest.raises(VLLMServerError, match=rf"{servers[1].url} .*pushed to it since"):
        client.generate([[5, 6]], max_new_tokens=3)
    client.load_files()
    assert len(client.generate([[5, 6]], max_new_tokens=3)) == 1


def test_factory_pushes_a_checkpoint_the_servers_do_not_serve(servers, tiny, hf) -> None:
    model, _ = hf
    for s in servers:
        s.model = "base-model"
    rollout = RolloutConfig(
        engine="vllm-server", servers=[s.url for s in servers], server_model="base-model"
    )
    fn = make_generate(rollout, tiny)
    assert isinstance(fn, VLLMServerClient) and fn.expected_version is not None
    assert all(s.version == fn.expected_version for s in servers)
    torch.testing.assert_close(servers[0].weights["lm_head.weight"], model.lm_head.weight)
    with pytest.raises(VLLMServerError, match="not the expected model"):
        make_generate(rollout.model_copy(update={"server_model": None}), tiny)
    assert server_client(rollout, "x").model == "base-model"


def test_serve_command_sets_up_weight_sync() -> None:
    argv, env = serve_command("m", port=9001, tensor_parallel_size=2, extra=["--max-num-seqs", "8"])
    assert argv[argv.index("--model") + 1] == "m"
    assert argv[argv.index("--worker-extension-cls") + 1] == EXTENSION
    assert argv[argv.index("--logprobs-mode") + 1] == "processed_logprobs"
    assert argv[argv.index("--tensor-parallel-size") + 1] == "2"
    assert argv[argv.index("--port") + 1] == "9001"
    assert argv[-2:] == ["--max-num-seqs", "8"]
    assert env["VLLM_SERVER_DEV_MODE"] == "1"


# --------------------------------------------------------------------------- the GRPO recipe


def _grpo_config(tiny: Path, out: Path, servers: list[FakeServer], **kw: Any) -> Any:
    from tests.r1agent.grpo_helpers import base_config, register_test_envs

    register_test_envs()
    rollout = {"engine": "vllm-server", "servers": [s.url for s in servers]}
    rollout["weight_transport"] = "http"
    return base_config(str(tiny), out, rollout=rollout, dtype="float32", device="cpu", **kw)


def test_grpo_pushes_before_the_first_rollout_and_after_every_step(servers, tiny, tmp_path):
    from r1agent.recipes.grpo import train_grpo

    summary = train_grpo(_grpo_config(tiny, tmp_path / "run", servers, steps=2))
    assert summary["steps"] == 2
    trained = load_model(str(tmp_path / "run"), dtype="float32", device="cpu")[0].state_dict()
    for s in servers:
        kinds = [k for k, _ in s.events]
        assert kinds[0] == "push" and kinds.count("push") == 3  # start + one per step
        last_push = 0
        for i, (kind, version) in enumerate(s.events):  # every rollout ran on the latest push
            if kind == "push":
                last_push = i
            else:
                assert version == s.events[last_push][1]
        for name, t in trained.items():
            torch.testing.assert_close(s.weights[name], t)


def test_grpo_sync_failure_stops_cleanly_and_resume_resyncs(servers, tiny, tmp_path) -> None:
    from r1agent.infra.checkpoint import latest_checkpoint
    from r1agent.recipes.grpo import train_grpo

    config = _grpo_config(tiny, tmp_path / "run", servers, steps=3, save_every=1)

    def break_server_after_step_1(step: int, metrics: dict[str, Any]) -> None:
        servers[1].fail_chunk = 0  # the push after step 2 fails on this server

    with pytest.raises(VLLMServerError, match=rf"weight push to {servers[1].url} failed"):
        train_grpo(config, callbacks=[break_server_after_step_1])
    ckpt = latest_checkpoint(tmp_path / "run")
    assert ckpt is not None and ckpt.name == "step-000001"
    load_model(str(ckpt), dtype="float32", device="cpu")  # the last checkpoint loads
    servers[1].fail_chunk = None
    for s in servers:
        s.events.clear()
    summary = train_grpo(config)
    assert summary["steps"] == 3
    for s in servers:
        assert s.events[0][0] == "push"  # re-synced before generating
        assert [k for k, _ in s.events].count("push") == 3  # resume + steps 2 and 3


def test_grpo_with_lora_pushes_merged_base_weights(servers, tiny, tmp_path) -> None:
    from peft import PeftModel

    from r1agent.recipes.grpo import train_grpo

    base = load_model(str(tiny), dtype="float32", device="cpu")[0]
    lora = {"r": 4, "alpha": 8}
    train_grpo(_grpo_config(tiny, tmp_path / "run", servers[:1], steps=2, lr=1e-2, lora=lora))
    pushed = servers[0].weights
    assert pushed.keys() == base.state_dict().keys()  # base naming, no adapter tensors
    merged = PeftModel.from_pretrained(base, str(tmp_path / "run")).merge_and_unload()
    moved = 0.0
    for name, t in merged.state_dict().items():
        torch.testing.assert_close(pushed[name], t, atol=1e-5, rtol=1e-5)
        moved = max(moved, float((t - load_file_weights(tiny)[name]).abs().max()))
    assert moved > 0  # the adapters learned something, and the push carries it


def load_file_weights(path: Path) -> dict[str, torch.Tensor]:
    from r1agent.rollout.factory import checkpoint_weights

    return dict(checkpoint_weights(path))


def test_cli_names_the_unreachable_server_and_serve_dry_run(tiny) -> None:
    from typer.testing import CliRunner

    from r1agent.cli import app

    dead = FakeServer(str(tiny))
    dead.close()
    args = ["eval", "--model", str(tiny), "--env", "r1/Arithmetic-v0", "--n", "1", "--k", "1"]
    res = CliRunner().invoke(app, [*args, "--engine", "vllm-server", "--server", dead.url])
    assert res.exit_code == 2 and f"{dead.url}/v1/models is unreachable" in res.output
    res = CliRunner().invoke(app, [*args, "--engine", "vllm-server"])
    assert res.exit_code == 2 and "needs rollout.servers" in res.output
    res = CliRunner().invoke(app, ["serve", str(tiny), "--port", "8123", "--dry-run"])
    assert res.exit_code == 0
    assert f"--model {tiny} --host 127.0.0.1 --port 8123" in res.output
    assert f"--worker-extension-cls {EXTENSION}" in res.output


def test_distill_teacher_and_rejection_sampling_sample_from_the_servers(servers, tiny, tmp_path):
    from r1agent.recipes.distill import DistillConfig, teacher_data
    from r1agent.recipes.stages import sampler

    rollout = {"engine": "vllm-server", "servers": [s.url for s in servers]}
    config = DistillConfig(
        teacher=str(tiny),
        student=str(tiny),
        output_dir=str(tmp_path / "d"),
        prompts=3,
        samples=2,
        max_new_tokens=5,
        rollout=rollout,
    )
    kept, counts = teacher_data(config)
    assert counts["samples"] == 6
    assert sum(len(s.requests) for s in servers) == 3  # one request (n=2) per problem
    assert all(r["n"] == 2 and r["max_tokens"] == 5 for s in servers for r in s.requests)
    model, tok, fn = sampler(tiny, RolloutConfig(**rollout))
    assert model is None and isinstance(fn, VLLMServerClient) and tok is not None


class FakeComm:
    """Stands in for the trainer's ``PyNcclCommunicator`` (rank 1 of 2)."""

    def __init__(self) -> None:
        self.sent: list[torch.Tensor] = []
        self.group = type("G", (), {"rank": 1, "barrier": lambda self: None})()

    def broadcast(self, tensor: torch.Tensor, src: int) -> None:
        assert src == 1  # the trainer is the source
        self.sent.append(tensor.clone())


def test_nccl_push_announces_each_tensor_then_broadcasts_it_in_order(servers, tiny, hf) -> None:
    model, tok = hf
    client = _client(servers[:1], str(tiny), tok, transport="nccl")
    comm = FakeComm()
    client._comms[servers[0].url] = comm  # the group is set up (needs CUDA and vLLM)
    client.sync_weights(model)
    state = model.state_dict()
    assert servers[0].nccl_params == [
        [name, str(t.dtype).removeprefix("torch."), list(t.shape)] for name, t in state.items()
    ]
    assert len(comm.sent) == len(state)
    for sent, t in zip(comm.sent, state.values(), strict=True):
        torch.testing.assert_close(sent, t)
    assert servers[0].version == client.expected_version and servers[0].resets == 1
