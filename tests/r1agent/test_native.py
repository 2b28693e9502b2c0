import math

import pytest
import torch
import torch.nn.functional as F

from r1agent.accel import fastlm, native

needs_kernels = pytest.mark.skipif(native.library() is None, reason="no C compiler")


def torch_attention(qkv, cos, sin, kc, vc, bias, col, rep):
    """The reference: fastlm's torch path for one fused decoding step over full caches."""
    b, hkv, d, w = kc.shape
    splits = [hkv * rep * d, hkv * d, hkv * d]
    pairs = torch.complex(cos, sin)[:, None]
    return fastlm._attend_batched(qkv, pairs, kc, vc, bias, col, rep, splits)


def attention_inputs(b=5, u=2, hkv=2, rep=2, d=8, p=6, r=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(b, (hkv * rep + 2 * hkv) * d, generator=g)
    angle = torch.rand(b, d // 2, generator=g) * 20
    kp = torch.randn(u, hkv, d, p, generator=g)
    vp = torch.randn(u, hkv, p, d, generator=g)
    pmask = torch.zeros(u, p)
    pmask[1, :2] = float("-inf")  # left padding of the shorter prompt
    group = torch.tensor([0, 1, 1, 0, 1][:b])
    kr = torch.randn(b, hkv, d, r, generator=g)
    vr = torch.randn(b, hkv, r, d, generator=g)
    return qkv, angle.cos(), angle.sin(), (kp, vp, pmask), group, (kr, vr)


def full_caches(prompt_kv, group, row_kv, t):
    """The same keys and values laid out per row, prompt then row columns, and its mask."""
    (kp, vp, pmask), (kr, vr) = prompt_kv, row_kv
    kc = torch.cat((kp[group], kr), dim=-1)
    vc = torch.cat((vp[group], vr), dim=2)
    p, r = kp.shape[-1], kr.shape[-1]
    bias = torch.cat((pmask[group], torch.full((len(group), r), float("-inf"))), dim=-1)
    bias[:, p : p + t + 1] = 0.0
    return kc, vc, bias[:, None, None].expand(len(group), kp.shape[1], 1, p + r).contiguous()


@needs_kernels
@pytest.mark.parametrize("rep,t", [(1, 0), (2, 3), (4, 6), (3, 5)])
def test_decode_attention_matches_torch_and_writes_the_cache(rep, t):
    qkv, cos, sin, prompt_kv, group, (kr, vr) = attention_inputs(rep=rep)
    kc, vc, bias = full_caches(prompt_kv, group, (kr, vr), t)
    p = prompt_kv[0].shape[-1]
    ref = torch_attention(qkv, cos, sin, kc, vc, bias, p + t, rep)
    out = native.decode_attention(qkv, cos, sin, prompt_kv, group, (kr, vr), t, rep)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kr[..., t], kc[..., p + t], atol=1e-6, rtol=1e-6)
    assert torch.equal(vr[:, :, t], vc[:, :, p + t])
    # row columns after `t` are neither read nor written
    kr2, vr2 = kr.clone(), vr.clone()
    kr2[..., t + 1 :], vr2[:, :, t + 1 :] = float("nan"), float("nan")
    again = native.decode_attention(qkv, cos, sin, prompt_kv, group, (kr2, vr2), t, rep)
    torch.testing.assert_close(again, out, atol=0, rtol=0)


@needs_kernels
def test_decode_attention_propagates_nan_and_rejects_bad_tensors():
    qkv, cos, sin, prompt_kv, group, row_kv = attention_inputs()
    qkv[1, 0] = float("nan")  # a query entry of row 1, head 0
    out = native.decode_attention(qkv, cos, sin, prompt_kv, group, row_kv, 3, 2)
    assert out[1, :8].isnan().all() and not out[0].isnan().any()
    with pytest.raises(ValueError, match="float32"):
        native.decode_attention(qkv.double(), cos, sin, prompt_kv, group, row_kv, 3, 2)
    with pytest.raises(ValueError, match="rep=3"):
        native.decode_attention(qkv, cos, sin, prompt_kv, group, row_kv, 3, 3)
    with pytest.raises(ValueError, match="t=7"):
        native.decode_attention(qkv, cos, sin, prompt_kv, group, row_kv, 7, 2)
    with pytest.raises(ValueError, match="int64"):
        native.decode_attention(qkv, cos, sin, prompt_kv, group.int(), row_kv, 3, 2)


@needs_kernels
@pytest.mark.parametrize("m,k,n", [(1, 5, 1), (3, 37, 7), (8, 64, 100), (9, 130, 4), (17, 16, 3)])
@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_rows_matches_torch(m, k, n, with_bias):
    g = torch.Generator().manual_seed(m * 1000 + k + n)
    x, w = torch.randn(m, k, generator=g), torch.randn(n, k, generator=g)
    bias = torch.randn(n, generator=g) if with_bias else None
    torch.testing.assert_close(native.linear_rows(x, w, bias), F.linear(x, w, bias))
    xt = torch.randn(k, m, generator=g).t()  # rows of x need not be contiguous
    torch.testing.assert_close(native.linear_rows(xt, w, bias), F.linear(xt, w, bias))


@needs_kernels
def test_linear_rows_rejects_mismatched_shapes():
    x, w = torch.randn(2, 4), torch.randn(3, 4)
    with pytest.raises(ValueError, match=r"\(2, 5\)"):
        native.linear_rows(torch.randn(2, 5), w)
    with pytest.raises(ValueError, match="bias"):
        native.linear_rows(x, w, torch.randn(4))
    with pytest.raises(ValueError, match="contiguous"):
        native.linear_rows(x, torch.randn(4, 3).t())
    assert native.linear_rows(x, w).isfinite().all()


@needs_kernels
def test_swiglu_matches_torch_forward_and_backward():
    g = torch.Generator().manual_seed(1)
    gate = (torch.randn(7, 33, generator=g) * 6).requires_grad_()
    up = torch.randn(7, 33, generator=g).requires_grad_()
    gate.data[0, :4] = torch.tensor([-200.0, 200.0, 0.0, -1e-30])  # saturation and zero
    grad = torch.randn(7, 33, generator=g)
    out = native.swiglu(gate, up)
    out.backward(grad)
    g_ref, u_ref = gate.detach().clone().requires_grad_(), up.detach().clone().requires_grad_()
    ref = F.silu(g_ref) * u_ref
    ref.backward(grad)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gate.grad, g_ref.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(up.grad, u_ref.grad, atol=1e-6, rtol=1e-5)
    halves = native.swiglu_halves(torch.cat((gate, up), dim=-1).detach())
    torch.testing.assert_close(halves, out.detach(), atol=0, rtol=0)
    assert native.swiglu(torch.tensor([math.nan]), torch.tensor([1.0])).isnan().all()
    with pytest.raises(ValueError, match=r"\(7, 33\) and \(7, 32\)"):
        native.swiglu(gate, up[:, :32])


def test_fallback_without_a_compiler(monkeypatch, tmp_path):
    native.library.cache_clear()
    try:
        monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
        monkeypatch.setenv("R1_NATIVE_CACHE", str(tmp_path))
        assert native.library() is None
        assert not native.usable(torch.zeros(1))
        native.library.cache_clear()
        monkeypatch.setenv("CC", "false")  # a compiler that fails
        assert native.library() is None
        native.library.cache_clear()
        monkeypatch.delenv("CC")
        monkeypatch.setenv("R1_NATIVE", "0")
        assert native.library() is None
    finally:
        native.library.cache_clear()


@needs_kernels
def test_rms_norm_matches_torch_forward_and_backward():
    g = torch.Generator().manual_seed(3)
    x = (torch.randn(4, 5, 24, generator=g) * 3).requires_grad_()
    w = torch.randn(24, generator=g).requires_grad_()
    grad = torch.randn(4, 5, 24, generator=g)
    out = native.rms_norm(x, w, 1e-6)
    out.backward(grad)
    x_ref, w_ref = x.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = F.rms_norm(x_ref, (24,), w_ref, 1e-6)
    ref.backward(grad)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.grad, w_ref.grad, atol=1e-4, rtol=1e-5)
    with torch.no_grad():  # no autograd node, same values
        torch.testing.assert_close(native.rms_norm(x, w, 1e-6), out.detach(), atol=0, rtol=0)
    with pytest.raises(ValueError, match=r"weight \(23,\)"):
        native.rms_norm(x, w[:23], 1e-6)


@needs_kernels
def test_rope_matches_the_torch_rotation_and_transpose():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 4, 8, generator=g).requires_grad_()  # (B, T, H, D)
    angle = torch.rand(3, 5, 4, generator=g) * 30
    freqs = torch.cat((angle, angle), dim=-1)
    cos, signed_sin = freqs.cos(), torch.cat((-angle, angle), dim=-1).sin()
    grad = torch.randn(3, 4, 5, 8, generator=g)
    out = native.rope(x, cos[..., :4], signed_sin[..., 4:])  # strided halves of full tables
    out.backward(grad)
    x_ref = x.detach().clone().requires_grad_()
    ref = fastlm._rotate(x_ref.transpose(1, 2), cos[:, None], signed_sin[:, None])
    ref.backward(grad)
    assert out.shape == (3, 4, 5, 8)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(x.grad, x_ref.grad, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match=r"cos \(3, 5, 3\)"):
        native.rope(x, cos[..., :3], signed_sin[..., 5:])
    with pytest.raises(ValueError, match="one stride"):
        native.rope(x, cos[:1, :, :4].expand(3, 5, 4), signed_sin[..., 4:])


def test_retained_freed_memory_is_reused_without_page_faults(monkeypatch):
    import resource

    from r1agent.accel.cpu import retain_freed_memory

    monkeypatch.setenv("R1_MALLOC", "0")
    assert retain_freed_memory() is False
    monkeypatch.delenv("R1_MALLOC")
    if not retain_freed_memory():
        pytest.skip("not glibc")

    def faults_of_a_fresh_buffer():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(4 << 20)  # 16 MiB, filled then freed
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    faults_of_a_fresh_buffer()  # the heap grows once
    # 4096 pages of 4 KiB when mapped afresh; the quietest of three tries, since other
    # threads of the test process may allocate in between
    assert min(faults_of_a_fresh_buffer() for _ in range(3)) < 256
