from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM

from r1agent.infra import checkpoint as ckpt
from r1agent.recipes.grpo import train_grpo
from tests.r1agent.grpo_helpers import base_config, register_test_envs, tiny_model

register_test_envs()

ASYNC = {"async": {"max_staleness": 1}}
IMPORTANCE_KEYS = (
    "importance/weight_mean",
    "importance/weight_max",
    "importance/clipped_frac",
    "importance/logprob_diff_mean",
)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def _rows(summary):
    """The history without timings (which differ between any two runs)."""
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in summary["history"]]


def _params(path):
    return {
        k: v.clone() for k, v in AutoModelForCausalLM.from_pretrained(path).state_dict().items()
    }


def test_async_run_trains_with_staleness_at_most_one_and_logs_importance(model_dir, tmp_path):
    summary = train_grpo(base_config(model_dir, tmp_path / "run", steps=4, **ASYNC))
    hist = summary["history"]
    assert [r["step"] for r in hist] == [1, 2, 3, 4]
    # step 1 samples the starting weights; step s > 1 the weights after step s - 2 (0-based)
    assert [r["async/staleness_max"] for r in hist] == [0.0, 1.0, 1.0, 1.0]
    assert [r["async/policy_version_min"] for r in hist] == [0.0, 0.0, 1.0, 2.0]
    for r in hist:
        assert all(k in r for k in IMPORTANCE_KEYS), r.keys()
        assert 0 < r["importance/weight_max"] <= 2.0  # the default cap
        assert "perf/rollout_wait_s" in r
    # stale samples: the trainer's log-probs now differ from the sampler's
    assert hist[0]["importance/logprob_abs_diff_mean"] < 1e-3
    assert hist[-1]["importance/logprob_abs_diff_mean"] > 1e-3
    before, after = _params(model_dir), _params(tmp_path / "run")
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_async_run_is_reproducible_given_the_seed(model_dir, tmp_path):
    a = train_grpo(base_config(model_dir, tmp_path / "a", steps=3, **ASYNC))
    b = train_grpo(base_config(model_dir, tmp_path / "b", steps=3, **ASYNC))
    assert _rows(a) == _rows(b)


def test_async_run_resumes_from_its_checkpoint(model_dir, tmp_path):
    out = tmp_path / "run"
    train_grpo(base_config(model_dir, out, steps=3, save_every=1, keep_checkpoints=5, **ASYNC))
    start = int(ckpt.latest_checkpoint(out).name.split("-")[-1])
    assert 0 < start < 5
    resumed = train_grpo(base_config(model_dir, out, steps=5, save_every=1, **ASYNC))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert resumed["steps"] == 5
    after = [r for r in resumed["history"] if r["step"] > start]
    # the first step after resuming samples the resumed weights, later ones one step back
    assert [r["async/staleness_max"] for r in after] == [0.0] + [1.0] * (len(after) - 1)
    assert after[0]["async/policy_version_min"] == start
    assert (out / "checkpoints" / "step-000004" / ckpt.STATE_FILE).is_file()


def test_sync_runs_are_unchanged_by_the_new_options(model_dir, tmp_path):
    default = train_grpo(base_config(model_dir, tmp_path / "default", steps=2))
    off = train_grpo(
        base_config(
            model_dir,
            tmp_path / "off",
            steps=2,
            **{"async": None, "is_correction": {"enabled": False}},
        )
    )
    assert _rows(default) == _rows(off)
    keys = set(default["history"][-1])
    assert not any(k.startswith(("importance/", "async/")) for k in keys)
    # forced on with the trainer's own forward as the sampler: weights are 1 (to rounding)
    on = train_grpo(
        base_config(model_dir, tmp_path / "on", steps=2, is_correction={"enabled": True})
    )
    for r, d in zip(on["history"], default["history"], strict=True):
        assert r["importance/weight_mean"] == pytest.approx(1.0, abs=1e-4)
        assert r["importance/clipped_frac"] == 0.0
        assert r["losses/policy"] == pytest.approx(d["losses/policy"], abs=1e-5)
        assert r["charts/reward"] == pytest.approx(d["charts/reward"], abs=1e-6)


def test_async_sequence_level_and_larger_staleness(model_dir, tmp_path):
    cfg = base_config(
        model_dir,
        tmp_path / "run",
        steps=4,
        **{"async": {"max_staleness": 2}, "is_correction": {"level": "sequence", "cap": 1.5}},
    )
    hist = train_grpo(cfg)["history"]
    assert [r["async/staleness_max"] for r in hist] == [0.0, 1.0, 2.0, 2.0]
    assert all(r["importance/weight_max"] <= 1.5 for r in hist)


def test_the_weights_scale_the_policy_gradient_in_the_update(model_dir, tmp_path):
    # sampler == trainer: every ratio is 1 (to rounding), so a cap of 0.5 weighs every token
    # 0.5 and the first step's gradient (same weights, same batch) is exactly halved
    plain = train_grpo(base_config(model_dir, tmp_path / "plain", steps=1))["history"][0]
    capped = train_grpo(
        base_config(
            model_dir, tmp_path / "capped", steps=1, is_correction={"enabled": True, "cap": 0.5}
        )
    )["history"][0]
    assert capped["importance/clipped_frac"] == 1.0
    assert capped["importance/weight_mean"] == pytest.approx(0.5)
    assert capped["losses/grad_norm"] == pytest.approx(0.5 * plain["losses/grad_norm"], rel=1e-4)
    assert capped["losses/policy"] == pytest.approx(0.5 * plain["losses/policy"], abs=1e-6)
