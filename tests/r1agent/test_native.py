import math

import pytest
import torch
import torch.nn.functional as F

from r1agent import fastlm, native

needs_kernels = pytest.mark.skipif(native.library() is None, reason="no C compiler")


def torch_attention(qkv, cos, sin, kc, vc, bias, col, rep):
    """The reference: fastlm's torch path for one fused decoding step."""
    b, hkv, d, w = kc.shape
    h = hkv * rep
    q, k, v = qkv.split([h * d, hkv * d, hkv * d], dim=-1)
    pairs = torch.complex(cos, sin)[:, None]
    q = fastlm._rotate_pairs(q.view(b, -1, d), pairs)
    kc[..., col] = fastlm._rotate_pairs(k.view(b, -1, d), pairs)
    vc[:, :, col] = v.view(b, -1, d)
    scores = torch.baddbmm(bias.view(-1, 1, w), q.reshape(-1, rep, d), kc.view(-1, d, w))
    return torch.bmm(torch.softmax(scores, -1), vc.view(-1, w, d)).view(b, -1)


def attention_inputs(b=5, hkv=2, rep=2, d=8, w=12, col=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    qkv = torch.randn(b, (hkv * rep + 2 * hkv) * d, generator=g)
    angle = torch.rand(b, d // 2, generator=g) * 20
    kc = torch.randn(b, hkv, d, w, generator=g)
    vc = torch.randn(b, hkv, w, d, generator=g)
    bias = torch.full((b, w), float("-inf"))
    bias[:, : col + 1] = 0.0
    bias[0, :3] = float("-inf")  # left padding of a short prompt
    bias = bias[:, None, None].expand(b, hkv, 1, w).contiguous()
    return qkv, angle.cos(), angle.sin(), kc, vc, bias


@needs_kernels
@pytest.mark.parametrize("rep,col", [(1, 3), (2, 9), (4, 11), (3, 5)])
def test_decode_attention_matches_torch_and_writes_the_cache(rep, col):
    qkv, cos, sin, kc, vc, bias = attention_inputs(rep=rep, col=col)
    kc1, vc1, kc2, vc2 = kc.clone(), vc.clone(), kc.clone(), vc.clone()
    ref = torch_attention(qkv, cos, sin, kc1, vc1, bias, col, rep)
    out = native.decode_attention(qkv, cos, sin, kc2, vc2, bias, col, rep)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(kc2, kc1, atol=1e-6, rtol=1e-6)
    assert torch.equal(vc2, vc1)
    # columns after `col` are neither read nor written
    kc3, vc3 = kc.clone(), vc.clone()
    kc3[..., col + 1 :], vc3[:, :, col + 1 :] = float("nan"), float("nan")
    again = native.decode_attention(qkv, cos, sin, kc3, vc3, bias, col, rep)
    torch.testing.assert_close(again, out, atol=0, rtol=0)


@needs_kernels
def test_decode_attention_propagates_nan_and_rejects_bad_tensors():
    qkv, cos, sin, kc, vc, bias = attention_inputs()
    qkv[1, 0] = float("nan")  # a query entry of row 1, head 0
    out = native.decode_attention(qkv, cos, sin, kc, vc, bias, 9, 2)
    assert out[1, :8].isnan().all() and not out[0].isnan().any()
    with pytest.raises(ValueError, match="float32"):
        native.decode_attention(qkv.double(), cos, sin, kc, vc, bias, 9, 2)
    with pytest.raises(ValueError, match="rep=3"):
        native.decode_attention(qkv, cos, sin, kc, vc, bias, 9, 3)
    with pytest.raises(ValueError, match="col=12"):
        native.decode_attention(qkv, cos, sin, kc, vc, bias, 12, 2)


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

    from r1agent.models import retain_freed_memory

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
    assert faults_of_a_fresh_buffer() < 256  # 4096 pages of 4 KiB when mapped afresh
