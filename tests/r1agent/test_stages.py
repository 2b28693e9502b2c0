from __future__ import annotations

import json

import gymnasium as gym
import pytest

from r1agent.data.coldstart import solver_examples
from r1agent.recipes.sft import SFTConfig
from r1envs import formats


def test_sft_learns_and_checkpoints_end_with_eos(tiny, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1agent.infra.models import load_model
    from r1agent.recipes.sft import train_sft

    model, tok = load_model(str(tiny))
    examples = solver_examples(["r1/Arithmetic-v0"], 64)
    cfg = SFTConfig(
        output_dir=str(tmp_path / "out"), max_steps=12, lr=3e-3, batch_size=4, save_steps=[6]
    )
    seen = []
    summary = train_sft(model, tok, examples, cfg, on_save=lambda s, p: seen.append((s, p.name)))
    rows = [
        json.loads(x) for x in (tmp_path / "out" / "sft_metrics.jsonl").read_text().splitlines()
    ]
    assert rows[-1]["sft/loss"] < rows[0]["sft/loss"]
    assert seen == [(6, "checkpoint-6")] and summary["steps"] == 12
    # a plain transformers user loads it and generate stops at the tokenizer's eos
    m = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    t = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert m.generation_config.eos_token_id == t.eos_token_id
    # the format tags survive decode(skip_special_tokens=True) (the grader needs them)
    ids = t(formats.REASONING_START + " 1 " + formats.THINK_END)["input_ids"]
    assert formats.REASONING_START in t.decode(ids, skip_special_tokens=True)


def test_sft_stops_early_when_callback_says_so(tiny, tmp_path):
    from r1agent.infra.models import load_model
    from r1agent.recipes.sft import train_sft

    model, tok = load_model(str(tiny))
    cfg = SFTConfig(output_dir=str(tmp_path / "o"), max_steps=20, batch_size=2, save_steps=[3, 6])
    s = train_sft(
        model, tok, solver_examples(["r1/Arithmetic-v0"], 8), cfg, on_save=lambda s, p: s >= 3
    )
    assert s["steps"] == 3


def test_reward_model_trains_and_loads_as_a_judge(tiny, tmp_path):
    from r1agent.recipes.reward_model import RewardModelConfig, train_reward_model
    from r1agent.rewards.judges import RewardModelJudge

    summary = train_reward_model(
        RewardModelConfig(model=str(tiny), output_dir=str(tmp_path / "rm"), epochs=2, batch_size=32)
    )
    assert summary["train_accuracy"] > 0.5
    judge = RewardModelJudge(str(tmp_path / "rm"))
    scores = judge.score(["What is the capital of Canada?"] * 2, ["Ottawa.", "Toronto."])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)


def test_chat_env_scores_summary_and_whole_response(tiny, tmp_path):
    from r1agent.recipes.reward_model import RewardModelConfig, train_reward_model
    from r1agent.rewards.chat_env import CHAT_ENV_ID, summary_part

    train_reward_model(
        RewardModelConfig(model=str(tiny), output_dir=str(tmp_path / "rm"), epochs=1)
    )
    env = gym.make(CHAT_ENV_ID, helpfulness=f"rm:{tmp_path / 'rm'}")
    obs, info = env.reset(seed=0)
    assert obs.startswith("User: ") and obs.endswith("Assistant:")
    text = f"{formats.REASONING_START} think {formats.REASONING_END} Ottawa."
    _, reward, terminated, _, info = env.step(text)
    assert terminated and set(info["rewards"]) == {"helpfulness", "harmlessness"}
    assert isinstance(reward, float) and info["error"] is None
    assert summary_part(text) == "Ottawa."


def test_stage4_fails_before_training_when_the_reward_model_cannot_load(tmp_path):
    from r1agent.recipes.pipeline import Stage4Config
    from r1agent.recipes.stages import stage4_all_scenarios_rl
    from r1agent.rewards.judges import JudgeLoadError

    cfg = Stage4Config(helpfulness=f"rm:{tmp_path / 'missing'}")
    with pytest.raises(JudgeLoadError, match="missing"):
        stage4_all_scenarios_rl(
            tmp_path / "s3", tmp_path / "s4", cfg, env_ids=["r1/Arithmetic-v0"], max_new_tokens=8
        )
    assert not (tmp_path / "s4").exists()


def test_general_examples_use_the_shipped_set_and_name_bad_files(tmp_path):
    from r1agent.recipes.stages import general_examples

    ex = general_examples(None)
    assert len(ex) > 50 and ex[0].prompt.startswith("User: ")
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        general_examples(tmp_path / "nope.jsonl")


def test_stage2_and_stage4_run_the_real_trainer(tiny, tmp_path):
    from r1agent.recipes.pipeline import RLConfig, Stage4Config
    from r1agent.recipes.reward_model import RewardModelConfig, train_reward_model
    from r1agent.recipes.stages import stage2_reasoning_rl, stage4_all_scenarios_rl

    grpo = {
        "steps": 1,
        "prompts_per_step": 2,
        "group_size": 2,
        "progress": False,
        "tensorboard": False,
        "plots": False,
    }
    stage2_reasoning_rl(
        tiny, tmp_path / "s2", RLConfig(grpo=grpo), env_ids=["r1/Arithmetic-v0"], max_new_tokens=8
    )
    s2 = json.loads((tmp_path / "s2" / "stage.json").read_text())
    assert s2["trainer"]["steps"] == 1 and (tmp_path / "s2" / "config.json").is_file()
    assert (tmp_path / "s2" / "metrics.jsonl").is_file()

    train_reward_model(
        RewardModelConfig(model=str(tiny), output_dir=str(tmp_path / "rm"), epochs=1)
    )
    cfg = Stage4Config(
        grpo={**grpo, "prompts_per_step": 4},
        helpfulness=f"rm:{tmp_path / 'rm'}",
        general_weight=0.5,
    )
    stage4_all_scenarios_rl(
        tmp_path / "s2", tmp_path / "s4", cfg, env_ids=["r1/Arithmetic-v0"], max_new_tokens=8
    )
    rows = [json.loads(x) for x in (tmp_path / "s4" / "metrics.jsonl").read_text().splitlines()]
    assert any(k.startswith("rewards/helpfulness") for k in rows[-1]), sorted(rows[-1])
