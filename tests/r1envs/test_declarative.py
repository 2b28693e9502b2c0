from __future__ import annotations

import json
import time

import gymnasium as gym
import pytest

import r1envs
from r1envs.declarative import (
    DeclarativeFactory,
    ExactTask,
    load_spec,
    normalize_text,
    register_declarative,
    shipped_specs,
)
from r1envs.registry import _TASKS, unregister_task


@pytest.fixture
def cleanup():
    ids: list[str] = []
    yield ids
    for env_id in ids:
        unregister_task(env_id)


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_ids_registered_lazily():
    ids = r1envs.list_envs()
    assert {"r1/GSMStyle-v0", "r1/MATHStyle-v0"} <= set(ids)
    assert len(shipped_specs()) >= 2
    for path in shipped_specs():
        factory = _TASKS[load_spec(path).id][0]
        assert isinstance(factory, DeclarativeFactory)


@pytest.mark.parametrize(("env_id", "n"), [("r1/GSMStyle-v0", 30), ("r1/MATHStyle-v0", 30)])
def test_shipped_sets(env_id, n):
    env = gym.make(env_id)
    task = env.unwrapped.task
    assert len(task) >= n
    prompt, info = env.reset(seed=3)
    assert info["question"] in prompt
    assert "####" not in info["problem"]["answer"] and "boxed" not in info["problem"]["answer"]
    env.close()


def test_math_style_grades_its_gold():
    env = gym.make("r1/MATHStyle-v0")
    _, info = env.reset(options={"problem": {"question": "What is 1/2 + 1/3?", "answer": "5/6"}})
    pytest.importorskip("r1envs.verifiers.math")
    _, reward, terminated, _, info = env.step("<think>add</think> <answer>\\frac{5}{6}</answer>")
    assert info["correct"] is True and terminated


def test_user_yaml_exact_verifier(tmp_path, cleanup):
    write(
        tmp_path / "capitals.jsonl",
        json.dumps({"q": "Capital of France?", "a": "Paris"})
        + "\n"
        + json.dumps({"q": "Capital of Japan?", "a": "Tokyo", "aliases": ["Tōkyō"]})
        + "\n",
    )
    spec = write(
        tmp_path / "caps.yaml",
        "id: test/Capitals-v0\n"
        "data: capitals.jsonl\n"
        "fields: {question: q, answer: a}\n"
        "transforms: {answer: strip}\n"
        "verifier: exact\n"
        "kwargs: {output_format: r1-zero, reward_weights: {format: 0.5}}\n",
    )
    env_id = register_declarative(spec)
    cleanup.append(env_id)
    assert env_id == "test/Capitals-v0" and env_id in r1envs.list_envs()
    env = gym.make(env_id)
    assert isinstance(env.unwrapped.task, ExactTask)
    _, info = env.reset(options={"problem": {"question": "Capital of France?", "answer": "Paris"}})
    _, reward, *_, info = env.step("<think>hmm</think> <answer> paris. </answer>")
    assert info["correct"] is True and reward == pytest.approx(1.5)
    _, reward, *_, info = env.step("<think>hmm</think> <answer>Lyon</answer>")
    assert info["correct"] is False and reward == pytest.approx(0.5)
    _, info = env.reset(
        options={"problem": {"question": "Japan?", "answer": "Tokyo", "aliases": ["Tōkyō"]}}
    )
    assert env.step("The capital is\nTōkyō")[4]["correct"] is True
    with pytest.raises(ValueError, match="already registered"):
        register_declarative(spec)
    assert register_declarative(spec, override=True) == env_id


def test_data_loaded_on_first_make_only(tmp_path, cleanup):
    data = write(tmp_path / "d.jsonl", json.dumps({"question": "2+2?", "answer": "4"}) + "\n")
    spec = write(tmp_path / "lazy.yaml", f"id: test/Lazy-v0\ndata: {data}\nverifier: exact\n")
    cleanup.append(register_declarative(spec))
    data.write_text("{broken\n", encoding="utf-8")  # not read at registration
    with pytest.raises(ValueError, match=r"d\.jsonl:1: invalid JSON"):
        gym.make("test/Lazy-v0")


def test_loaded_once_and_cached(tmp_path, cleanup):
    data = write(tmp_path / "d.jsonl", json.dumps({"question": "2+2?", "answer": "4"}) + "\n")
    spec = write(tmp_path / "c.yaml", f"id: test/Cached-v0\ndata: {data}\nverifier: exact\n")
    cleanup.append(register_declarative(spec))
    gym.make("test/Cached-v0")
    data.unlink()
    t = time.perf_counter()
    env = gym.make("test/Cached-v0")
    assert time.perf_counter() - t < 5.0 and len(env.unwrapped.task) == 1


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("id: bad id\ndata: x.jsonl\n", "id: .*namespace/Name-vN"),
        ("id: t/A-v0\n", "data: Field required"),
        ("id: t/A-v0\ndata: x.jsonl\nverifier: magic\n", "verifier: .*'magic'"),
        ("id: t/A-v0\ndata: x.jsonl\ntransforms: {answer: nope}\n", "transforms: .*'nope'"),
        ("id: t/A-v0\ndata: x.jsonl\ncolour: red\n", "colour: Extra inputs"),
        ("id: t/A-v0\ndata: x.jsonl\nlimit: 0\n", "limit: "),
        ("- just\n- a list\n", "expected a mapping"),
        ("id: [unclosed\n", "invalid YAML"),
    ],
)
def test_spec_errors_name_file_and_field(tmp_path, text, match):
    path = write(tmp_path / "broken.yaml", text)
    with pytest.raises(ValueError, match=match) as err:
        load_spec(path)
    assert "broken.yaml" in str(err.value)


def test_unimportable_verifier_named_on_make(tmp_path, cleanup):
    write(tmp_path / "d.jsonl", json.dumps({"question": "q", "answer": "a"}) + "\n")
    spec = write(
        tmp_path / "v.yaml", "id: test/NoVerifier-v0\ndata: d.jsonl\nverifier: nopkg.mod:Task\n"
    )
    cleanup.append(register_declarative(spec))
    with pytest.raises(ValueError, match=r"v\.yaml: verifier 'nopkg.mod:Task' cannot be imported"):
        gym.make("test/NoVerifier-v0")


def test_custom_verifier_class_and_limit(tmp_path, cleanup):
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(5)]
    write(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    spec = write(
        tmp_path / "custom.yaml",
        "id: test/Custom-v0\ndata: d.jsonl\nverifier: r1envs.declarative:ExactTask\nlimit: 3\n",
    )
    cleanup.append(register_declarative(spec))
    assert len(gym.make("test/Custom-v0").unwrapped.task) == 3


def test_normalize_text():
    assert normalize_text("  The   Answer.\n") == "the answer"
    assert normalize_text('"Yes"') == "yes"


def test_code_verifier_from_yaml(tmp_path, cleanup):
    pytest.importorskip("r1envs.families.code")
    row = {
        "prompt": "Write add(a, b) returning the sum.",
        "checks": ["assert add(2, 3) == 5", "assert add(-1, 1) == 0"],
        "test_style": "assert",
        "entry_point": "add",
    }
    write(tmp_path / "add.jsonl", json.dumps(row) + "\n")
    spec = write(
        tmp_path / "add.yaml",
        "id: test/AddCode-v0\ndata: add.jsonl\nfields: {question: prompt, tests: checks}\nverifier: code\n",
    )
    cleanup.append(register_declarative(spec))
    env = gym.make("test/AddCode-v0")
    env.reset(seed=0)
    good = "<think>easy</think> <answer>```python\ndef add(a, b):\n    return a + b\n```</answer>"
    _, _, _, _, info = env.step(good)
    assert info["error"] is None and info["correct"] is True
    env.close()
