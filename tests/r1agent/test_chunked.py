"""Chunked log-probs and entropy equal the unchunked computation, forward and backward."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from r1agent.rl.chunked import chunked_entropy, chunked_logprobs


def _reference(hidden, head, targets, temperature):
    logp = torch.log_softmax(head(hidden).float() / temperature, dim=-1)
    return logp.gather(-1, targets[..., None]).squeeze(-1)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_logprobs_and_grads_equal_unchunked(bias, temperature, chunk):
    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=bias).double()
    hidden = torch.randn(3, 7, 16, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 50, (3, 7))
    upstream = torch.randn(3, 7, dtype=torch.float64)

    ref = _reference(hidden, head, targets, temperature)
    (ref * upstream).sum().backward()
    want = [hidden.grad.clone(), head.weight.grad.clone()]
    if bias:
        want.append(head.bias.grad.clone())
    hidden.grad = None
    head.zero_grad()

    got = chunked_logprobs(hidden, head, targets, temperature=temperature, chunk=chunk)
    assert got.shape == targets.shape and got.dtype == torch.float32
    (got.double() * upstream).sum().backward()
    assert_close(got.double(), ref.double(), atol=1e-5, rtol=1e-5)
    grads = [hidden.grad, head.weight.grad] + ([head.bias.grad] if bias else [])
    for g, w in zip(grads, want, strict=True):
        assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_frozen_head_gets_no_gradient():
    torch.manual_seed(1)
    head = torch.nn.Linear(8, 20, bias=False)
    head.weight.requires_grad_(False)
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    targets = torch.randint(0, 20, (2, 5))
    chunked_logprobs(hidden, head, targets, chunk=3).sum().backward()
    assert head.weight.grad is None
    assert hidden.grad is not None and torch.isfinite(hidden.grad).all()


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_entropy_equals_unchunked(temperature):
    torch.manual_seed(2)
    head = torch.nn.Linear(16, 40)
    hidden = torch.randn(4, 6, 16)
    logp = torch.log_softmax(head(hidden) / temperature, dim=-1)
    want = -(logp.exp() * logp).sum(-1)
    assert_close(chunked_entropy(hidden, head, temperature=temperature, chunk=5), want)


def test_bad_arguments_are_named():
    head = torch.nn.Linear(4, 10)
    h, t = torch.randn(2, 4), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="chunk must be at least 1 or 'auto', got 0"):
        chunked_logprobs(h, head, t, chunk=0)
    with pytest.raises(ValueError, match="temperature must be positive, got -1"):
        chunked_logprobs(h, head, t, temperature=-1)


def test_auto_chunk_bounds_the_block_and_equals_unchunked():
    from r1agent.rl.chunked import CHUNK_BYTES, auto_chunk

    assert auto_chunk(151_936) * 151_936 * 4 <= CHUNK_BYTES
    assert auto_chunk(151_936) >= 200  # a (220, vocab) block, not one position at a time
    assert auto_chunk(10**9) == 16
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 50)
    hidden, targets = torch.randn(40, 8), torch.randint(0, 50, (40,))
    want = torch.log_softmax(head(hidden), dim=-1).gather(-1, targets[:, None])[:, 0]
    assert_close(chunked_logprobs(hidden, head, targets, chunk="auto"), want)
    with pytest.raises(ValueError, match="got 'big'"):
        chunked_logprobs(hidden, head, targets, chunk="big")
