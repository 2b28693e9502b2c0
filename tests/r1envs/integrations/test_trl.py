from __future__ import annotations

import functools
import json
import os

import pytest

from r1envs.declarative import ExactTask
from r1envs.integrations.trl import completion_text, prompt_rows, reward_function
from r1envs.registry import register_task, unregister_task

ENV_ID = "test/TrlCapitals-v0"
OTHER_ID = "test/TrlOther-v0"
PROBLEMS = [
    {"question": "Capital of France?", "answer": "Paris"},
    {"question": "Capital of Italy?", "answer": "Rome"},
    {"question": "Capital of Spain?", "answer": "Madrid"},
    {"question": "Capital of Peru?", "answer": "Lima"},
]


@pytest.fixture(scope="module", autouse=True)
def envs():
    register_task(ENV_ID, functools.partial(ExactTask, PROBLEMS))
    register_task(OTHER_ID, functools.partial(ExactTask, PROBLEMS[:1]))
    yield
    unregister_task(ENV_ID)
    unregister_task(OTHER_ID)


def test_prompt_rows_and_reward_roundtrip():
    rows = prompt_rows(ENV_ID, 6, seed=10)
    assert [r["r1_seed"] for r in rows] == list(range(10, 16))
    assert rows[0]["prompt"][-1]["role"] == "user"
    problems = [json.loads(r["r1_problem"]) for r in rows]
    assert all(
        p["question"] == r["prompt"][-1]["content"] for p, r in zip(problems, rows, strict=True)
    )
    assert prompt_rows(ENV_ID, 6, seed=10) == rows  # same seeds, same problems

    f = reward_function(ENV_ID)
    good = [f"<think>easy</think> <answer>{p['answer']}</answer>" for p in problems]
    wrong = ["<think>hmm</think> <answer>Berlin</answer>"] * 6
    kwargs = {k: [r[k] for r in rows] for k in ("r1_env_id", "r1_problem", "r1_seed")}
    assert f([r["prompt"] for r in rows], good, **kwargs) == pytest.approx([1.2] * 6)
    assert f([r["prompt"] for r in rows], wrong, **kwargs) == pytest.approx([0.2] * 6)
    chat = [[{"role": "assistant", "content": g}] for g in good]
    assert f(None, chat, **kwargs) == pytest.approx([1.2] * 6)
    accuracy = reward_function(ENV_ID, component="accuracy")
    assert accuracy(None, good[:1], **{k: v[:1] for k, v in kwargs.items()}) == [1.0]


def test_none_for_other_rows_and_metrics():
    rows = prompt_rows(ENV_ID, 2) + prompt_rows(OTHER_ID, 1)
    kwargs = {k: [r[k] for r in rows] for k in ("r1_env_id", "r1_problem")}
    logged = {}
    f = reward_function(ENV_ID)
    out = f(None, ["<answer>x</answer>"] * 3, log_metric=logged.__setitem__, **kwargs)
    assert out[2] is None and all(isinstance(v, float) for v in out[:2])
    assert logged == {f"{ENV_ID}/correct": 0.0}
    assert reward_function(OTHER_ID)(None, ["a"] * 3, **kwargs)[:2] == [None, None]
    assert f(None, ["a", "b"]) == [None, None]  # rows without r1 columns


def test_plain_prompts_and_bad_arguments():
    rows = prompt_rows(ENV_ID, 2, chat=False, output_format="r1")
    assert isinstance(rows[0]["prompt"], str) and "{question}" not in rows[0]["prompt"]
    with pytest.raises(ValueError, match="component"):
        reward_function(ENV_ID, component="nope")
    with pytest.raises(ValueError, match="n must be >= 1"):
        prompt_rows(ENV_ID, 0)


def test_completion_text():
    assert completion_text("abc") == "abc"
    msgs = [
        {"role": "assistant", "content": [{"type": "text", "text": "x"}]},
        {"role": "tool", "content": "y"},
    ]
    assert completion_text(msgs) == "x"


def test_grpo_trainer_two_steps(tmp_path, monkeypatch):
    pytest.importorskip("trl")
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("WANDB_DISABLED", "true")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from r1envs.integrations.trl import prompt_dataset

    tiny = pytest.importorskip("r1agent.tiny")
    texts = [f"{p['question']} <think> </think> <answer>{p['answer']}</answer>" for p in PROBLEMS]
    model_dir = tiny.build_tiny_model(
        tmp_path / "tiny", texts=texts, hidden=32, layers=1, heads=2, kv_heads=1, intermediate=64
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    dataset = prompt_dataset(ENV_ID, 8, seed=0)
    assert set(dataset.column_names) == {"prompt", "r1_env_id", "r1_problem", "r1_seed"}
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        learning_rate=1e-3,
        beta=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        bf16=False,
        fp16=False,
        use_cpu=True,
        gradient_checkpointing=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=[reward_function(ENV_ID), reward_function(ENV_ID, component="format")],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    trainer.train()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    assert len(logs) == 2
    assert f"{ENV_ID}/correct" in logs[-1] or any(f"{ENV_ID}/correct" in h for h in logs)
    assert all(h["reward"] == h["reward"] for h in logs)  # not NaN: every row was graded
    assert os.path.isdir(tmp_path / "out")


@pytest.mark.parametrize("env_id", ["r1/GSMStyle-v0", "r1/Math-v0"])
def test_math_envs_through_trl_columns(env_id):
    pytest.importorskip("r1envs.verifiers.math")
    rows = prompt_rows(env_id, 4, seed=0, output_format="r1")
    kwargs = {k: [r[k] for r in rows] for k in ("r1_env_id", "r1_problem")}
    golds = [json.loads(r["r1_problem"])["answer"] for r in rows]
    f = reward_function(env_id, output_format="r1")
    good = [f"<|begin_of_reasoning|>work<|end_of_reasoning|> So \\boxed{{{g}}}." for g in golds]
    assert f(None, good, **kwargs) == pytest.approx([1.2] * 4)
    assert f(
        None, ["<|begin_of_reasoning|>w<|end_of_reasoning|> \\boxed{-98765}"] * 4, **kwargs
    ) == (pytest.approx([0.2] * 4))
