"""Rollouts from vLLM servers (``rollout.engine: vllm-server``) and the weight push to them.

:class:`VLLMServerClient` is a ``GenerateFn`` (:mod:`r1agent.rollout.engine`) whose samples
come from one or more ``vllm serve`` processes started with ``r1agent serve MODEL``
(:func:`serve_command`: our worker extension, ``VLLM_SERVER_DEV_MODE=1`` for
``/collective_rpc`` and ``/reset_prefix_cache``, log-probs after temperature, no generation
defaults from the model's files). Only the standard library speaks HTTP.

Generation: prompts are token ids; each run of equal consecutive prompts (a GRPO group) is
one ``POST /v1/completions`` request with ``n`` = the run's length, ``logprobs: 0`` and
``return_token_ids``, so every :class:`~r1agent.rollout.engine.Completion` carries the sampled
tokens' log-probs. Requests go round-robin over the servers and run concurrently (vLLM
batches them). With a seed, the run starting at prompt ``i`` is seeded ``seed + i`` and vLLM
seeds its ``n`` samples ``seed + i + j``, as the in-process engine seeds prompt ``i + j``.

Weights: :meth:`VLLMServerClient.sync_weights` pushes the trainer's tensors to every server
(``http`` chunks of safetensors bytes, a ``file`` on a shared filesystem, or ``nccl``
broadcasts on GPUs, :mod:`r1agent.rollout.vllm_worker_ext`), resets the prefix cache and
reads back the version the workers recorded. The version expected from then on is the new
one, and every generation call first checks that each server holds it, so rollouts never run
against old weights, even after a push failed half way. Under torch.distributed rank 0
pushes and broadcasts the version (or its error) to the other ranks.

Every failure is a :class:`VLLMServerError` naming the server's URL: unreachable, serving
another model (``/v1/models``), not started by ``r1agent serve`` (no ``/collective_rpc``),
holding another weight version, or a push that broke off.
"""

from __future__ import annotations

import base64
import importlib
import itertools
import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import save as save_safetensors
from safetensors.torch import save_file

from r1agent.infra.models import default_device, resolve_dtype
from r1agent.rollout.engine import Completion, encode_prompts, eos_token_ids
from r1agent.rollout.vllm_engine import _named_weights

__all__ = [
    "EXTENSION",
    "INITIAL",
    "VLLMServerClient",
    "VLLMServerError",
    "same_model",
    "serve_command",
]

#: The version of a server's weights before any push: the served model's own files.
INITIAL = "initial"

#: The worker extension ``r1agent serve`` installs on every vLLM worker.
EXTENSION = "r1agent.rollout.vllm_worker_ext.WeightSyncExtension"


class VLLMServerError(RuntimeError):
    """A vLLM server could not serve a request; the message names its URL."""


# --------------------------------------------------------------------------- HTTP


def http_json(url: str, body: Any = None, *, timeout: float = 30.0) -> Any:
    """``GET`` (``body is None``) or ``POST`` JSON to ``url``; the decoded JSON reply.

    Raises:
        VLLMServerError: naming ``url`` when it cannot be reached, answers with an HTTP
            error (its message included) or with something that is not JSON.
    """
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:500]
        raise VLLMServerError(f"vLLM server {url} answered HTTP {exc.code}: {detail}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise VLLMServerError(f"vLLM server {url} is unreachable: {reason}") from exc
    if not raw:
        return None
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise VLLMServerError(f"vLLM server {url} answered with non-JSON: {raw[:200]!r}") from exc


def same_model(served: str, expected: str) -> bool:
    """Names equal, or both paths of one directory (``vllm serve ./m`` vs ``/abs/m``)."""
    if served == expected:
        return True
    if os.path.exists(served) and os.path.exists(expected):
        return os.path.realpath(served) == os.path.realpath(expected)
    return False


@dataclass
class _Request:
    """One ``/v1/completions`` call: a run of ``n`` equal prompts starting at ``start``."""

    start: int
    prompt_ids: list[int]
    n: int


def _runs(ids: Sequence[list[int]]) -> list[_Request]:
    """Runs of equal consecutive prompts (GRPO groups) as requests."""
    out: list[_Request] = []
    for i, p in enumerate(ids):
        if out and out[-1].prompt_ids == p:
            out[-1].n += 1
        else:
            out.append(_Request(i, p, 1))
    return out


# --------------------------------------------------------------------------- the client


class VLLMServerClient:
    """A rollout engine backed by vLLM servers, with the trainer's weight push.

    Args:
        servers: base URLs (``http://host:port``), one per ``r1agent serve`` process.
        model: the model name the servers must serve (checked against ``/v1/models``).
        tokenizer: encodes string prompts and decodes completions (``__call__`` takes the
            caller's); ``None``: the caller always passes one.
        eos_ids: ids that end a completion (default: from the tokenizer and ``model``'s
            generation config when known).
        transport: ``auto`` (``nccl`` for CUDA tensors with vLLM importable, else ``http``),
            ``http``, ``file`` or ``nccl``.
        weight_dir: where ``file`` pushes write (a filesystem the servers share).
        timeout: seconds a generation or weight-push request may take.
        sync_port: first port of the NCCL groups (server ``i`` uses ``sync_port + i``).
        chunk_mb: ``http`` pushes send safetensors chunks of about this many MiB.
        rank, world: this process in torch.distributed (rank 0 pushes the weights).
        check: query ``/v1/models`` of every server now.

    Raises:
        ValueError: for no server, a URL that is not ``http(s)://`` or an unknown transport.
        VLLMServerError: (with ``check``) a server unreachable or serving another model.
    """

    def __init__(
        self,
        servers: Sequence[str],
        model: str,
        *,
        tokenizer: Any = None,
        eos_ids: Sequence[int] | None = None,
        transport: str = "auto",
        weight_dir: str | None = None,
        timeout: float = 600.0,
        sync_port: int = 51216,
        chunk_mb: float = 256.0,
        rank: int = 0,
        world: int = 1,
        check: bool = True,
    ) -> None:
        if not servers:
            raise ValueError("rollout.engine vllm-server needs rollout.servers: [URL, ...]")
        bad = [s for s in servers if not str(s).startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"a vLLM server URL must start with http(s)://, got: {bad}")
        if transport not in ("auto", "http", "file", "nccl"):
            raise ValueError(f"transport must be auto, http, file or nccl, transport: {transport}")
        self.servers = [str(s).rstrip("/") for s in servers]
        self.model, self.tokenizer = str(model), tokenizer
        self.eos_ids = list(eos_ids) if eos_ids is not None else None
        self.transport, self.weight_dir = transport, weight_dir
        self.timeout, self.sync_port, self.chunk_mb = timeout, sync_port, chunk_mb
        self.rank, self.world = rank, world
        self.expected_version = INITIAL  # the served model's own files, until a push
        self._run_id, self._pushes = uuid.uuid4().hex[:12], 0
        self._comms: dict[str, Any] = {}
        self._cursor = rank  # ranks start their round-robin on different servers
        if check:
            self.check_servers()

    # ------------------------------------------------------------------ checks

    def check_servers(self) -> None:
        """Every server is reachable and serves :attr:`model`.

        Raises:
            VLLMServerError: naming the URL (and, for another model, what it serves).
        """
        for url in self.servers:
            reply = http_json(f"{url}/v1/models", timeout=30.0)
            served = [m.get("id", "") for m in (reply or {}).get("data", [])]
            if not any(same_model(s, self.model) for s in served):
                raise VLLMServerError(
                    f"vLLM server {url} serves {served}, not the expected model {self.model!r} "
                    "(start it with `r1agent serve MODEL`, or set rollout.server_model)"
                )

    def rpc(self, url: str, method: str, request: dict[str, Any] | None = None) -> list[Any]:
        """Call a :mod:`~r1agent.rollout.vllm_worker_ext` method on every worker of ``url``.

        Raises:
            VLLMServerError: naming ``url``; a 404 means the server was not started with
                ``VLLM_SERVER_DEV_MODE=1`` (``r1agent serve`` sets it).
        """
        body = {"method": method, "args": [json.dumps(request or {})], "timeout": self.timeout}
        try:
            reply = http_json(f"{url}/collective_rpc", body, timeout=self.timeout)
        except VLLMServerError as exc:
            if "HTTP 404" in str(exc):
                raise VLLMServerError(
                    f"vLLM server {url} has no /collective_rpc: start it with `r1agent serve` "
                    "(VLLM_SERVER_DEV_MODE=1 and the r1agent worker extension)"
                ) from exc
            raise
        return list((reply or {}).get("results", []))

    def server_versions(self, url: str) -> list[str]:
        """The weight version each worker of ``url`` holds."""
        return [str(r.get("version")) for r in self.rpc(url, "r1_version")]

    def check_version(self) -> None:
        """Every worker of every server holds :attr:`expected_version`.

        Before this client's first push that is ``"initial"``: the served model's own files.

        Raises:
            VLLMServerError: naming the server whose weights are not the expected ones.
        """
        for url in self.servers:
            got = self.server_versions(url)
            if got and all(v == self.expected_version for v in got):
                continue
            why = (
                "weights were pushed to it since it loaded the model's files (restart it, or "
                "call VLLMServerClient.load_files())"
                if self.expected_version == INITIAL
                else "the last weight sync did not reach it"
            )
            raise VLLMServerError(
                f"vLLM server {url} holds weight version(s) {got}, expected "
                f"{self.expected_version!r}: {why}; no rollout runs on other weights"
            )

    def load_files(self) -> None:
        """Make every server reload its model's own files (version ``"initial"``)."""
        for url in self.servers:
            self.rpc(url, "r1_reload_files")
            http_json(f"{url}/reset_prefix_cache", {}, timeout=60.0)
        self.expected_version = INITIAL
        self.check_version()

    # ------------------------------------------------------------------ generation

    def _body(self, req: _Request, eos: Sequence[int], seed: int | None, **kw: Any) -> dict:
        return {
            "model": self.model,
            "prompt": req.prompt_ids,
            "n": req.n,
            "max_tokens": kw["max_new_tokens"],
            "min_tokens": kw["min_new_tokens"],
            "temperature": kw["temperature"],
            "top_p": kw["top_p"],
            "seed": None if seed is None else int(seed) + req.start,
            "logprobs": 0,
            "stop_token_ids": list(eos),
            "return_token_ids": True,
            "skip_special_tokens": False,
        }

    def _complete(self, url: str, body: dict, eos: set[int]) -> list[Completion]:
        reply = http_json(f"{url}/v1/completions", body, timeout=self.timeout)
        choices = sorted((reply or {}).get("choices", []), key=lambda ch: ch["index"])
        if len(choices) != body["n"]:
            raise VLLMServerError(
                f"vLLM server {url} returned {len(choices)} completions for n={body['n']}"
            )
        out = []
        for ch in choices:
            ids = [int(t) for t in ch.get("token_ids") or []]
            lps = (ch.get("logprobs") or {}).get("token_logprobs")
            if lps is not None and len(lps) != len(ids):
                raise VLLMServerError(
                    f"vLLM server {url} returned {len(lps)} log-probs for {len(ids)} tokens"
                )
            logprobs = None if lps is None else [float(x) for x in lps]
            truncated = not (ids and ids[-1] in eos)
            out.append(Completion(list(body["prompt"]), ids, "", logprobs, truncated))
        return out

    def generate(
        self,
        prompts: Sequence[str] | Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        min_new_tokens: int = 0,
        seed: int | None = None,
        batch_size: int | None = None,
        tokenizer: Any = None,
        eos_ids: Sequence[int] | None = None,
    ) -> list[Completion]:
        """Sample one completion per prompt from the servers, like :func:`r1agent.rollout.generate`.

        Args:
            prompts: strings (encoded with the tokenizer) or lists of token ids.
            max_new_tokens: completion cap in tokens.
            temperature: sampling temperature; 0 means greedy.
            top_p: nucleus sampling mass (1.0 disables it).
            min_new_tokens: eos is forbidden before this many tokens.
            seed: see the module docstring; ``None`` leaves vLLM's generator.
            batch_size: accepted for call compatibility; the servers schedule their batches.
            tokenizer: overrides the client's tokenizer for this call.
            eos_ids: overrides the client's end ids for this call.

        Returns:
            One :class:`~r1agent.rollout.engine.Completion` per prompt, in order.

        Raises:
            ValueError: for ``max_new_tokens < 1``, ``top_p`` outside ``(0, 1]``, an empty
                prompt or no tokenizer.
            VLLMServerError: naming the server that failed (or holds old weights).
        """
        del batch_size
        tok = tokenizer or self.tokenizer
        if tok is None:
            raise ValueError("VLLMServerClient.generate needs a tokenizer (none was given)")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, max_new_tokens: {max_new_tokens}")
        if not 0 < top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], top_p: {top_p}")
        ids = encode_prompts(tok, prompts)
        if any(len(x) == 0 for x in ids):
            raise ValueError("every prompt needs at least one token (got an empty prompt)")
        eos = list(eos_ids or self.eos_ids or eos_token_ids(None, tok))
        self.check_version()
        kw = dict(max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens)
        kw.update(temperature=temperature, top_p=top_p)
        reqs = _runs(ids)
        urls = [self.servers[(self._cursor + i) % len(self.servers)] for i in range(len(reqs))]
        self._cursor += len(reqs)
        with ThreadPoolExecutor(max_workers=max(1, min(64, len(reqs)))) as pool:
            futures = [
                pool.submit(self._complete, url, self._body(r, eos, seed, **kw), set(eos))
                for r, url in zip(reqs, urls, strict=True)
            ]
            results = list(itertools.chain.from_iterable(f.result() for f in futures))
        texts = tok.batch_decode(
            [c.completion_ids if c.truncated else c.completion_ids[:-1] for c in results],
            skip_special_tokens=False,
        )
        for c, text in zip(results, texts, strict=True):
            c.text = text
        return results

    def __call__(
        self,
        model: Any,
        tokenizer: Any,
        prompts: Sequence[str] | Sequence[Sequence[int]],
        **kw: Any,
    ) -> list[Completion]:
        """:func:`r1agent.rollout.generate`'s signature, so the client is a ``generate_fn``.

        ``model`` only supplies its generation config's eos ids; the servers sample from
        their own copy of the weights (kept current with :meth:`sync_weights`).
        """
        eos = self.eos_ids or (eos_token_ids(model, tokenizer) if tokenizer is not None else None)
        return self.generate(prompts, tokenizer=tokenizer, eos_ids=eos, **kw)

    # ------------------------------------------------------------------ weight push

    def sync_weights(self, model: torch.nn.Module | Iterable[tuple[str, torch.Tensor]]) -> int:
        """Push the trainer's weights to every server and make them the expected version.

        Rank 0 pushes (other ranks' ``model`` is not read); under torch.distributed with
        ``world > 1`` every rank must call this, and all learn the new version (or rank 0's
        error) by broadcast.

        Args:
            model: the policy (its ``state_dict``; wrapper prefixes stripped) or
                ``(name, tensor)`` pairs in checkpoint naming.

        Returns:
            The number of tensors pushed (0 on ranks other than 0).

        Raises:
            VLLMServerError: naming the server where the push failed.
        """
        sent, version, error = 0, self._next_version(), None
        if self.rank == 0:
            try:
                sent = self.push(_named_weights(model), version)
            except Exception as exc:  # broadcast below, so no rank hangs
                error = f"{type(exc).__name__}: {exc}"
        if self.world > 1 and dist.is_available() and dist.is_initialized():
            box = [(version, error)]
            dist.broadcast_object_list(box, src=0)
            version, error = box[0]
        self.expected_version = version
        if error is not None:
            raise VLLMServerError(f"weight sync failed: {error}")
        return sent

    def _next_version(self) -> str:
        self._pushes += 1
        return f"{self._run_id}-{self._pushes}"

    def push(self, weights: Iterable[tuple[str, torch.Tensor]], version: str) -> int:
        """Send ``weights`` to every server as ``version``, reset prefix caches, verify.

        The expected version is set first: if the push breaks off, no rollout runs until a
        later push succeeds.

        Returns:
            The number of tensors sent.

        Raises:
            VLLMServerError: naming the server where it failed.
        """
        self.expected_version = version
        pairs = list(weights)
        transport = self._transport(pairs)
        for i, url in enumerate(self.servers):
            try:
                if transport == "nccl":
                    self._push_nccl(i, url, pairs, version)
                elif transport == "file":
                    self._push_file(url, pairs, version)
                else:
                    self._push_http(url, pairs, version)
            except VLLMServerError as exc:
                raise VLLMServerError(f"weight push to {url} failed: {exc}") from exc
            except Exception as exc:
                raise VLLMServerError(
                    f"weight push to {url} failed: {type(exc).__name__}: {exc}"
                ) from exc
            http_json(f"{url}/reset_prefix_cache", {}, timeout=60.0)
        self.check_version()
        return len(pairs)

    def _transport(self, pairs: list[tuple[str, torch.Tensor]]) -> str:
        if self.transport != "auto":
            return self.transport
        on_cuda = any(t.is_cuda for _, t in pairs[:1])
        return "nccl" if on_cuda and _vllm_importable() else "http"

    def _push_http(self, url: str, pairs: list[tuple[str, torch.Tensor]], version: str) -> None:
        chunks = list(_chunks(pairs, int(self.chunk_mb * 2**20)))
        for index, chunk in enumerate(chunks):
            request = {
                "data": base64.b64encode(save_safetensors(_cpu_tensors(chunk))).decode(),
                "index": index,
                "final": index == len(chunks) - 1,
                "version": version,
            }
            self.rpc(url, "r1_load_chunk", request)

    def _push_file(self, url: str, pairs: list[tuple[str, torch.Tensor]], version: str) -> None:
        folder = Path(self.weight_dir or tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"r1agent-weights-{version}.safetensors"
        save_file(_cpu_tensors(pairs), str(path))
        try:
            self.rpc(url, "r1_load_file", {"path": str(path.resolve()), "version": version})
        finally:
            path.unlink(missing_ok=True)

    def _push_nccl(
        self, index: int, url: str, pairs: list[tuple[str, torch.Tensor]], version: str
    ) -> None:
        comm = self._comms.get(url) or self._init_nccl(index, url)
        params = [[n, str(t.dtype).removeprefix("torch."), list(t.shape)] for n, t in pairs]
        with ThreadPoolExecutor(max_workers=1) as pool:  # the rpc returns once all arrived
            reply = pool.submit(
                self.rpc, url, "r1_receive_nccl", {"params": params, "version": version}
            )
            for _, tensor in pairs:
                comm.broadcast(tensor.contiguous(), src=comm.group.rank)
                comm.group.barrier()
            reply.result()

    def _init_nccl(self, index: int, url: str) -> Any:
        """Join ``url``'s workers in one NCCL group (the trainer is the last rank)."""
        PyNcclCommunicator, StatelessProcessGroup = nccl_classes()

        workers = len(self.rpc(url, "r1_version"))
        host = urllib.parse.urlparse(url).hostname or "127.0.0.1"
        port = self.sync_port + index
        # worker 0 listens on every interface (as TRL's server does); we connect to its host
        request = {"host": "0.0.0.0", "port": port, "world_size": workers + 1}
        with ThreadPoolExecutor(max_workers=1) as pool:  # the workers block until we join
            reply = pool.submit(self.rpc, url, "r1_init_nccl", request)
            group = StatelessProcessGroup.create(
                host=host, port=port, rank=workers, world_size=workers + 1
            )
            comm = PyNcclCommunicator(group, device=torch.cuda.current_device())
            reply.result()
        self._comms[url] = comm
        return comm

    def close(self) -> None:
        """Drop the NCCL groups (the servers keep running)."""
        for url in list(self._comms):
            try:
                self.rpc(url, "r1_close_nccl")
            except VLLMServerError:
                pass
            del self._comms[url]


# --------------------------------------------------------------------------- helpers


def nccl_classes() -> tuple[Any, Any]:
    """vLLM's ``PyNcclCommunicator`` and ``StatelessProcessGroup`` (vLLM must be installed)."""
    pynccl = importlib.import_module("vllm.distributed.device_communicators.pynccl")
    utils = importlib.import_module("vllm.distributed.utils")
    return pynccl.PyNcclCommunicator, utils.StatelessProcessGroup


def _vllm_importable() -> bool:
    try:
        import vllm  # noqa: F401
    except Exception:
        return False
    return True


def _cpu_tensors(pairs: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies, one storage each (safetensors refuses shared storage)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in pairs:
        t = tensor.detach().to("cpu").contiguous()
        if t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def _chunks(
    pairs: list[tuple[str, torch.Tensor]], limit: int
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Consecutive groups of tensors of about ``limit`` bytes (at least one tensor each)."""
    chunk: list[tuple[str, torch.Tensor]] = []
    size = 0
    for name, tensor in pairs:
        nbytes = tensor.numel() * tensor.element_size()
        if chunk and size + nbytes > limit:
            yield chunk
            chunk, size = [], 0
        chunk.append((name, tensor))
        size += nbytes
    if chunk or not pairs:
        yield chunk


def serve_command(
    model: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    tensor_parallel_size: int = 1,
    dtype: str = "auto",
    max_model_len: int | None = None,
    gpu_memory_utilization: float | None = None,
    seed: int = 0,
    extra: Sequence[str] = (),
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment ``r1agent serve`` runs: vLLM's OpenAI server (what
    ``vllm serve`` runs) in this Python, with the weight-sync worker extension.

    ``dtype: auto`` is the trainer's default (bf16 on GPU, fp32 on CPU), so server and
    trainer log-probs agree. On CPU the KV cache gets 1 GiB unless
    ``VLLM_CPU_KVCACHE_SPACE`` says otherwise.

    Returns:
        ``(argv, env)``.
    """
    if dtype == "auto":
        dtype = str(resolve_dtype("auto", default_device())).removeprefix("torch.")
    # vLLM's OpenAI server module, not the `vllm` script: that one reads the `vllm`
    # distribution's version, which the `vllm-cpu` distribution does not provide.
    argv = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model)]
    argv += ["--host", host, "--port", str(port)]
    argv += ["--tensor-parallel-size", str(tensor_parallel_size), "--dtype", dtype]
    argv += ["--worker-extension-cls", EXTENSION, "--logprobs-mode", "processed_logprobs"]
    argv += ["--generation-config", "vllm", "--seed", str(seed)]
    if max_model_len is not None:
        argv += ["--max-model-len", str(max_model_len)]
    if gpu_memory_utilization is not None:
        argv += ["--gpu-memory-utilization", str(gpu_memory_utilization)]
    env = dict(os.environ)
    env["VLLM_SERVER_DEV_MODE"] = "1"
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    return [*argv, *extra], env
