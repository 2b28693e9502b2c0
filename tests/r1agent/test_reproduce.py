"""``r1agent reproduce``: its envs, its mixed-language cold start, its report, end to end at
tiny budgets."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import gymnasium as gym
import pytest
from typer.testing import CliRunner

import r1envs  # noqa: F401
from r1agent.cli import app
from r1agent.data.bilingual import mixed_chain, mixed_examples
from r1agent.data.coldstart import solver_examples
from r1agent.data.rejection import sample_and_filter
from r1agent.eval.evaluate import evaluate
from r1agent.recipes.reproduce import (
    ENV_IDS,
    LANGUAGE_ENV_IDS,
    ReproduceConfig,
    map_in_processes,
    rotation,
    run_reproduce,
)
from r1agent.recipes.reproduce_report import checks
from r1agent.rollout.engine import Completion
from r1envs.core import ReasoningEnv
from r1envs.families.math import ArithmeticTask
from tests.r1agent.process_helpers import square

# --------------------------------------------------------------------------- envs


def test_chinese_arithmetic_env_asks_in_chinese_and_rewards_chinese_reasoning():
    env = gym.make("r1/ArithmeticEasyZh-v0")
    obs, info = env.reset(seed=3)
    assert info["question"].endswith("等于多少？") and "用户：" in obs and "<think>" in obs
    assert info["messages"][0]["content"].startswith("助手")
    answer = info["problem"]["answer"]
    zh = f"<think> 首先，{info['question'][:-5]} 先算前两个。所以结果是 {answer}。 </think> <answer> {answer} </answer>"
    rewards = env.step(zh)[4]["rewards"]
    assert rewards == {"accuracy": 1.0, "format": 1.0, "language": 1.0}
    env.reset(seed=3)
    en = f"<think> First add them. So the result is {answer}. </think> <answer> {answer} </answer>"
    assert env.step(en)[4]["rewards"]["language"] == 0.0


def test_easy_countdown_rung_is_small_and_solvable():
    env = gym.make("r1/CountdownEasy-v0")
    for seed in range(20):
        _, info = env.reset(seed=seed)
        p = info["problem"]
        assert len(p["numbers"]) == 3 and max(p["numbers"]) <= 5 and 2 <= p["target"] <= 20
    [example] = solver_examples(["r1/CountdownEasy-v0"], 1, output_format="r1-zero")
    assert "<answer>" in example.response


def test_bad_prompt_and_question_languages_are_named():
    with pytest.raises(ValueError, match="'fr'"):
        ReasoningEnv(ArithmeticTask(), prompt_language="fr")
    with pytest.raises(ValueError, match="'de'"):
        ArithmeticTask(question_language="de")
    with pytest.raises(ValueError, match="'fr'"):
        mixed_chain("What is 1 + 2?", "fr", random.Random(0))


def test_solver_reads_chinese_questions():
    [ex] = solver_examples(["r1/ArithmeticEasyZh-v0"], 1, output_format="r1-zero")
    assert "<answer>" in ex.response and "等于多少" in ex.prompt


# --------------------------------------------------------------------------- mixed cold start


def test_mixed_chain_keeps_or_switches_the_language():
    env = gym.make("r1/ArithmeticEasy-v0")
    _, info = env.reset(seed=0)
    rng = random.Random(0)
    same, answer = mixed_chain(info["question"], "en", rng, keep=1.0)
    other, _ = mixed_chain(info["question"], "en", rng, keep=0.0)
    assert answer == info["problem"]["answer"]
    fmt = "<think> {} </think> <answer> {} </answer>"
    env.reset(seed=0)
    assert env.step(fmt.format(" ".join(same), answer))[4]["rewards"]["language"] == 1.0
    env.reset(seed=0)
    assert env.step(fmt.format(" ".join(other), answer))[4]["rewards"]["language"] == 0.0


def test_mixed_examples_are_correct_and_mix_languages():
    examples = mixed_examples(ENV_IDS, 60, seed=5)
    assert len(examples) == 60
    envs = {e: gym.make(e) for e in ENV_IDS}
    scores = []
    for i, ex in enumerate(examples):
        env = envs[ENV_IDS[i % 3]]
        env.reset(seed=5 + i)
        info = env.step(ex.response)[4]
        assert info["correct"], ex.response
        if ENV_IDS[i % 3] in LANGUAGE_ENV_IDS:
            scores.append(info["rewards"]["language"])
    single = sum(s == 1.0 for s in scores) / len(scores)
    assert 0.0 < single < 0.4  # mostly mixed, as R1-Zero's chains were


# --------------------------------------------------------------------------- measurement


def _fixed_generate(texts):
    def gen(model, tokenizer, prompts, **kw):
        return [
            Completion([1], [1, 2], texts[i % len(texts)], None, False) for i in range(len(prompts))
        ]

    return gen


def test_evaluation_reports_the_single_language_share(tiny):
    from r1agent.infra.models import load_model

    model, tok = load_model(str(tiny))
    zh = "<think> 首先算。所以结果是 1。 </think> <answer> 1 </answer>"
    mixed = "<think> 首先算。So the result is 1. </think> <answer> 1 </answer>"
    report = evaluate(
        model, tok, ["r1/ArithmeticEasyZh-v0"], n=4, k=2, generate_fn=_fixed_generate([zh, mixed])
    )
    row = report.to_json()["envs"][0]
    assert row["single_language"] == pytest.approx(0.5)


def test_rejection_filter_judges_language_against_each_envs_target(tiny):
    from r1agent.infra.models import load_model

    model, tok = load_model(str(tiny))
    env = gym.make("r1/ArithmeticEasyZh-v0")
    _, info = env.reset(seed=0)
    answer = info["problem"]["answer"]
    text = f"<think> 首先算一下。所以结果是 {answer}。 </think> <answer> {answer} </answer>"
    kept, counts = sample_and_filter(
        model, tok, ["r1/ArithmeticEasyZh-v0"], n_prompts=1, samples=1,
        generate_fn=_fixed_generate([text]),
    )  # fmt: skip
    assert counts["kept"] == 1 and counts["unreadable"] == 0
    _, counts = sample_and_filter(
        model, tok, ["r1/ArithmeticEasyZh-v0"], n_prompts=1, samples=1, language="en",
        generate_fn=_fixed_generate([text]),
    )  # fmt: skip
    assert counts["unreadable"] == 1


def test_checks_compute_each_findings_deltas():
    row = {"pass@1": {"stage1": {"a": 0.2, "b": 0.5}, "stage2": {"a": 0.4, "b": 0.55}}}
    lang = {
        "with_reward": {"single_language_share": 0.7, "pass@1": 0.5},
        "without_reward": {"single_language_share": 0.1, "pass@1": 0.6},
    }
    zero = {
        "format_rate": {"base": 0.0, "r1_zero": 0.3},
        "pass@1": {"base": 0.02, "r1_zero": 0.1, "cold_start_rl": 0.6},
    }
    dist = {"distilled": {"pass@1": 0.4}, "rl": {"pass@1": 0.1}}
    c = checks(
        {
            "rl_after_cold_start": [row],
            "language": [lang],
            "r1_zero": [zero],
            "distillation": [dist],
        }
    )
    assert c["rl_min_gain"] == pytest.approx(0.05)
    assert c["language_share_gain"] == [pytest.approx(0.6)]
    assert c["language_accuracy_change"] == [pytest.approx(-0.1)]
    assert c["r1_zero_format_gain"] == [pytest.approx(0.3)]
    assert c["r1_zero_over_base"] == [pytest.approx(0.08)]
    assert c["distilled_minus_rl"] == [pytest.approx(0.3)]


# --------------------------------------------------------------------------- end to end


TINY = {
    "seeds": 1,
    "scale": 0.01,
    "eval_n": 6,
    "eval_k": 1,
    "cold_start_examples": 120,
    "quick_eval_n": 3,
    "prompts_per_step": 2,
    "group_size": 2,
    "distill_prompts": 300,
}


def test_reproduce_end_to_end_at_tiny_budgets_then_resumes(tmp_path):
    out = tmp_path / "r"
    summary = run_reproduce(ReproduceConfig(output_dir=str(out), **TINY))
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["env_ids"] == ENV_IDS and on_disk["prompt_format"] == "observation"
    assert on_disk["max_new_tokens"] == 96
    f = on_disk["findings"]
    assert set(f) == {"rl_after_cold_start", "r1_zero", "language", "distillation"}
    [rl] = f["rl_after_cold_start"]
    for stage in ("stage1", "stage2"):
        assert Path(rl[stage]).is_absolute() and (Path(rl[stage]) / "config.json").is_file()
        assert set(rl["pass@1"][stage]) == set(ENV_IDS)
    stage2 = Path(rl["stage2"])  # Countdown alone, then the arithmetic envs
    phases = json.loads((stage2 / "stage.json").read_text())["phases"]
    assert [p["mix"] for p in phases] == [{ENV_IDS[2]: 1.0}, {ENV_IDS[0]: 1.0, ENV_IDS[1]: 1.0}]
    rows = [json.loads(line) for line in (stage2 / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1))
    assert [r["phase"] for r in rows] == [1] * phases[0]["steps"] + [2] * phases[1]["steps"]
    [lang] = f["language"]
    for arm in ("with_reward", "without_reward"):
        assert 0.0 <= lang[arm]["single_language_share"] <= 1.0
        assert (Path(lang[arm]["checkpoint"]) / "config.json").is_file()
    with_kwargs = json.loads((Path(lang["with_reward"]["checkpoint"]) / "stage.json").read_text())
    assert with_kwargs["env_kwargs"][ENV_IDS[0]]["reward_weights"]["language"] > 0
    [zero] = f["r1_zero"]
    assert zero["curve"]["step"] and len(zero["curve"]["response_length"]) == len(
        zero["curve"]["step"]
    )
    [dist] = f["distillation"]
    assert 0.15 < dist["student_params"] / dist["teacher_params"] < 0.35
    assert dist["rl"]["steps"] >= 1
    report = (out / "report.md").read_text()
    for title in ("RL after the cold start", "R1-Zero", "Language consistency", "Distillation"):
        assert title in report
    assert (out / "r1_zero_curves.png").is_file() and (out / "rl_after_cold_start.png").is_file()
    assert summary["checks"] == on_disk["checks"]
    before = json.loads((out / "seed0" / "timings.json").read_text())
    run_reproduce(ReproduceConfig(output_dir=str(out), **TINY))  # every piece is skipped
    assert json.loads((out / "seed0" / "timings.json").read_text()) == before
    # finding 1 again under other trainer settings, from the run's own cold start
    bench = Path(__file__).parents[2] / "bench" / "reproduce_rl_variants.py"
    cmd = [sys.executable, str(bench), str(out), "--name", "v", "--set", "steps=3"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert all(f"v seed 0 {e}:" in done.stdout for e in ENV_IDS)
    variant = json.loads((out / "seed0" / "variants" / "v" / "stage2" / "stage.json").read_text())
    assert variant["steps"] == 3 and variant["start"] == str(out / "seed0" / "stage1")
    later = [*cmd[:4], "t", "--set", "steps=1", "--target", "0.0", "--min-pass-k", "0.0"]
    done = subprocess.run(later, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    variant = json.loads((out / "seed0" / "variants" / "t" / "stage2" / "stage.json").read_text())
    assert variant["start"] == str(out / "seed0" / "variants" / "t" / "stage1")
    cmd[4], cmd[-1] = "w", "bogus=1"
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "bogus" in bad.stderr


def test_cli_names_a_bad_budget(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "--output", str(tmp_path / "r"), "rl_steps=0"])
    assert result.exit_code != 0 and "rl_steps" in result.output
    result = CliRunner().invoke(app, ["reproduce", "--output", str(tmp_path / "r"), "nope=1"])
    assert result.exit_code != 0 and "nope" in result.output
    bad = ["reproduce", "--output", str(tmp_path / "r"), "rl_mix.r1/Nope-v0=1"]
    result = CliRunner().invoke(app, bad)
    assert result.exit_code != 0 and "r1/Nope-v0" in result.output


def test_rl_mix_changes_only_the_weights_it_names():
    mix = ReproduceConfig(output_dir="r", rl_mix={ENV_IDS[2]: 0.5}).rl_mix
    assert mix == {ENV_IDS[0]: 1.0, ENV_IDS[1]: 1.0, ENV_IDS[2]: 0.5}
    with pytest.raises(ValueError, match="-1"):
        ReproduceConfig(output_dir="r", rl_mix={ENV_IDS[0]: -1})
    with pytest.raises(ValueError, match="at least one"):
        ReproduceConfig(output_dir="r", rl_mix=dict.fromkeys(ENV_IDS, 0))


def test_rl_phases_split_the_steps_and_name_bad_shares():
    config = ReproduceConfig(output_dir="r")
    assert [share for share, _ in config.phases()] == pytest.approx([2 / 3, 1 / 3])
    single = ReproduceConfig(output_dir="r", rl_phases=None, rl_mix={ENV_IDS[1]: 0})
    assert single.phases() == [(1.0, {ENV_IDS[0]: 1.0, ENV_IDS[2]: 1.5})]
    with pytest.raises(ValueError, match=r"add up to 1, got \[0.5, 0.25\]"):
        ReproduceConfig(
            output_dir="r",
            rl_phases=[{"share": s, "mix": {ENV_IDS[0]: 1}} for s in (0.5, 0.25)],
        )
    with pytest.raises(ValueError, match="r1/Nope-v0"):
        ReproduceConfig(output_dir="r", rl_phases=[{"share": 1, "mix": {"r1/Nope-v0": 1}}])


def test_cold_start_mix_sets_how_often_each_env_comes_round():
    mix = ReproduceConfig(output_dir="r", cold_start_mix={ENV_IDS[0]: 3}).cold_start_mix
    assert mix == {ENV_IDS[0]: 3, ENV_IDS[1]: 2, ENV_IDS[2]: 1}
    assert rotation(mix) == [*ENV_IDS, ENV_IDS[0], ENV_IDS[1], ENV_IDS[0]]
    assert rotation({ENV_IDS[0]: 1, ENV_IDS[1]: 0, ENV_IDS[2]: 2}) == [ENV_IDS[0], *ENV_IDS[2:] * 2]
    with pytest.raises(ValueError, match="r1/Nope-v0"):
        ReproduceConfig(output_dir="r", cold_start_mix={"r1/Nope-v0": 1})
    with pytest.raises(ValueError, match="-2"):
        ReproduceConfig(output_dir="r", cold_start_mix={ENV_IDS[2]: -2})
    with pytest.raises(ValueError, match="at least one"):
        ReproduceConfig(output_dir="r", cold_start_mix=dict.fromkeys(ENV_IDS, 0))


def test_free_form_documents_answer_every_prompt_without_tags():
    from r1agent.data.bilingual import free_form_documents

    docs = free_form_documents(ENV_IDS, 12, seed=7)
    for i, doc in enumerate(docs):
        env = gym.make(ENV_IDS[i % 3])
        obs, _ = env.reset(seed=7 + i)
        assert doc.startswith(obs)
        info = env.step(doc[len(obs) :])[4]
        assert info["correct"] and info["rewards"]["format"] == 0.0
        assert not any(t in doc[len(obs) :] for t in ("<think>", "<answer>"))


def test_workers_run_in_processes_and_stop_with_the_parent(tmp_path):
    assert map_in_processes(square, [(2,), (3,), (4,)], 2) == [4, 9, 16]
    pid_files = [tmp_path / "w0", tmp_path / "w1"]
    script = (
        "from r1agent.recipes.reproduce import map_in_processes\n"
        "from tests.r1agent.process_helpers import write_pid_then_sleep\n"
        "if __name__ == '__main__':\n"
        f"    map_in_processes(write_pid_then_sleep, [({str(pid_files[0])!r}, 120), "
        f"({str(pid_files[1])!r}, 120)], 2)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2]
    )
    deadline = time.time() + 120
    while not all(f.is_file() and f.read_text() for f in pid_files):
        assert time.time() < deadline and parent.poll() is None, "workers did not start"
        time.sleep(0.2)
    workers = [int(f.read_text()) for f in pid_files]
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=60) != 0
    deadline = time.time() + 30
    while any(_alive(pid) for pid in workers):
        assert time.time() < deadline, f"workers {workers} still running after SIGTERM"
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")
