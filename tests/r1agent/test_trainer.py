from __future__ import annotations

import json
import math

import gymnasium as gym
import pytest
import torch
from transformers import AutoModelForCausalLM

from r1agent.infra.config import load_config
from r1agent.recipes.grpo import lr_factor, sample_problems, train_grpo
from r1agent.rl import grpo
from tests.r1agent.grpo_helpers import base_config, register_test_envs, tiny_model

register_test_envs()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("tiny"))


def _params(path):
    m = AutoModelForCausalLM.from_pretrained(path)
    return {k: v.clone() for k, v in m.state_dict().items()}


def test_train_writes_metrics_checkpoints_plots_and_model(model_dir, tmp_path):
    cfg = base_config(model_dir, tmp_path / "run", save_every=1, tensorboard=True, plots=True)
    summary = train_grpo(cfg)
    assert summary["steps"] == 2
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in (
        "charts/reward",
        "charts/accuracy",
        "rewards/digit",
        "losses/kl",
        "losses/clip_fraction",
        "losses/entropy",
        "losses/grad_norm",
        "charts/response_length_mean",
        "charts/response_length_max",
        "perf/step_time_s",
        "perf/tokens_per_s",
        "losses/logprob_mismatch",
    ):
        assert key in rows[-1], key
    assert rows[0]["samples/completions"]
    # engine and trainer log-probs agree (same model, same temperature)
    assert rows[0]["losses/logprob_mismatch"] < 1e-3
    assert (tmp_path / "run" / "checkpoints" / "step-000001" / "trainer_state.pt").is_file()
    assert (tmp_path / "run" / "plots" / "grpo.png").stat().st_size > 0
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 2
    assert any((tmp_path / "run" / "tb").iterdir())
    before, after = _params(model_dir), _params(tmp_path / "run")
    assert any(not torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize(
    "env_id",
    ["test/DigitRaise-v0", "test/DigitError-v0", "test/DigitNaN-v0", "test/DigitResetRaise-v0"],
)
def test_env_failures_are_masked_and_counted(model_dir, tmp_path, env_id):
    cfg = base_config(model_dir, tmp_path / "run", envs={env_id: 1.0}, prompts_per_step=4)
    summary = train_grpo(cfg)
    failures = sum(r["charts/env_failures"] for r in summary["history"])
    assert failures > 0
    assert all(r["losses/skipped_updates"] == 0 for r in summary["history"])
    assert all(torch.isfinite(torch.tensor(r["losses/grad_norm"])) for r in summary["history"])


def test_nan_loss_skips_the_update(model_dir, tmp_path, monkeypatch):
    monkeypatch.setitem(
        grpo.AGGREGATIONS,
        "token_mean",
        lambda *a, **k: torch.tensor(float("nan"), requires_grad=True),
    )
    cfg = base_config(model_dir, tmp_path / "run", steps=1)
    with pytest.warns(UserWarning, match="non-finite"):
        summary = train_grpo(cfg)
    assert summary["history"][0]["losses/skipped_updates"] == 1
    before, after = _params(model_dir), _params(tmp_path / "run")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_kl_reference_mu_and_variants(model_dir, tmp_path):
    cfg = base_config(
        model_dir,
        tmp_path / "run",
        beta=0.1,
        updates_per_batch=2,
        loss_aggregation="sequence_mean",
        scale_rewards=False,
        mask_truncated=True,
        micro_batch_size=3,
    )
    summary = train_grpo(cfg)
    last = summary["history"][-1]
    assert last["losses/kl"] >= 0.0
    assert summary["history"][0]["losses/kl"] == pytest.approx(
        0.0, abs=1e-6
    )  # policy == ref at step 1


def test_reward_fn_hook_and_dynamic_sampling(model_dir, tmp_path):
    calls = []

    def reward_fn(prompts, completions, infos):
        calls.append(len(prompts))
        assert all(i["env_id"] == "test/Digit-v0" for i in infos)
        # all-equal rewards for even problems make those groups uninformative
        return [None if "digit 0" in p else 0.5 for p in prompts]

    cfg = base_config(model_dir, tmp_path / "run", dynamic_sampling=True, steps=1)
    summary = train_grpo(cfg, reward_fn=reward_fn)
    assert calls and "rewards/custom" in summary["history"][0]


def test_stop_callback(model_dir, tmp_path):
    seen = []
    cfg = base_config(model_dir, tmp_path / "run", steps=5)
    summary = train_grpo(cfg, callbacks=[lambda step, row: seen.append(step) or step >= 1])
    assert seen == [1] and summary["steps"] == 1


def test_chat_prompt_format(model_dir, tmp_path):
    cfg = base_config(model_dir, tmp_path / "run", prompt_format="chat", steps=1)
    summary = train_grpo(cfg)
    assert summary["history"][0]["charts/response_length_mean"] > 0


def test_sample_problems_is_deterministic_and_weighted():
    mix = {"a": 1.0, "b": 3.0}
    one = sample_problems(mix, 400, seed=0, step=3, rank=0, seed_range=1000)
    assert one == sample_problems(mix, 400, seed=0, step=3, rank=0, seed_range=1000)
    assert one != sample_problems(mix, 400, seed=0, step=3, rank=1, seed_range=1000)
    share_b = sum(e == "b" for e, _ in one) / len(one)
    assert 0.65 < share_b < 0.85
    assert all(0 <= s < 1000 for _, s in one)


def test_cli_grpo_with_overrides(model_dir, tmp_path):
    from typer.testing import CliRunner

    from r1agent.cli import app

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"model: {model_dir}\noutput_dir: {tmp_path / 'run'}\nenvs: {{test/Digit-v0: 1.0}}\n"
    )
    args = [
        "grpo",
        str(cfg),
        "steps=1",
        "prompts_per_step=2",
        "group_size=2",
        "max_new_tokens=4",
        "progress=false",
        "tensorboard=false",
        "plots=false",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert (tmp_path / "run" / "model.safetensors").is_file()
    res = CliRunner().invoke(app, ["grpo", str(cfg), "group_size=4", "batch_size=6"])
    assert res.exit_code != 0 and "batch_size: 6" in str(res.exception)


def test_vllm_engine_without_vllm_names_the_extra(model_dir, tmp_path):
    from r1agent.rollout.vllm_engine import vllm_available

    if vllm_available():
        pytest.skip("vllm is installed: the vllm tier tests the engine")
    cfg = base_config(model_dir, tmp_path / "run", rollout={"engine": "vllm"})
    with pytest.raises(ImportError, match="vllm"):
        train_grpo(cfg)


class _HalfConstantEnv(gym.Env):
    """Even seeds: reward 1 whatever the answer (all-equal groups); odd: a graded reward."""

    def __init__(self) -> None:
        from r1envs.spaces import UnicodeText

        self.observation_space = UnicodeText(1000)
        self.action_space = UnicodeText(100_000)
        self.constant = True

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.constant = (seed or 0) % 2 == 0
        return "Write letters:", {}

    def step(self, action):
        score = (
            1.0 if self.constant else sum("a" <= ch <= "m" for ch in action) / max(1, len(action))
        )
        return "", score, True, False, {"rewards": {"score": score}, "error": None}


@pytest.mark.parametrize("loss_aggregation", ["token_mean", "sequence_mean"])
def test_rows_that_cannot_move_the_loss_are_skipped_without_changing_the_update(
    model_dir, tmp_path, monkeypatch, loss_aggregation
):
    from r1agent.recipes import grpo as trainer_mod

    if "test/HalfConstant-v0" not in gym.registry:
        gym.register("test/HalfConstant-v0", entry_point=_HalfConstantEnv)
    kw = {
        "envs": {"test/HalfConstant-v0": 1.0},
        "prompts_per_step": 4,
        "seed_range": 1000,
        "loss_aggregation": loss_aggregation,
        "micro_batch_size": 8,
    }
    rows_seen = []
    real = trainer_mod.response_logprobs

    def counting(model, b, **kw):
        rows_seen.append(b.response_ids.shape[0])
        return real(model, b, **kw)

    monkeypatch.setattr(trainer_mod, "response_logprobs", counting)
    train_grpo(base_config(model_dir, tmp_path / "skipping", **kw))
    skipped_rows = sum(rows_seen)
    assert 0 < skipped_rows < 2 * 4 * 4  # some, not all, of 2 steps x 16 episodes
    monkeypatch.setattr(
        grpo, "contributing_rows", lambda adv, mask, *, beta: torch.arange(len(adv))
    )
    rows_seen.clear()
    train_grpo(base_config(model_dir, tmp_path / "all", **kw))
    assert sum(rows_seen) == 2 * 4 * 4
    a, b = _params(tmp_path / "skipping"), _params(tmp_path / "all")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=1e-5)


def test_a_step_with_nothing_to_learn_still_runs(model_dir, tmp_path):
    if "test/HalfConstant-v0" not in gym.registry:
        gym.register("test/HalfConstant-v0", entry_point=_HalfConstantEnv)
    # seed_range 1 -> seed 0 only: every group is all-equal, every advantage 0
    cfg = base_config(
        model_dir,
        tmp_path / "run",
        envs={"test/HalfConstant-v0": 1.0},
        seed_range=1,
        weight_decay=0.5,
    )
    from r1agent.infra.models import load_model

    model, tok = load_model(model_dir)
    model.model.embed_tokens.requires_grad_(False)  # frozen parameters stay untouched
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = train_grpo(cfg, model=model, tokenizer=tok)
    assert summary["steps"] == 2
    final = summary["final"]
    assert final["losses/policy"] == 0.0 and final["losses/grad_norm"] == 0.0
    after = model.state_dict()
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    # the trainable ones took the optimizer step of a zero gradient: weight decay only
    w = "model.layers.0.mlp.up_proj.weight"
    torch.testing.assert_close(after[w], before[w] * (1 - 1e-3 * 0.5) ** 2)


def test_a_step_whose_episodes_all_failed_changes_no_weight(model_dir, tmp_path):
    from r1agent.infra.models import load_model
    from tests.r1agent.grpo_helpers import DigitEnv

    model, tok = load_model(model_dir)
    after_step1 = {}

    def outage_after_step1(step, row):
        if step == 1:
            after_step1.update({k: v.clone() for k, v in model.state_dict().items()})
            DigitEnv.down = True

    cfg = base_config(
        model_dir, tmp_path / "run", envs={"test/DigitOutage-v0": 1.0}, steps=3, weight_decay=0.5
    )
    try:
        with pytest.warns(UserWarning, match="100% of the episodes failed.*sandbox unreachable"):
            summary = train_grpo(cfg, model=model, tokenizer=tok, callbacks=[outage_after_step1])
    finally:
        DigitEnv.down = False
    # Adam's momentum from step 1 and weight decay would both move the weights
    for k, v in model.state_dict().items():
        assert torch.equal(v, after_step1[k]), k
    rates = [r["charts/error_rate"] for r in summary["history"]]
    assert rates == [0.0, 1.0, 1.0]
    assert [r["losses/skipped_updates"] for r in summary["history"]] == [0.0, 1.0, 1.0]


def test_error_rate_is_logged_and_warned_above_the_threshold(model_dir, tmp_path):
    import warnings

    kw = {"envs": {"test/DigitError-v0": 1.0}, "steps": 3}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train_grpo(base_config(model_dir, tmp_path / "low", error_rate_warn=0.1, **kw))
    rates = [r["charts/error_rate"] for r in summary["history"]]
    # a group shares its problem, so it fails as a whole: rates of 0, 1/2 or 1 per step
    assert any(r > 0.1 for r in rates) and set(rates) <= {0.0, 0.5, 1.0}
    errors = [w for w in caught if "error_rate_warn: 0.1" in str(w.message)]
    assert len(errors) == sum(r > 0.1 for r in rates) and "grader timeout" in str(errors[0].message)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_grpo(base_config(model_dir, tmp_path / "high", error_rate_warn=1.0, **kw))
    assert not [w for w in caught if "error_rate_warn" in str(w.message)]


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_lr_schedule_is_logged_as_the_rate_each_step_used(model_dir, tmp_path, schedule):
    cfg = base_config(model_dir, tmp_path / "run", steps=5, warmup_steps=1, lr_scheduler=schedule)
    train_grpo(cfg)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["charts/lr"] / cfg.lr for r in rows]
    assert lrs[0] == pytest.approx(0.5)  # warm-up: (0 + 1) / (1 + 1)
    decay = {
        "constant": [1.0, 1.0, 1.0, 1.0],
        "linear": [1.0, 0.75, 0.5, 0.25],  # reaches 0 one step after the last
        "cosine": [1.0, 0.853553, 0.5, 0.146447],
    }[schedule]
    assert lrs[1:] == pytest.approx(decay, abs=1e-6)


def test_lr_schedule_factor_and_bad_name(model_dir, tmp_path):
    cfg = base_config(model_dir, tmp_path / "run", steps=100, lr_scheduler="cosine")
    assert lr_factor(cfg, 0) == 1.0 and lr_factor(cfg, 50) == pytest.approx(0.5)
    assert lr_factor(cfg, 99) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    assert lr_factor(cfg, 150) == pytest.approx(0.0)  # past the end (resumed with fewer steps)
    with pytest.raises(ValueError, match="lr_scheduler"):
        load_config({**cfg.model_dump(), "lr_scheduler": "step"})
