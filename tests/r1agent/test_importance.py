from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace

import pytest
import torch
from torch.testing import assert_close

from r1agent.infra.config import load_config
from r1agent.recipes.async_rollout import AsyncRollouts, SyncRollouts
from r1agent.rl import grpo, importance
from r1agent.rl.stats import StepStats

LOG2, LOG3 = math.log(2.0), math.log(3.0)


def test_token_weights_are_truncated_ratios_hand_computed():
    old = torch.tensor([[0.0, LOG2, math.log(0.5)], [LOG3, 0.0, 0.0]])
    gen = torch.tensor([[0.0, 0.0, 0.0], [0.0, math.log(0.8), 0.0]])
    mask = torch.ones(2, 3)
    w = importance.truncated_weights(old, gen, mask, cap=2.5)
    # ratios: [1, 2, 0.5], [3 -> cap 2.5, 1/0.8 = 1.25, 1]
    assert_close(w, torch.tensor([[1.0, 2.0, 0.5], [2.5, 1.25, 1.0]]))
    w = importance.truncated_weights(old, gen, mask, cap=1.5)
    assert_close(w, torch.tensor([[1.0, 1.5, 0.5], [1.5, 1.25, 1.0]]))


def test_masked_tokens_weigh_zero_and_huge_ratios_stay_finite():
    old = torch.tensor([[1000.0, LOG2, 5.0]])
    gen = torch.tensor([[0.0, 0.0, -1000.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the last token is padding or env text
    w = importance.truncated_weights(old, gen, mask, cap=2.0)
    assert_close(w, torch.tensor([[2.0, 2.0, 0.0]]))
    assert torch.isfinite(w).all()


def test_sequence_level_uses_the_product_of_the_token_ratios():
    old = torch.tensor([[LOG2, math.log(1.5), 7.0], [math.log(0.5), math.log(1.2), 0.0]])
    gen = torch.zeros(2, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    w = importance.truncated_weights(old, gen, mask, cap=2.0, level="sequence")
    # row 0: 2 * 1.5 = 3 (the padded 7.0 does not count) -> cap 2, on its two tokens only
    # row 1: 0.5 * 1.2 * 1 = 0.6 on every token
    assert_close(w, torch.tensor([[2.0, 2.0, 0.0], [0.6, 0.6, 0.6]]))


def test_weights_carry_no_gradient():
    old = torch.tensor([[0.3, -0.2]], requires_grad=True)
    w = importance.truncated_weights(old, torch.zeros(1, 2), torch.ones(1, 2), cap=2.0)
    assert not w.requires_grad


def test_bad_level_and_cap_are_named():
    x = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="level: 'seq'"):
        importance.truncated_weights(x, x, x, cap=2.0, level="seq")
    with pytest.raises(ValueError, match="cap: 0"):
        importance.truncated_weights(x, x, x, cap=0)
    with pytest.raises(ValueError, match="enabled: 'on'"):
        importance.correction_enabled("on", engine="hf", asynchronous=False)


def test_corrected_loss_equals_the_uncorrected_loss_when_sampler_is_trainer():
    torch.manual_seed(0)
    logp = (torch.randn(3, 4) - 1.0).requires_grad_()
    old = logp.detach() + 0.1 * torch.randn(3, 4)
    adv = torch.tensor([1.0, -0.5, 2.0])
    mask = torch.tensor([[1.0, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]])
    per_tok, _ = grpo.clipped_surrogate(logp, old, adv, eps_low=0.2, eps_high=0.28)
    plain = grpo.token_mean(per_tok, mask)
    (g_plain,) = torch.autograd.grad(plain, logp)
    for level in importance.LEVELS:
        w = importance.truncated_weights(old, old.clone(), mask, cap=2.0, level=level)
        per_tok, _ = grpo.clipped_surrogate(logp, old, adv, eps_low=0.2, eps_high=0.28)
        corrected = grpo.token_mean(per_tok * w, mask)
        (g_corr,) = torch.autograd.grad(corrected, logp)
        assert torch.equal(corrected, plain)
        assert torch.equal(g_corr, g_plain)


def test_weights_scale_each_tokens_gradient():
    # ratio 1 (old = logp): d/dlogp of -w * exp(logp - old) * A = -w * A per token
    logp = torch.zeros(1, 2, requires_grad=True)
    w = importance.truncated_weights(
        torch.zeros(1, 2), torch.tensor([[0.0, -LOG2]]), torch.ones(1, 2), cap=3.0
    )
    per_tok, _ = grpo.clipped_surrogate(
        logp, logp.detach(), torch.tensor([1.5]), eps_low=0.2, eps_high=0.2
    )
    (per_tok * w).sum().backward()
    assert_close(logp.grad, torch.tensor([[-1.5, -3.0]]))


def test_weight_sums_and_step_metrics_over_micro_batches():
    st = StepStats()
    old = torch.tensor([[LOG2, 0.0], [LOG3, 0.0]])
    gen = torch.zeros(2, 2)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    w = importance.truncated_weights(old, gen, mask, cap=2.5)  # [[2, 1], [2.5, 0]]
    sums = importance.weight_sums(w, old, gen, mask, cap=2.5)
    assert sums["tokens"] == 3.0
    assert sums["weight"] == pytest.approx(5.5)
    assert sums["weight_max"] == pytest.approx(2.5)
    assert sums["clipped"] == 1.0
    assert sums["logprob_diff"] == pytest.approx(LOG2 + LOG3)
    assert sums["abs_diff_max"] == pytest.approx(LOG3)
    # k3 of KL(sampler || trainer) per token: e^d - d - 1 with d = old - sampler
    assert sums["kl"] == pytest.approx((2 - LOG2 - 1) + 0 + (3 - LOG3 - 1))
    st.add_importance(sums)
    # a second micro-batch: one token, sampler above the trainer (ratio 0.5)
    old2, gen2, m2 = torch.tensor([[-LOG2]]), torch.zeros(1, 1), torch.ones(1, 1)
    w2 = importance.truncated_weights(old2, gen2, m2, cap=2.5)
    st.add_importance(importance.weight_sums(w2, old2, gen2, m2, cap=2.5))
    m = st.importance_metrics()
    assert m["importance/weight_mean"] == pytest.approx(6.0 / 4)
    assert m["importance/weight_max"] == pytest.approx(2.5)
    assert m["importance/clipped_frac"] == pytest.approx(0.25)
    assert m["importance/logprob_diff_mean"] == pytest.approx((LOG3) / 4)
    assert m["importance/logprob_abs_diff_mean"] == pytest.approx((2 * LOG2 + LOG3) / 4)
    assert m["importance/logprob_abs_diff_max"] == pytest.approx(LOG3)
    kl2 = 0.5 + LOG2 - 1  # the second micro-batch's token: d = -log 2
    assert m["importance/kl"] == pytest.approx((3 - LOG2 - LOG3 + kl2) / 4)
    assert StepStats().importance_metrics() == {}


def test_auto_turns_on_for_a_separate_engine_or_stale_samples():
    assert importance.correction_enabled("auto", engine="vllm", asynchronous=False)
    assert importance.correction_enabled("auto", engine="vllm-server", asynchronous=False)
    assert importance.correction_enabled("auto", engine="hf", asynchronous=True)
    assert not importance.correction_enabled("auto", engine="hf", asynchronous=False)
    assert importance.correction_enabled(True, engine="hf", asynchronous=False)
    assert not importance.correction_enabled(False, engine="vllm", asynchronous=True)


def test_config_async_and_correction_keys():
    base = {"model": "m", "envs": {"r1/Math-v0": 1.0}}
    assert load_config(base).asynchronous is None
    c = load_config(base, ["async.max_staleness=2", "is_correction.level=sequence"])
    assert c.asynchronous.max_staleness == 2
    assert c.is_correction.level == "sequence" and c.is_correction.enabled == "auto"
    assert load_config({**base, "async": {}}).asynchronous.max_staleness == 1
    with pytest.raises(ValueError, match="max_staleness"):
        load_config(base, ["async.max_staleness=0"])
    with pytest.raises(ValueError, match="cap"):
        load_config(base, ["is_correction.cap=-1"])


def _fake_run(k: int, steps: int, start: int = 0):
    """Drive AsyncRollouts like the trainer: get(step), then an update that writes a bogus
    value mid-step before the new weights (version = steps taken = the weight's value)."""
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(float(start))
    seen: dict[int, list[float]] = {}

    def produce(step, m):
        assert threading.current_thread() is not threading.main_thread()
        values = []
        for _ in range(5):  # read the weights while the main thread updates
            values.append(float(m.weight))
            time.sleep(0.002)
        seen[step] = values
        return [SimpleNamespace(policy_version=None) for _ in range(2)], 0

    src = AsyncRollouts(produce, model, max_staleness=k, start=start, steps=steps)
    versions = {}
    try:
        for step in range(start, steps):
            episodes, dropped, t_gen, t_wait = src.get(step)
            assert dropped == 0 and t_gen > 0 and t_wait >= 0
            versions[step] = {e.policy_version for e in episodes}
            with torch.no_grad():  # the optimizer's step: intermediate garbage, then v + 1
                model.weight.fill_(-1.0)
                time.sleep(0.005)
                model.weight.fill_(float(step + 1))
            src.after_update()
    finally:
        src.close()
    return versions, seen


@pytest.mark.parametrize("k", [1, 2])
def test_async_rollouts_use_the_snapshot_k_steps_back_never_live_weights(k):
    versions, seen = _fake_run(k, steps=5)
    for step, vs in versions.items():
        want = max(step - k, 0)
        assert vs == {want}, (step, vs)
        assert set(seen[step]) == {float(want)}  # never -1: not the weights being updated


def test_async_rollouts_after_resume_start_from_the_resumed_weights():
    versions, seen = _fake_run(1, steps=6, start=3)
    assert versions == {3: {3}, 4: {3}, 5: {4}}
    assert set(seen[5]) == {4.0}


def test_sync_rollouts_sample_the_current_policy():
    model = torch.nn.Linear(1, 1)
    synced = []
    src = SyncRollouts(
        lambda step, m: ([SimpleNamespace(policy_version=None)], 1) if m is model else None,
        model,
        after_update=lambda: synced.append(1),
    )
    episodes, dropped, _, _ = src.get(7)
    src.after_update()
    assert [e.policy_version for e in episodes] == [7] and dropped == 1 and synced == [1]
