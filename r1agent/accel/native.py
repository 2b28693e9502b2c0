"""Fused CPU kernels for small float32 models, compiled on first use.

``native.c`` holds loops that replace chains of small torch ops on the hot path of a small
model on a CPU: one decoding step of attention (rotary embedding, KV-cache write, scores,
softmax and the weighted sum in one pass over the cache), RMSNorm, SwiGLU and rotary
embedding fused with the head transpose (each with its backward pass where training needs
it). :func:`library` compiles the file with the system C compiler (``cc -O3 -march=native
-fopenmp``) into a per-user cache keyed by the source, the compiler and the CPU, and loads
it with :mod:`ctypes`; it links against the OpenMP runtime torch already loaded, so both
share one thread pool. Without a compiler, on other dtypes or devices, or with
``R1_NATIVE=0``, callers use their torch code, which computes the same up to float
rounding (tests compare the two).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

__all__ = [
    "decode_attention",
    "library",
    "linear_rows",
    "rms_norm",
    "rope",
    "swiglu",
    "swiglu_halves",
    "usable",
]

log = logging.getLogger(__name__)
_SOURCE = Path(__file__).with_name("native.c")
_FLAGS = [
    "-O3",
    "-march=native",
    "-fno-math-errno",
    "-fno-trapping-math",
    "-fopenmp",
    "-shared",
    "-fPIC",
]


def _cache_dir() -> Path:
    root = os.environ.get("R1_NATIVE_CACHE") or os.environ.get("XDG_CACHE_HOME")
    return Path(root or Path.home() / ".cache") / "r1" / "native"


def _cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor()
    return next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or ``None`` when they cannot be built (the reason is logged once)."""
    if os.environ.get("R1_NATIVE", "1") == "0" or platform.system() != "Linux":
        return None
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        log.info("no C compiler found; using the torch implementation of the fused kernels")
        return None
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True).stdout
        key = hashlib.sha256(
            "\0".join([_SOURCE.read_text(), version, " ".join(_FLAGS), _cpu_flags()]).encode()
        ).hexdigest()[:16]
        path = _cache_dir() / f"r1native-{key}.so"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
                built = Path(tmp) / path.name
                subprocess.run(
                    [cc, *_FLAGS, "-o", str(built), str(_SOURCE)],
                    check=True,
                    capture_output=True,
                    text=True,
                )
                os.replace(built, path)  # atomic: concurrent builders each write a whole file
        lib = ctypes.CDLL(str(path))
    except (OSError, subprocess.CalledProcessError) as e:
        detail = getattr(e, "stderr", "") or str(e)
        log.warning("could not build the fused CPU kernels (%s); using torch ops", detail[-500:])
        return None
    i32, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    lib.decode_attention.argtypes = [i32] * 7 + [ptr] * 10
    lib.swiglu_forward.argtypes = [i64, i32, i64, ptr, ptr, ptr]
    lib.swiglu_backward.argtypes = [i64] + [ptr] * 5
    lib.rope.argtypes = [i64, i32, i32, i32, ptr, ptr, ptr, i64, ptr, i32]
    f32 = ctypes.c_float
    lib.rms_norm_forward.argtypes = [i64, i32, ptr, ptr, f32, ptr, ptr]
    lib.rms_norm_backward.argtypes = [i64, i32] + [ptr] * 6
    lib.linear_rows.argtypes = [i32, i32, i64] + [ptr] * 4
    for fn in (
        lib.linear_rows,
        lib.decode_attention,
        lib.swiglu_forward,
        lib.swiglu_backward,
        lib.rope,
        lib.rms_norm_forward,
        lib.rms_norm_backward,
    ):
        fn.restype = None
    return lib


def usable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels can run on these tensors (float32 on the CPU) and were built."""
    return all(t.dtype == torch.float32 and t.device.type == "cpu" for t in tensors) and (
        library() is not None
    )


def decode_attention(
    qkv: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    prompt_kv: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    group: torch.Tensor,
    row_kv: tuple[torch.Tensor, torch.Tensor],
    t: int,
    rep: int,
) -> torch.Tensor:
    """One decoding step of attention; writes the step's key and value into ``row_kv``.

    Args:
        qkv: ``(B, (H + 2 Hkv) D)`` scaled query, key and value heads, rotary pairs of the
            query and key heads interleaved.
        cos: ``(B, D/2)`` cosines of each row's rotary angles (times the rope scaling).
        sin: ``(B, D/2)`` their sines.
        prompt_kv: keys ``(U, Hkv, D, P)`` (transposed), values ``(U, Hkv, P, D)`` and an
            additive mask ``(U, P)`` (0, or -inf on padding) of each distinct prompt.
        group: ``(B,)`` int64, the prompt each row continues (each in ``0..U-1``; not
            checked here, on the hot path).
        row_kv: each row's own keys ``(B, Hkv, D, R)`` (transposed) and values
            ``(B, Hkv, R, D)``.
        t: the row column this step writes; the prompt and row columns ``0..t`` are attended.
        rep: query heads per KV head.

    Returns:
        ``(B, H D)`` attention output.
    """
    kp, vp, pbias = prompt_kv
    kr, vr = row_kv
    b, hkv, d, r = kr.shape
    u, p = pbias.shape
    tensors = (qkv, cos, sin, kp, vp, pbias, kr, vr)
    if not all(x.is_contiguous() and x.dtype == torch.float32 for x in tensors):
        raise ValueError("decode_attention needs contiguous float32 tensors")
    if not (group.is_contiguous() and group.dtype == torch.int64 and group.shape == (b,)):
        raise ValueError(f"decode_attention: group must be int64 of shape ({b},)")
    shapes = {
        "qkv": (qkv.shape, (b, (hkv * rep + 2 * hkv) * d)),
        "cos": (cos.shape, (b, d // 2)),
        "sin": (sin.shape, (b, d // 2)),
        "prompt keys": (kp.shape, (u, hkv, d, p)),
        "prompt values": (vp.shape, (u, hkv, p, d)),
        "row values": (vr.shape, (b, hkv, r, d)),
    }
    for name, (got, want) in shapes.items():
        if tuple(got) != want:
            raise ValueError(
                f"decode_attention: {name} {tuple(got)}, expected {want} (row keys "
                f"{tuple(kr.shape)}, prompt mask {tuple(pbias.shape)}, rep={rep})"
            )
    if not 0 <= t < r:
        raise ValueError(f"decode_attention: t={t} outside the row cache width {r}")
    out = qkv.new_empty((b, hkv * rep * d))
    library().decode_attention(
        b, hkv, rep, d, p, r, t,
        qkv.data_ptr(), cos.data_ptr(), sin.data_ptr(), kp.data_ptr(), vp.data_ptr(),
        pbias.data_ptr(), group.data_ptr(), kr.data_ptr(), vr.data_ptr(), out.data_ptr(),
    )  # fmt: skip
    return out


def linear_rows(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``x @ weight.T + bias`` for few rows of ``x (M, K)``, ``weight (N, K)``; no autograd.

    Reads each weight row once for every 8 rows of ``x``: for a decoding step's handful of
    rows it streams the weights faster than a BLAS product does.
    """
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"linear_rows needs x (M, K) and weight (N, K), got {tuple(x.shape)} and "
            f"{tuple(weight.shape)}"
        )
    if bias is not None and (bias.shape != weight.shape[:1] or not bias.is_contiguous()):
        raise ValueError(f"linear_rows: bias {tuple(bias.shape)} for weight {tuple(weight.shape)}")
    if not weight.is_contiguous():
        raise ValueError("linear_rows needs a contiguous weight")
    x = x.contiguous()
    out = x.new_empty((x.shape[0], weight.shape[0]))
    library().linear_rows(
        x.shape[0], x.shape[1], weight.shape[0], x.data_ptr(), weight.data_ptr(),
        None if bias is None else bias.data_ptr(), out.data_ptr(),
    )  # fmt: skip
    return out


class _SwiGLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:  # noqa: D102
        gate, up = gate.contiguous(), up.contiguous()
        out = torch.empty_like(gate)
        i = gate.shape[-1]
        library().swiglu_forward(
            gate.numel() // i, i, i, gate.data_ptr(), up.data_ptr(), out.data_ptr()
        )
        ctx.save_for_backward(gate, up)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: D102
        gate, up = ctx.saved_tensors
        grad = grad.contiguous()
        grad_gate, grad_up = torch.empty_like(gate), torch.empty_like(up)
        library().swiglu_backward(
            gate.numel(), gate.data_ptr(), up.data_ptr(), grad.data_ptr(),
            grad_gate.data_ptr(), grad_up.data_ptr(),
        )  # fmt: skip
        return grad_gate, grad_up


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` (same shapes), differentiable."""
    if gate.shape != up.shape:
        raise ValueError(
            f"swiglu needs equal shapes, got {tuple(gate.shape)} and {tuple(up.shape)}"
        )
    return _SwiGLU.apply(gate, up)


def _rms_forward(
    x: torch.Tensor, weight: torch.Tensor, eps: float, keep_rstd: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RMSNorm of contiguous ``x``, and each row's ``1 / rms`` when ``keep_rstd``."""
    out = torch.empty_like(x)
    n = x.numel() // x.shape[-1]
    rstd = x.new_empty(n) if keep_rstd else None
    library().rms_norm_forward(
        n, x.shape[-1], x.data_ptr(), weight.data_ptr(), eps, out.data_ptr(),
        None if rstd is None else rstd.data_ptr(),
    )  # fmt: skip
    return out, rstd


class _RMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:  # noqa: D102
        x = x.contiguous()
        out, rstd = _rms_forward(x, weight, eps, keep_rstd=True)
        ctx.save_for_backward(x, weight, rstd)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:  # noqa: D102
        x, weight, rstd = ctx.saved_tensors
        grad = grad.contiguous()
        grad_x, grad_w = torch.empty_like(x), torch.zeros_like(weight)
        library().rms_norm_backward(
            x.numel() // x.shape[-1], x.shape[-1], x.data_ptr(), weight.data_ptr(),
            rstd.data_ptr(), grad.data_ptr(), grad_x.data_ptr(), grad_w.data_ptr(),
        )  # fmt: skip
        return grad_x, grad_w, None


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dim, ``x / sqrt(mean(x²) + eps) * weight``, differentiable."""
    if weight.shape != x.shape[-1:] or not weight.is_contiguous():
        raise ValueError(
            f"rms_norm: weight {tuple(weight.shape)} does not match x {tuple(x.shape)}"
        )
    if not torch.is_grad_enabled() or not (x.requires_grad or weight.requires_grad):
        return _rms_forward(x.contiguous(), weight, eps, keep_rstd=False)[0]
    return _RMSNorm.apply(x, weight, eps)


def swiglu_halves(gate_up: torch.Tensor) -> torch.Tensor:
    """``silu(gate) * up`` of ``gate_up = [gate | up]`` (halves of the last dim); no autograd."""
    if not gate_up.is_contiguous() or gate_up.shape[-1] % 2:
        raise ValueError(
            f"swiglu_halves needs a contiguous even-width tensor, got {tuple(gate_up.shape)}"
        )
    i = gate_up.shape[-1] // 2
    out = gate_up.new_empty((*gate_up.shape[:-1], i))
    ptr = gate_up.data_ptr()
    library().swiglu_forward(
        gate_up.numel() // (2 * i), i, 2 * i, ptr, ptr + i * gate_up.element_size(), out.data_ptr()
    )
    return out


class _Rope(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:  # noqa: D102
        *lead, t, h, d = x.shape
        b = x.numel() // (t * h * d)
        out = x.new_empty((*lead, h, t, d))
        library().rope(
            b,
            t,
            h,
            d,
            x.data_ptr(),
            cos.data_ptr(),
            sin.data_ptr(),
            cos.stride(-2),
            out.data_ptr(),
            0,
        )
        ctx.save_for_backward(cos, sin)
        ctx.dims = (b, t, h, d)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:  # noqa: D102
        cos, sin = ctx.saved_tensors
        b, t, h, d = ctx.dims
        grad = grad.contiguous()
        grad_x = grad.new_empty((*grad.shape[:-3], t, h, d))
        library().rope(
            b, t, h, d, grad.data_ptr(), cos.data_ptr(), sin.data_ptr(), cos.stride(-2),
            grad_x.data_ptr(), 1,
        )  # fmt: skip
        return grad_x, None, None


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x (..., T, H, D)`` returned as ``(..., H, T, D)``, differentiable.

    ``cos``/``sin`` ``(..., T, D/2)`` (the rotate-half form's first half; rows may be strided,
    e.g. a slice of full-width tables).
    """
    *lead, t, h, d = x.shape
    want = (*lead, t, d // 2)
    if not x.is_contiguous() or d % 2 or cos.shape != want or sin.shape != want:
        raise ValueError(
            f"rope needs a contiguous x (..., T, H, D) and cos/sin (..., T, D/2); got x "
            f"{tuple(x.shape)}, cos {tuple(cos.shape)}, sin {tuple(sin.shape)}"
        )
    for c in (cos, sin):
        if c.stride(-1) != 1 or c.stride(-2) != cos.stride(-2) or not _rows_packed(c):
            raise ValueError("rope: cos and sin rows must share one stride")
    return _Rope.apply(x, cos, sin)


def _rows_packed(c: torch.Tensor) -> bool:
    """Whether the rows of ``c (..., T, n)`` follow each other at one stride."""
    expected = c.stride(-2)
    for size, stride in zip(reversed(c.shape[:-1]), reversed(c.stride()[:-1]), strict=True):
        if size > 1 and stride != expected:
            return False
        expected *= size
    return True
