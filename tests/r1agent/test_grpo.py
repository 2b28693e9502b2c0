from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from r1agent.rl import grpo


def test_group_advantages_hand_computed():
    # group 1: rewards [1, 0] -> mean 0.5, population std 0.5 -> [+1, -1] (eps aside)
    # group 2: rewards [2, 2] -> all equal -> [0, 0]
    r = torch.tensor([1.0, 0.0, 2.0, 2.0])
    adv = grpo.group_advantages(r, 2, eps=0.0 + 1e-12)
    assert_close(adv, torch.tensor([1.0, -1.0, 0.0, 0.0]))
    # Dr. GRPO: no std scaling -> r - mean
    adv = grpo.group_advantages(torch.tensor([3.0, 1.0, 0.0, 0.0]), 2, scale=False)
    assert_close(adv, torch.tensor([1.0, -1.0, 0.0, 0.0]))


def test_group_advantages_eps_and_invalid():
    r = torch.tensor([1.0, 0.0])
    assert_close(grpo.group_advantages(r, 2, eps=0.5), torch.tensor([0.5, -0.5]))
    # the NaN episode is invalid: excluded from mean/std, advantage 0;
    # remaining [1, 0, 0] -> mean 1/3, adv without scaling [2/3, -1/3, -1/3]
    r = torch.tensor([1.0, 0.0, 0.0, float("nan")])
    valid = torch.tensor([True, True, True, False])
    adv = grpo.group_advantages(r, 4, valid=valid, scale=False)
    assert_close(adv, torch.tensor([2 / 3, -1 / 3, -1 / 3, 0.0]))
    assert torch.isfinite(grpo.group_advantages(r, 4, valid=valid)).all()


def test_clipped_surrogate_low_and_high():
    old = torch.zeros(2, 2)
    # ratios e^{0.5}=1.6487 and e^{-0.5}=0.6065
    logp = torch.tensor([[0.5, -0.5], [0.5, -0.5]])
    adv = torch.tensor([1.0, -1.0])
    loss, clipped = grpo.clipped_surrogate(logp, old, adv, eps_low=0.2, eps_high=0.3)
    # A=+1: min(1.6487, 1.3) = 1.3 (clipped); min(0.6065, 0.8) = 0.6065 (not clipped)
    # A=-1: min(-1.6487, -1.3) = -1.6487 (not clipped); min(-0.6065, -0.8) = -0.8 (clipped)
    e = math.exp(0.5)
    assert_close(loss, torch.tensor([[-1.3, -1 / e], [e, 0.8]]))
    assert clipped.tolist() == [[True, False], [False, True]]


def test_clipped_surrogate_ratio_one_gradient_is_advantage():
    logp = torch.zeros(1, 3, requires_grad=True)
    loss, _ = grpo.clipped_surrogate(
        logp, logp.detach(), torch.tensor([2.0]), eps_low=0.2, eps_high=0.2
    )
    loss.sum().backward()
    assert_close(logp.grad, torch.full((1, 3), -2.0))


def test_kl_k3():
    logp = torch.tensor([0.0, math.log(0.5)])
    ref = torch.tensor([0.0, math.log(0.25)])
    # d = ref - logp = [0, log 0.5]; k3 = e^d - d - 1 = [0, 0.5 + log 2 - 1]
    assert_close(grpo.kl_k3(logp, ref), torch.tensor([0.0, 0.5 + math.log(2) - 1]))


def test_aggregations_hand_computed():
    loss = torch.tensor([[1.0, 3.0, 100.0], [2.0, 0.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    # sequence mean: (mean(1,3)=2 + mean(2)=2) / 2 = 2
    assert_close(grpo.sequence_mean(loss, mask), torch.tensor(2.0))
    # token mean: (1+3+2)/3 = 2
    assert_close(grpo.token_mean(loss, mask), torch.tensor(2.0))
    # Dr. GRPO: 6 / (2 * 4) = 0.75
    assert_close(grpo.constant_normalizer(loss, mask, max_len=4), torch.tensor(0.75))
    loss2 = torch.tensor([[4.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    mask2 = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    # sequence mean (4 + 1)/2 = 2.5 ; token mean 7/4
    assert_close(grpo.sequence_mean(loss2, mask2), torch.tensor(2.5))
    assert_close(grpo.token_mean(loss2, mask2), torch.tensor(1.75))
    assert set(grpo.AGGREGATIONS) == {"sequence_mean", "token_mean", "constant"}


def test_aggregations_micro_batches_sum_to_full_batch():
    torch.manual_seed(0)
    loss, mask = torch.randn(6, 5), (torch.rand(6, 5) > 0.3).float()
    full = grpo.token_mean(loss, mask)
    parts = sum(
        grpo.token_mean(loss[i : i + 2], mask[i : i + 2], num_tokens=mask.sum()) for i in (0, 2, 4)
    )
    assert_close(parts, full)
    full = grpo.sequence_mean(loss, mask)
    parts = sum(
        grpo.sequence_mean(loss[i : i + 3], mask[i : i + 3], num_sequences=6) for i in (0, 3)
    )
    assert_close(parts, full)


def test_varied_groups_and_truncation_mask():
    r = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.5, 0.5])
    assert grpo.varied_groups(r, 2).tolist() == [False, True, False]
    assert grpo.truncation_mask(torch.tensor([True, False])).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_token_logprobs_and_entropy_match_reference(temperature):
    torch.manual_seed(0)
    logits, tgt = torch.randn(5, 4, 11), torch.randint(0, 11, (5, 4))
    ref = torch.log_softmax(logits / temperature, -1).gather(-1, tgt[..., None]).squeeze(-1)
    assert_close(grpo.token_logprobs(logits, tgt, temperature=temperature, chunk=2), ref)
    p = torch.softmax(logits / temperature, -1)
    assert_close(
        grpo.token_entropy(logits, temperature=temperature, chunk=3), -(p * p.log()).sum(-1)
    )


def test_contributing_rows_drop_rows_whose_terms_are_zero():
    adv = torch.tensor([0.5, 0.0, -1.0, 0.0, 2.0])
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.5, 0.0]])
    # row 2 has no counted token; rows 1 and 3 have advantage 0
    assert grpo.contributing_rows(adv, mask, beta=0.0).tolist() == [0, 4]
    # with a KL term a zero-advantage row still pulls towards the reference
    assert grpo.contributing_rows(adv, mask, beta=0.04).tolist() == [0, 1, 3, 4]
    # and its surrogate really is flat: zero loss and zero gradient at any ratio
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    per_tok, _ = grpo.clipped_surrogate(
        logp, torch.tensor([[-1.5, -1.0]]), torch.tensor([0.0]), eps_low=0.2, eps_high=0.28
    )
    (grad,) = torch.autograd.grad(per_tok.sum(), logp)
    assert per_tok.abs().sum() == 0 and grad.abs().sum() == 0
