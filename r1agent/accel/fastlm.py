"""A lean forward pass for Llama-family decoders, used for rollouts and the GRPO update.

Hugging Face's modeling code is general: per call it builds masks, walks a cache object,
dispatches the attention implementation and runs hooks. For a small model on a CPU that
bookkeeping costs more than the arithmetic (one decode step of the 1M-parameter tiny model
spends most of its time outside matrix products). This module reads the **same parameter
tensors** of a ``Qwen2ForCausalLM``, ``LlamaForCausalLM``, ``MistralForCausalLM`` or
``Qwen3ForCausalLM`` (no copies, so it always sees the current weights) and runs the
forward with plain tensor ops:

* :func:`decode` — batched sampling with a preallocated KV cache. Identical prompts (a
  GRPO group repeats its prompt ``G`` times) are pre-filled once and their cache rows
  copied.
* :func:`prefix_shared_logits` — the training forward for ``[prompt | response]`` rows
  where many rows share a prompt: each distinct prompt goes through the model once and
  every response attends to its prompt's keys and values (gradients flow back to the
  shared prompt computation). With 8 episodes per prompt this removes 7/8 of the prompt
  tokens from the update's forward and backward passes.

On a CPU in float32 the attention decoding step, RMSNorm, SwiGLU and rotary embedding run
as fused loops from :mod:`r1agent.native` (torch ops otherwise, computing the same thing).

:func:`supports` says whether a model can use it; callers fall back to the Hugging Face
forward otherwise (other architectures, rope types that depend on the sequence length,
sliding-window attention, wrapped models). Tests check logits, sampled log-probs and
gradients against the Hugging Face forward.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from r1agent.accel import cpu, native

__all__ = [
    "FORWARDS",
    "decode",
    "left_pad",
    "prefix_shared_hidden",
    "prefix_shared_logits",
    "supports",
    "unique_prompts",
    "use_fast",
]

#: The ``forward`` setting's choices: ``auto``, Hugging Face's forward, this module's.
FORWARDS = ("auto", "hf", "fast")

_ARCHS = {"Qwen2ForCausalLM", "LlamaForCausalLM", "MistralForCausalLM", "Qwen3ForCausalLM"}
_STATIC_ROPE = {"default", "linear", "llama3", "yarn"}  # inv_freq fixed at load time

SampleFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def supports(model: Any) -> bool:
    """Whether ``model`` is a plain Llama-family causal LM this module can run."""
    if type(model).__name__ not in _ARCHS:
        return False
    cfg = model.config
    rope = getattr(cfg, "rope_parameters", None) or getattr(cfg, "rope_scaling", None) or {}
    rope_type = rope.get("rope_type", rope.get("type", "default")) if rope else "default"
    if rope_type not in _STATIC_ROPE:
        return False
    if getattr(cfg, "hidden_act", "silu") != "silu" or getattr(cfg, "mlp_bias", False):
        return False
    if getattr(cfg, "pretraining_tp", 1) != 1:
        return False
    if any(getattr(layer.self_attn, "sliding_window", None) for layer in model.model.layers):
        return False
    types = getattr(cfg, "layer_types", None)
    return not types or all(t == "full_attention" for t in types)


def use_fast(model: Any, forward: str = "auto", *, distributed: bool = False) -> bool:
    """Whether ``model`` runs on this module under the ``forward`` setting.

    ``hf``: never. ``fast``: always (an error where it cannot). ``auto``: on CPU in float32
    for the models :func:`supports`, in one process; Hugging Face's forward elsewhere (on
    a GPU it stays on the well-trodden path). Under DDP/FSDP (``distributed``) the update
    must run through the wrapper's forward, so ``auto`` means Hugging Face's there.

    Raises:
        ValueError: for an unknown setting, or ``fast`` with a model this module does not
            support or under DDP/FSDP.
    """
    if forward not in FORWARDS:
        raise ValueError(f"forward must be one of {', '.join(FORWARDS)}, forward: {forward!r}")
    if forward == "hf":
        return False
    supported = supports(model)
    if forward == "fast":
        if not supported:
            raise ValueError(
                f"forward: fast needs a plain Llama-family model (Qwen2/3, Llama, Mistral "
                f"without sliding windows), model: {type(model).__name__}"
            )
        if distributed:
            raise ValueError("forward: fast cannot run under DDP/FSDP; use forward: auto or hf")
        return True
    param = next(model.parameters(), None)
    return (
        supported
        and not distributed
        and param is not None
        and param.device.type == "cpu"
        and param.dtype == torch.float32
    )


# --------------------------------------------------------------------------- building blocks


def _rms(x: torch.Tensor, norm: Any) -> torch.Tensor:
    """RMSNorm as Hugging Face computes it (statistics in float32)."""
    if native.usable(x, norm.weight):  # one pass (torch's fused op is several on a CPU)
        return native.rms_norm(x, norm.weight, norm.variance_epsilon)
    if x.dtype == torch.float32:  # one fused op, bitwise the same result in float32
        return F.rms_norm(x, x.shape[-1:], norm.weight, norm.variance_epsilon)
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
    return norm.weight * xf.to(x.dtype)


def _rope_angles(model: Any, positions: torch.Tensor) -> tuple[torch.Tensor, float]:
    """``positions × inv_freq`` of shape ``positions.shape + (head_dim / 2,)``, and the
    rope's attention scaling."""
    rot = model.model.rotary_emb
    freqs = positions[..., None].float() * rot.inv_freq.float()
    return freqs, getattr(rot, "attention_scaling", 1.0)


def _rope(model: Any, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """``(cos, signed sin)`` of shape ``positions.shape + (head_dim,)``; the sine's first
    half is negated, as :func:`_rotate` wants it."""
    freqs, scale = _rope_angles(model, positions)
    cos = torch.cat((freqs, freqs), dim=-1).cos() * scale
    sin = torch.cat((-freqs, freqs), dim=-1).sin() * scale  # sin is odd: -sin(f) = sin(-f)
    return cos.to(dtype), sin.to(dtype)


def _rotate(x: torch.Tensor, cos: torch.Tensor, signed_sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding, ``x·cos + rotate_half(x)·sin``: ``rotate_half(x)`` is ``x`` rolled
    by half a head with its first half negated, the sign carried by ``signed_sin``."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, dims=-1), signed_sin)


def _qkv(
    attn: Any, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rotated ``q (..., H, T, D)``, ``k``/``v (..., Hkv, T, D)`` of ``h (..., T, hidden)``."""
    d = attn.head_dim
    shape = (*h.shape[:-1], -1, d)
    q = attn.q_proj(h).view(shape)
    k = attn.k_proj(h).view(shape)
    v = attn.v_proj(h).view(shape)
    if hasattr(attn, "q_norm"):  # Qwen3
        q, k = _rms(q, attn.q_norm), _rms(k, attn.k_norm)
    if native.usable(q, k, cos, sin):  # rotation and head transpose in one pass
        half = d // 2  # cos's halves are equal, and signed_sin's second half is +sin
        c, s = cos[..., :half], sin[..., half:]
        return native.rope(q, c, s), native.rope(k, c, s), v.transpose(-3, -2)
    q, k, v = q.transpose(-3, -2), k.transpose(-3, -2), v.transpose(-3, -2)
    cos, sin = cos.unsqueeze(-3), sin.unsqueeze(-3)  # broadcast over heads
    return _rotate(q, cos, sin), _rotate(k, cos, sin), v


def _mlp(mlp: Any, h: torch.Tensor) -> torch.Tensor:
    gate, up = mlp.gate_proj(h), mlp.up_proj(h)
    if native.usable(gate, up):  # one pass forward and backward instead of three ops each
        return mlp.down_proj(native.swiglu(gate, up))
    return mlp.down_proj(F.silu(gate) * up)


def _attend(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, scale: float
) -> torch.Tensor:
    """Attention ``(B, H, T, D)`` with grouped KV heads and a boolean ``mask`` (True = attend)."""
    gqa = q.shape[1] != k.shape[1]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale, enable_gqa=gqa)


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, D) -> (B, T, H*D)``."""
    return x.transpose(1, 2).flatten(2)


def _layers_full(
    model: Any, x: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
    """Run ``x (B, T, hidden)`` through every layer; returns the final hidden and each layer's K, V."""
    cos, sin = _rope(model, positions, x.dtype)
    kvs = []
    for layer in model.model.layers:
        attn = layer.self_attn
        q, k, v = _qkv(attn, _rms(x, layer.input_layernorm), cos, sin)
        kvs.append((k, v))
        x = x + attn.o_proj(_merge_heads(_attend(q, k, v, mask, attn.scaling)))
        x = x + _mlp(layer.mlp, _rms(x, layer.post_attention_layernorm))
    return x, kvs


def _padded_causal(valid: torch.Tensor) -> torch.Tensor:
    """``(B, 1, T, T)`` mask: causal, never attending to padding; pad queries see themselves."""
    t = valid.shape[1]
    causal = torch.ones(t, t, dtype=torch.bool, device=valid.device).tril()
    mask = causal & valid[:, None, None, :]
    return mask | torch.eye(t, dtype=torch.bool, device=valid.device)  # no all-masked rows


def unique_prompts(prompts: list[list[int]]) -> tuple[list[list[int]], list[int]]:
    """Distinct prompts (first-seen order) and, per input row, the index of its prompt."""
    index: dict[tuple[int, ...], int] = {}
    rows = [index.setdefault(tuple(p), len(index)) for p in prompts]
    return [list(p) for p in index], rows


def left_pad(
    prompts: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-padded ``ids``, ``valid`` mask and position ids, each ``(U, P)``."""
    p = max(len(x) for x in prompts)
    ids = torch.full((len(prompts), p), pad_id, dtype=torch.long)
    valid = torch.zeros((len(prompts), p), dtype=torch.bool)
    for i, x in enumerate(prompts):
        ids[i, p - len(x) :] = torch.tensor(x, dtype=torch.long)
        valid[i, p - len(x) :] = True
    positions = (valid.long().cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), valid.to(device), positions.to(device)


# --------------------------------------------------------------------------- decoding


@torch.inference_mode()
def decode(
    model: Any,
    prompts: list[list[int]],
    *,
    pad_id: int,
    eos: torch.Tensor,
    max_new_tokens: int,
    min_new_tokens: int,
    sample: SampleFn,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample up to ``max_new_tokens`` per prompt; ``(tokens (B,N), logprobs (B,N), lengths (B,))``.

    Rows that produced an eos token get ``pad_id`` afterwards and stop counting; once a
    quarter of the rows being decoded have finished they leave the batch (their cache rows
    are dropped), and decoding stops when every row has finished.
    ``sample(logits) -> (tokens, logprobs)``.
    """
    device = model.model.embed_tokens.weight.device
    distinct, rows = unique_prompts(prompts)
    ids, valid, positions = left_pad(distinct, pad_id, device)
    row_index = torch.tensor(rows, device=device)
    b, p = len(prompts), ids.shape[1]
    x, kvs = _layers_full(model, model.model.embed_tokens(ids), positions, _padded_causal(valid))
    last = _rms(x[:, -1], model.model.norm)
    logits = _linear(model.lm_head, last)[row_index].float()  # (B, V)

    cfg = model.config
    n_kv = kvs[0][0].shape[1]
    fused = _fuse(model)
    if fused is not None:  # the fused layers keep each key head interleaved
        kvs = [(_interleave(k, k.shape[-1], dim=-1), v) for k, v in kvs]
    # the native attention step (float32 only, so not under autocast) keeps each prompt once
    kernel = fused is not None and native.usable(x) and not torch.is_autocast_enabled("cpu")
    if kernel:
        cache = _Cache.shared(kvs, valid, row_index, max_new_tokens)
    else:
        cache = _Cache.full(kvs, valid, row_index, max_new_tokens)
    pos = positions[row_index, -1] + 1  # (B,)
    rep = cfg.num_attention_heads // n_kv

    tokens = torch.full((b, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logps = torch.zeros((b, max_new_tokens), dtype=torch.float32, device=device)
    lengths = torch.full((b,), max_new_tokens, dtype=torch.long, device=device)
    live = torch.arange(b, device=device)  # output row of each row still decoded
    done = torch.zeros(b, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        if t < min_new_tokens:  # eos is banned, so no row has ended yet
            logits[:, eos] = float("-inf")
            tokens[:, t], logps[:, t] = sample(logits)
            tok = tokens[:, t]
            if t + 1 == max_new_tokens:
                break
        else:
            tok, lp = sample(logits)
            tok = tok.masked_fill(done, pad_id)
            tokens[live, t], logps[live, t] = tok, lp.masked_fill(done, 0.0)
            ended = torch.isin(tok, eos) & ~done
            lengths[live] = torch.where(ended, t + 1, lengths[live])
            done |= ended
            if t + 1 == max_new_tokens or bool(done.all()):
                break
            if 4 * int(done.sum()) >= done.numel():  # a quarter finished: stop computing them
                keep = (~done).nonzero().squeeze(-1)
                live, tok, pos, done = live[keep], tok[keep], pos[keep], done[keep]
                cache = cache.keep(keep)
        if cache.mask is not None:
            cache.mask[..., p + t] = 0.0  # the column this step writes becomes visible
        logits = _decode_step(model, fused, tok, pos, p, t, cache, rep).float()
        pos = pos + 1
    return tokens, logps, lengths


@dataclass
class _Cache:
    """Keys (stored transposed, so ``q @ k`` needs no copy) and values of one decoding run.

    ``full``: ``layers[i] = (keys (B, Hkv, D, W), values (B, Hkv, W, D))`` with each row's
    prompt then its response, and ``mask (B, Hkv, 1, W)`` (0 or -inf) for batched products.
    ``shared`` (the native kernel): ``prompt[i] = (keys (U, Hkv, D, P), values (U, Hkv, P,
    D), mask (U, P))`` once per distinct prompt, ``group (B,)`` the prompt of each row, and
    ``layers[i]`` only the rows' own columns ``(B, Hkv, D, R)``/``(B, Hkv, R, D)``: a group
    of ``G`` rows reads its prompt's keys once, not ``G`` times.
    """

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    mask: torch.Tensor | None = None
    prompt: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None
    group: torch.Tensor | None = None

    @staticmethod
    def full(kvs: list, valid: torch.Tensor, rows: torch.Tensor, new: int) -> _Cache:
        """Prompt columns copied into every row; unwritten columns zero and masked."""
        b, (_, n_kv, p, d) = len(rows), kvs[0][0].shape
        layers = []
        for k, v in kvs:
            kc, vc = k.new_zeros((b, n_kv, d, p + new)), v.new_zeros((b, n_kv, p + new, d))
            kc[..., :p], vc[:, :, :p] = k[rows].transpose(-1, -2), v[rows]
            layers.append((kc, vc))
        mask = torch.full((b, p + new), float("-inf"), dtype=kvs[0][0].dtype, device=rows.device)
        mask[:, :p].masked_fill_(valid[rows], 0.0)  # prompt padding and unwritten columns: -inf
        return _Cache(layers, mask[:, None, None, :].expand(b, n_kv, 1, p + new).contiguous())

    @staticmethod
    def shared(kvs: list, valid: torch.Tensor, rows: torch.Tensor, new: int) -> _Cache:
        """Prompt columns once per distinct prompt; row columns uninitialised (the kernel
        reads only those written)."""
        b, (_, n_kv, _, d) = len(rows), kvs[0][0].shape
        mask = torch.zeros(valid.shape, dtype=kvs[0][0].dtype, device=rows.device)
        mask.masked_fill_(~valid, float("-inf"))
        prompt = [(k.transpose(-1, -2).contiguous(), v.contiguous(), mask) for k, v in kvs]
        layers = [(k.new_empty((b, n_kv, d, new)), v.new_empty((b, n_kv, new, d))) for k, v in kvs]
        return _Cache(layers, None, prompt, rows.contiguous())

    def keep(self, rows: torch.Tensor) -> _Cache:
        """The cache of the rows ``rows`` only."""
        return _Cache(
            [(k[rows], v[rows]) for k, v in self.layers],
            None if self.mask is None else self.mask[rows],
            self.prompt,
            None if self.group is None else self.group[rows],
        )


@dataclass
class _FusedLayer:
    """One layer's weights rearranged for decoding (built per :func:`decode` call).

    ``qkv`` stacks the ``q`` (times the attention scaling), ``k`` and ``v`` projections with
    the rows of every ``q``/``k`` head interleaved (``0, d/2, 1, d/2 + 1, ...``): rotary
    embedding's pairs ``(i, i + d/2)`` become adjacent, so it is one complex product per
    tensor; a consistent permutation of both ``q`` and ``k`` leaves ``q · k`` unchanged, and
    the KV cache holds keys in that order (:func:`_interleave`). ``gate_up`` stacks the
    MLP's two input projections; ``o_t``/``down_t`` are transposed for ``addmm`` with the
    residual.
    """

    norm1: Any
    qkv: torch.Tensor
    qkv_bias: torch.Tensor | None
    splits: list[int]
    o_t: torch.Tensor
    o_bias: torch.Tensor | None
    norm2: Any
    gate_up: torch.Tensor
    down_t: torch.Tensor


def _fuse(model: Any) -> list[_FusedLayer] | None:
    """Fused weights for every layer, or ``None`` when not worth it (large model, Qwen3)."""
    layers = model.model.layers
    if hasattr(layers[0].self_attn, "q_norm"):
        return None
    if sum(p.numel() for p in model.parameters()) >= cpu.SMALL_MODEL_PARAMS:
        return None  # per-op overhead is negligible there; do not copy the weights

    fused = []
    for layer in layers:
        a, mlp = layer.self_attn, layer.mlp
        d, sc = a.head_dim, a.scaling
        q, k, v = a.q_proj, a.k_proj, a.v_proj
        weights = [_interleave(q.weight, d) * sc, _interleave(k.weight, d), v.weight]
        bias = None
        if q.bias is not None or k.bias is not None or v.bias is not None:
            bq, bk, bv = (
                m.bias if m.bias is not None else m.weight.new_zeros(m.out_features)
                for m in (q, k, v)
            )
            bias = torch.cat([_interleave(bq, d) * sc, _interleave(bk, d), bv])
        fused.append(
            _FusedLayer(
                layer.input_layernorm,
                torch.cat(weights),
                bias,
                [w.shape[0] for w in weights],
                a.o_proj.weight.t().contiguous(),
                a.o_proj.bias,
                layer.post_attention_layernorm,
                torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]),
                mlp.down_proj.weight.t().contiguous(),
            )
        )
    return fused


def _interleave(x: torch.Tensor, d: int, dim: int = 0) -> torch.Tensor:
    """Reorder each head's ``d`` entries along ``dim`` as ``0, d/2, 1, d/2 + 1, ...``."""
    x = x.movedim(dim, 0)
    heads = x.reshape(-1, 2, d // 2, *x.shape[1:])  # (heads, halves, d/2, ...)
    return heads.transpose(1, 2).reshape(x.shape).movedim(0, dim)


def _rope_pairs(model: Any, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cos``, ``sin`` of ``position · inv_freq`` times the rope's attention scaling, each
    ``(B, d/2)``: the rotation of each interleaved pair."""
    angle, scale = _rope_angles(model, positions)
    return angle.cos().mul_(scale), angle.sin().mul_(scale)


def _rotate_pairs(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of interleaved ``x (B, heads, d)`` by ``pairs (B, 1, d/2)``."""
    z = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))
    return torch.view_as_real(z * pairs).flatten(-2).to(x.dtype)


def _decode_step(
    model: Any,
    fused: list[_FusedLayer] | None,
    tok: torch.Tensor,
    pos: torch.Tensor,
    p: int,
    t: int,
    cache: _Cache,
    rep: int,
) -> torch.Tensor:
    """Token ``t`` of every row (after ``p`` prompt columns); returns next-token logits ``(B, V)``."""
    x = model.model.embed_tokens(tok)  # (B, hidden)
    if fused is None:
        cos, sin = _rope(model, pos, x.dtype)  # (B, D)
        for layer, (kc, vc) in zip(model.model.layers, cache.layers, strict=True):
            x = _decode_layer(layer, x, cos, sin, p + t, kc, vc, cache.mask, rep)
        return _linear(model.lm_head, _rms(x, model.model.norm))
    cos, sin = _rope_pairs(model, pos)  # (B, D/2)
    pairs = torch.complex(cos, sin)[:, None] if cache.prompt is None else None
    for i, f in enumerate(fused):
        if cache.prompt is not None:  # the native kernel
            att = functools.partial(
                native.decode_attention, cos=cos, sin=sin, prompt_kv=cache.prompt[i],
                group=cache.group, row_kv=cache.layers[i], t=t, rep=rep,
            )  # fmt: skip
        else:
            kc, vc = cache.layers[i]
            att = functools.partial(
                _attend_batched, pairs=pairs, kc=kc, vc=vc, mask=cache.mask, col=p + t,
                rep=rep, splits=f.splits,
            )  # fmt: skip
        x = _decode_layer_fused(f, x, att, native_mlp=cache.prompt is not None)
    return model.lm_head(_rms(x, model.model.norm))


def _attend_batched(
    qkv: torch.Tensor,
    pairs: torch.Tensor,
    kc: torch.Tensor,
    vc: torch.Tensor,
    mask: torch.Tensor,
    col: int,
    rep: int,
    splits: list[int],
) -> torch.Tensor:
    """Attention of a fused layer's ``qkv`` with batched products over a full cache, writing
    the step's key and value at column ``col``; ``(B, H D)``."""
    b, d = qkv.shape[0], kc.shape[2]
    q, k, v = qkv.split(splits, dim=-1)
    q = _rotate_pairs(q.view(b, -1, d), pairs)  # (B, H, D), scaled, interleaved
    kc[..., col] = _rotate_pairs(k.view(b, -1, d), pairs)
    vc[:, :, col] = v.view(b, -1, d)
    # one batched product per (row, KV head): scores = mask + q @ k
    mask3 = mask.view(-1, 1, mask.shape[-1])  # (B * Hkv, 1, W)
    scores = torch.baddbmm(mask3, q.reshape(-1, rep, d), kc.view(-1, d, kc.shape[-1]))
    return torch.bmm(torch.softmax(scores, dim=-1), vc.view(-1, *vc.shape[2:])).view(b, -1)


def _decode_layer_fused(
    f: _FusedLayer,
    x: torch.Tensor,
    attend: Callable[[torch.Tensor], torch.Tensor],
    native_mlp: bool,
) -> torch.Tensor:
    """A layer on :func:`_fuse`'s weights: about a third of :func:`_decode_layer`'s ops.

    ``attend(qkv) -> (B, H D)`` writes the step into the cache and attends;
    ``native_mlp``: SwiGLU by :func:`r1agent.native.swiglu_halves`.
    """
    qkv = F.linear(_rms(x, f.norm1), f.qkv, f.qkv_bias)
    x = torch.addmm(x, attend(qkv), f.o_t)
    if f.o_bias is not None:
        x = x + f.o_bias
    gate_up = F.linear(_rms(x, f.norm2), f.gate_up)
    if native_mlp:
        return torch.addmm(x, native.swiglu_halves(gate_up), f.down_t)
    gate, up = gate_up.chunk(2, dim=-1)
    return torch.addmm(x, F.silu(gate, inplace=True).mul_(up), f.down_t)


def _decode_layer(
    layer: Any,
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    col: int,
    kc: torch.Tensor,
    vc: torch.Tensor,
    bias: torch.Tensor,
    rep: int,
) -> torch.Tensor:
    """A layer on the model's own modules (large models, Qwen3's q/k norms)."""
    attn = layer.self_attn
    b, d = x.shape[0], attn.head_dim
    cos, sin = cos[:, None, None], sin[:, None, None]  # (B, 1, 1, D)
    h = _rms(x, layer.input_layernorm)
    q = _linear(attn.q_proj, h).view(b, -1, 1, d)  # (B, H, 1, D)
    k = _linear(attn.k_proj, h).view(b, -1, 1, d)
    v = _linear(attn.v_proj, h).view(b, -1, 1, d)
    if hasattr(attn, "q_norm"):
        q, k = _rms(q, attn.q_norm), _rms(k, attn.k_norm)
    kc[..., col : col + 1] = _rotate(k, cos, sin).transpose(-1, -2)
    vc[:, :, col : col + 1] = v
    # grouped heads: the `rep` query heads sharing a KV head become rows of one matmul;
    # the whole (contiguous) cache is used, columns not written yet are masked by `bias`
    q = _rotate(q, cos, sin).view(b, -1, rep, d)  # (B, Hkv, rep, D)
    scores = torch.matmul(q, kc) * attn.scaling
    probs = torch.softmax(scores + bias, dim=-1)  # (B, Hkv, rep, W)
    out = torch.matmul(probs, vc).reshape(b, -1)  # (B, H*D)
    x = x + _linear(attn.o_proj, out)
    return x + _decode_mlp(layer.mlp, _rms(x, layer.post_attention_layernorm))


#: Rows up to which a decoding step's products run on :func:`r1agent.accel.native.linear_rows`.
_FEW_ROWS = 16


def _linear(linear: Any, h: torch.Tensor) -> torch.Tensor:
    """``linear(h)`` for a decoding step's ``h (B, in)``.

    For a few float32 rows on a CPU, a plain :class:`torch.nn.Linear` (not a wrapper that
    adds to its output, such as a LoRA layer, nor one with forward hooks) runs on
    :func:`r1agent.accel.native.linear_rows`, which streams the weights faster than a BLAS
    product; otherwise the module itself.
    """
    w = linear.weight
    if (
        type(linear) is torch.nn.Linear
        and not (linear._forward_hooks or linear._forward_pre_hooks)
        and h.dim() == 2
        and h.shape[0] <= _FEW_ROWS
        and w.is_contiguous()
        and native.usable(h, w)
        and not torch.is_autocast_enabled("cpu")
    ):
        return native.linear_rows(h, w, linear.bias)
    return linear(h)


def _decode_mlp(mlp: Any, h: torch.Tensor) -> torch.Tensor:
    """The SwiGLU MLP of a decoding step's ``h (B, hidden)`` through :func:`_linear`."""
    gate, up = _linear(mlp.gate_proj, h), _linear(mlp.up_proj, h)
    act = native.swiglu(gate, up) if native.usable(gate, up) else F.silu(gate) * up
    return _linear(mlp.down_proj, act)


# --------------------------------------------------------------------------- training


def prefix_shared_logits(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_valid: torch.Tensor,
    prompt_index: torch.Tensor,
    response_ids: torch.Tensor,
) -> torch.Tensor:
    """Logits predicting each response token, computing every distinct prompt once.

    Args:
        model: a model for which :func:`supports` is true.
        prompt_ids: ``(U, P)`` distinct prompts, left-padded.
        prompt_valid: ``(U, P)`` bool, False on padding.
        prompt_index: ``(N,)`` which prompt each row continues.
        response_ids: ``(N, R)`` response tokens (right-padded; padding only affects
            positions after it).

    Returns:
        ``(N, R, V)`` logits: row ``i``, column ``t`` predicts ``response_ids[i, t]``.
    """
    h = prefix_shared_hidden(model, prompt_ids, prompt_valid, prompt_index, response_ids)
    return model.lm_head(h)


def prefix_shared_hidden(
    model: Any,
    prompt_ids: torch.Tensor,
    prompt_valid: torch.Tensor,
    prompt_index: torch.Tensor,
    response_ids: torch.Tensor,
    *,
    checkpoint: bool = False,
) -> torch.Tensor:
    """Final hidden states (after the last norm) predicting each response token, ``(N, R,
    hidden)``; the arguments as in :func:`prefix_shared_logits`. Feed them to the LM head, or
    to :func:`r1agent.rl.chunked.chunked_logprobs` to never hold ``(N, R, V)`` logits.

    With ``checkpoint`` (gradient checkpointing), each layer keeps only its inputs for
    backward and runs again there (non-reentrant :func:`torch.utils.checkpoint.checkpoint`).
    """
    positions = (prompt_valid.long().cumsum(-1) - 1).clamp(min=0)
    # the prompt's last position predicts response token 0 and response token t predicts
    # t + 1, so the last response token is never an input
    inputs = response_ids[:, :-1]
    n, r = inputs.shape
    u, p = prompt_ids.shape
    both = _lookup(model, torch.cat((prompt_ids.reshape(-1), inputs.reshape(-1))))
    x_p, x = both[: u * p].view(u, p, -1), both[u * p :].view(n, r, both.shape[-1])
    cos_p, sin_p = _rope(model, positions, x_p.dtype)
    start = prompt_valid.sum(-1)[prompt_index]  # (N,) first response position
    pos_r = start[:, None] + torch.arange(r, device=start.device)  # (N, R - 1)
    cos, sin = _rope(model, pos_r, x_p.dtype)
    causal = torch.ones(r, r, dtype=torch.bool, device=start.device).tril()
    mask = torch.cat(
        (
            prompt_valid[prompt_index][:, None, None, :].expand(n, 1, r, p),
            causal.expand(n, 1, r, r),
        ),
        dim=-1,
    )  # (N, 1, R - 1, P + R - 1)
    ctx = (cos_p, sin_p, _padded_causal(prompt_valid), cos, sin, mask, prompt_index)
    for layer in model.model.layers:
        if checkpoint and torch.is_grad_enabled():
            x_p, x = torch.utils.checkpoint.checkpoint(
                _shared_layer, layer, x_p, x, *ctx, use_reentrant=False
            )
        else:
            x_p, x = _shared_layer(layer, x_p, x, *ctx)
    last = x_p[:, -1][prompt_index][:, None]  # (N, 1, hidden)
    return _rms(torch.cat((last, x), dim=1), model.model.norm)  # (N, R, hidden)


class _TiedLookup(torch.autograd.Function):
    """Rows of an embedding table tied to the LM head, whose backward adds the rows'
    gradients into ``table.grad`` in place.

    Autograd would hand the table a dense ``(vocab, hidden)`` gradient for the lookup and
    add it to the head's (0.54 GB at Qwen2.5-0.5B's shape, alive at the end of backward
    when every other gradient is). Here the table is not an input of the graph: the head's
    gradient lands in ``table.grad`` first (nothing else feeds the table's accumulation),
    then this backward adds the looked-up rows to it. The accelerator runs in one process
    (no DDP hooks to feed); ``anchor`` is an empty tensor requiring grad so that backward
    reaches this node.
    """

    @staticmethod
    def forward(ctx, anchor, ids, holder, padding_idx):  # noqa: D102
        ctx.save_for_backward(ids)
        ctx.holder, ctx.padding_idx = holder, padding_idx
        return F.embedding(ids, holder[0].detach(), padding_idx)

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        (ids,) = ctx.saved_tensors
        table, grad = ctx.holder[0], grad.reshape(-1, ctx.holder[0].shape[1])
        if ctx.padding_idx is not None:  # the padding row takes no gradient, as nn.Embedding
            keep = ids != ctx.padding_idx
            ids, grad = ids[keep], grad[keep]
        if table.grad is None:
            table.grad = torch.zeros_like(table)
        table.grad.index_add_(0, ids, grad.to(table.grad.dtype))
        return None, None, None, None


def _lookup(model: Any, ids: torch.Tensor) -> torch.Tensor:
    """``embed_tokens(ids)`` in one lookup; a table tied to the LM head and trained takes
    its lookup gradient in place (:class:`_TiedLookup`)."""
    emb = model.model.embed_tokens
    if emb.weight is model.lm_head.weight and emb.weight.requires_grad and torch.is_grad_enabled():
        anchor = torch.empty(0, device=emb.weight.device, requires_grad=True)
        return _TiedLookup.apply(anchor, ids, [emb.weight], emb.padding_idx)
    return emb(ids)


def _shared_layer(
    layer: Any,
    x_p: torch.Tensor,
    x: torch.Tensor,
    cos_p: torch.Tensor,
    sin_p: torch.Tensor,
    mask_p: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    mask: torch.Tensor,
    prompt_index: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decoder layer over the distinct prompts ``x_p (U, P, hidden)`` and the response
    rows ``x (N, R - 1, hidden)``, each response attending to its prompt's keys and values."""
    attn = layer.self_attn
    q_p, k_p, v_p = _qkv(attn, _rms(x_p, layer.input_layernorm), cos_p, sin_p)
    x_p = x_p + attn.o_proj(_merge_heads(_attend(q_p, k_p, v_p, mask_p, attn.scaling)))
    x_p = x_p + _mlp(layer.mlp, _rms(x_p, layer.post_attention_layernorm))
    if x.shape[1] == 0:
        return x_p, x
    q, k, v = _qkv(attn, _rms(x, layer.input_layernorm), cos, sin)
    k = torch.cat((k_p[prompt_index], k), dim=2)
    v = torch.cat((v_p[prompt_index], v), dim=2)
    x = x + attn.o_proj(_merge_heads(_attend(q, k, v, mask, attn.scaling)))
    x = x + _mlp(layer.mlp, _rms(x, layer.post_attention_layernorm))
    return x_p, x
