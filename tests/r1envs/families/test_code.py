from __future__ import annotations

import json
import sys
from pathlib import Path

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import r1envs  # noqa: F401 - registers the ids
from r1envs.families.code import CodeTask, load_code_problems, normalize_record, shipped_files
from r1envs.sandbox import Sandbox, SandboxError

sys.path.insert(0, str(Path(__file__).parent / "data"))
from code_reference import PROBLEMS  # noqa: E402

ADD = {
    "question": "Add two numbers.",
    "test_style": "assert",
    "entry_point": "add",
    "tests": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"],
}
GOOD = "Here you go:\n```python\ndef add(a, b):\n    return a + b\n```"
BAD = "```python\ndef add(a, b):\n    return a + b if a > 0 else 99\n```"


def test_shipped_problems_cover_both_styles_and_match_the_reference_file(tmp_path):
    problems = [p for f in shipped_files() for p in load_code_problems(f)]
    assert len(problems) >= 30
    assert {p.test_style for p in problems} == {"assert", "stdio"}
    assert all(len(p.tests) >= 3 for p in problems)
    assert sorted(p.id for p in problems) == sorted(p["id"] for p in PROBLEMS)


def test_reference_solutions_pass_every_shipped_problem():
    from r1envs.verifiers.code import run_tests

    for record in PROBLEMS:
        problem = {k: v for k, v in record.items() if k != "solution"}
        result = run_tests(record["solution"], problem)
        assert result.passed, (record["id"], result.feedback())


def test_loaders_for_common_layouts(tmp_path):
    records = [
        {"problem": "sum", "inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]},
        {"question": "sum", "input_output": json.dumps({"inputs": ["1 1"], "outputs": ["2"]})},
        {
            "prompt": "def inc(x):\n    '''x + 1'''\n",
            "entry_point": "inc",
            "test": "METADATA = {}\n\ndef check(candidate):\n    assert candidate(1) == 2\n"
            "    assert candidate(-1) == 0\n",
        },
        {"text": "inc", "test_list": ["assert inc(1) == 2"], "code": "def inc(x): return x + 1"},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records))
    problems = load_code_problems(path)
    assert [p.test_style for p in problems] == ["stdio", "stdio", "script", "assert"]
    assert problems[0].tests[1].output == "7\n"
    # a HumanEval-style check script runs as written, the prompt as the judge's setup
    assert problems[2].tests == [records[2]["test"] + "\n\ncheck(inc)\n"]
    assert problems[2].test_setup == records[2]["prompt"] and problems[2].entry_point == "inc"
    assert problems[3].metadata["code"].startswith("def inc")
    assert normalize_record(ADD) == ADD


def test_loader_errors_name_the_record(tmp_path):
    bad = [ADD, {"question": "q", "inputs": ["1"], "outputs": []}]
    with pytest.raises(ValueError, match="record 1"):
        load_code_problems(bad)
    assert len(load_code_problems(bad, skip_invalid=True)) == 1
    broken = {"prompt": "p", "entry_point": "f", "test": "def check(c):\n    assert c(\n"}
    with pytest.raises(ValueError, match=r"record 0: test is not valid Python"):
        load_code_problems([broken])
    with pytest.raises(ValueError, match="no known code layout.*'answer'"):
        load_code_problems([{"question": "q", "answer": "1"}])
    with pytest.raises(ValueError, match="layout must be one of"):
        load_code_problems([ADD], layout="leetcode")


def test_env_grades_code_and_reports_the_pass_rate():
    env = gym.make("r1/Code-v0", problems=[ADD])
    env.reset(seed=0)
    _, reward, terminated, truncated, info = env.step(
        f"<think>easy</think> <answer>{GOOD}</answer>"
    )
    assert (
        info["correct"]
        and info["rewards"]["accuracy"] == 1.0
        and info["rewards"]["pass_rate"] == 1.0
    )
    assert terminated and not truncated and info["error"] is None
    assert info["extracted_answer"].startswith("def add")
    env.reset(seed=0)
    _, reward, _, _, info = env.step(BAD)
    assert not info["correct"] and info["rewards"]["accuracy"] == 0.0
    assert info["rewards"]["pass_rate"] == 0.5
    env.close()


def test_same_seed_same_problem_and_pinned_problems():
    env = gym.make("r1/Code-v0")
    assert env.reset(seed=5)[0] == env.reset(seed=5)[0]
    obs, _ = env.reset(options={"problem": ADD})
    assert "Add two numbers." in obs and "`add`" in obs
    with pytest.raises(ValueError, match="tests"):
        env.reset(options={"problem": {**ADD, "tests": []}})


def test_multi_turn_returns_failing_tests_as_feedback():
    env = gym.make("r1/Code-v0", problems=[ADD], max_turns=3)
    env.reset(seed=1)
    obs, reward, terminated, _, info = env.step(BAD)
    assert not terminated and "add(-1, 1) = 99 is wrong" in obs and info["turn"] == 1
    assert "== 0" not in obs  # the hidden expected value is not revealed by default
    obs, reward, terminated, _, info = env.step(GOOD)
    assert terminated and info["correct"] and obs == ""
    env = gym.make("r1/Code-v0", problems=[ADD], max_turns=2, reveal_expected=True)
    env.reset(seed=1)
    obs, *_ = env.step(BAD)
    assert "assert add(-1, 1) == 0: got add(-1, 1) = 99" in obs


class _Down(Sandbox):
    def execute(self, request):
        raise SandboxError("engine unreachable")


def test_sandbox_failure_is_info_error():
    env = gym.make("r1/Code-v0", problems=[ADD], sandbox=_Down())
    env.reset(seed=0)
    _, reward, terminated, _, info = env.step(GOOD)
    assert info["error"] and "engine unreachable" in info["error"] and terminated
    with pytest.raises(ValueError, match="sandbox"):
        gym.make("r1/Code-v0", sandbox="cloud")


def test_check_env_passes():
    env = gym.make("r1/Code-v0")
    check_env(env.unwrapped)


def test_async_vector_env_workers_can_run_the_sandbox():
    envs = gym.vector.AsyncVectorEnv([lambda: gym.make("r1/Code-v0", problems=[ADD])] * 2)
    try:
        envs.reset(seed=0)
        _, rewards, _, _, infos = envs.step([GOOD, BAD])
        assert list(infos["correct"]) == [True, False]
        assert rewards[0] > rewards[1]
    finally:
        envs.close()


def test_code_task_rejects_an_empty_selection():
    with pytest.raises(ValueError, match="no code problems"):
        CodeTask(problems=[ADD], test_style="stdio")
