"""Whatever a candidate does, it gets a verdict: fail, reward 0, ``error`` None. Script tests
(a judge process of their own) as well as assert and stdio tests."""

from __future__ import annotations

import time

import pytest

from r1envs.sandbox import LocalSandbox
from r1envs.verifiers.code import extract_code, run_tests

#: a HumanEval-style problem: a check with a loop and a helper of the prompt (run by the judge)
SCRIPT = {
    "question": "Return helper(x) doubled.",
    "test_style": "script",
    "entry_point": "f",
    "test_setup": "def helper(x):\n    return x + 1\n\n\ndef f(x):\n    '''helper(x) * 2'''\n",
    "tests": [
        "def check(candidate):\n    assert True\n    for i in range(4):\n"
        "        assert candidate(i) == helper(i) * 2\n    assert candidate(10) > 0\n\n"
        "check(f)\n",
        "assert isinstance(f(1), int) and f(1) == 4\n",
    ],
    "time_limit_s": 2.0,
    "memory_limit_mb": 256,
}
GOOD = "def helper(x):\n    return x + 1\n\ndef f(x):\n    return 2 * helper(x)\n"
ALWAYS_EQUAL = (
    "class A(int):\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
    "    def __gt__(self, o): return True\n    def __bool__(self): return True\n"
    "    __hash__ = int.__hash__\n"
)
SCRIPT_HACKS = {
    "wrong_value": "def f(x):\n    return 2 * x\n",
    "returns_none": "def f(x):\n    return None\n",
    "raises": "def f(x):\n    raise ValueError('no')\n",
    "sys_exit_0": "import sys\ndef f(x):\n    sys.exit(0)\n",
    "os_exit_0": "import os\ndef f(x):\n    os._exit(0)\n",
    "exit_while_loading": "import sys\nsys.exit(0)\n",
    "always_equal": ALWAYS_EQUAL + "def f(x):\n    return A(0)\n",
    "patched_builtins": "import builtins\nclass Quiet(Exception): pass\n"
    "builtins.AssertionError = Quiet\nbuiltins.isinstance = lambda *a: True\n"
    "isinstance = lambda *a: True\nprint = None\nAssertionError = Quiet\n"
    "def f(x):\n    return 0\n",
    "own_helper": "def helper(x):\n    return 0\ndef f(x):\n    return 0\n",
    "huge_value": "def f(x):\n    return '7' * (6 << 20)\n",
    "deep_value": "def f(x):\n    v = []\n    for _ in range(100000):\n        v = [v]\n    return v\n",
    "kills_everyone": "import os, signal\ndef f(x):\n    try:\n        os.kill(-1, signal.SIGKILL)\n"
    "    except OSError:\n        pass\n    return 2 * (x + 1)\n",
    "forges_on_its_socket": "import os, json, struct\n"
    "def f(x):\n    for v in ({'passed': True}, {'ok': 2 * (x + 1)}):\n"
    "        d = json.dumps(v).encode()\n        os.write(3, struct.pack('>I', len(d)) + d)\n"
    "    return 0\n",
    "hangs": "def f(x):\n    while True:\n        pass\n",
    "flood_stdout": "import sys\ndef f(x):\n    while True:\n        sys.stdout.write('x' * 65536)\n",
    "stop_self": "import os, signal\ndef f(x):\n    os.kill(os.getpid(), signal.SIGSTOP)\n",
}


@pytest.fixture(scope="module", params=["local", pytest.param("docker", marks=pytest.mark.docker)])
def sandbox(request):
    if request.param == "docker":
        from r1envs.sandbox.docker import DockerSandbox, docker_unavailable_reason

        reason = docker_unavailable_reason()
        if reason:
            pytest.skip(f"no usable Docker engine: {reason}")
        box = DockerSandbox(workers=2)
    else:
        box = LocalSandbox(workers=2)
    yield box
    box.close()


def test_the_good_solution_passes(sandbox):
    result = run_tests(GOOD, SCRIPT, sandbox)
    assert result.passed and result.error is None, result.feedback()


@pytest.mark.parametrize("name", sorted(SCRIPT_HACKS))
def test_script_hacks_fail_with_a_verdict(sandbox, name):
    start = time.monotonic()
    result = run_tests(SCRIPT_HACKS[name], SCRIPT, sandbox)
    assert result.error is None, result.error
    assert not result.passed and result.passed_tests == 0, result.feedback()
    assert time.monotonic() - start < 10
    assert run_tests(GOOD, SCRIPT, sandbox).passed  # the judge and the runner survived


def test_script_feedback_hides_the_expected_values(sandbox):
    result = run_tests(SCRIPT_HACKS["wrong_value"], SCRIPT, sandbox)
    shown = result.feedback(reveal_expected=True)
    assert "line 4: assert candidate(i) == helper(i) * 2" in shown and "f(0) returned 0" in shown
    hint = result.feedback(reveal_expected=False)
    assert "helper(i) * 2" not in hint and "f(0) returned 0" in hint


def test_a_script_that_never_calls_the_program_fails(sandbox):
    problem = {**SCRIPT, "tests": ["assert 1 + 1 == 2\n"]}
    result = run_tests(GOOD, problem, sandbox)
    assert not result.passed and "never called the program" in result.feedback()


def test_program_objects_are_handles_that_equal_nothing(sandbox):
    problem = {
        "question": "q",
        "test_style": "script",
        "tests": [
            "s = Solution()\nassert s.add(2, 3) == 5\nassert not (s == s) and not (s != s)\n"
            "b = Box([1, 2])\nassert len(b) == 2 and list(b) == [1, 2] and b[0] == 1 and 2 in b\n"
            "try:\n    bool(b)\nexcept TypeError:\n    pass\nelse:\n    raise AssertionError\n"
            "assert LIMIT == 10 and NAMES == ['a']\n"
        ],
    }
    code = (
        "LIMIT = 10\nNAMES = ['a']\nclass Solution:\n    def add(self, a, b):\n        return a + b\n"
        "class Box:\n    def __init__(self, xs): self.xs = xs\n    def __len__(self): return len(self.xs)\n"
        "    def __iter__(self): return iter(self.xs)\n    def __getitem__(self, i): return self.xs[i]\n"
        "    def __bool__(self): return True\n"
    )
    result = run_tests(code, problem, sandbox)
    assert result.passed, result.feedback()


def test_candidate_exceptions_keep_builtin_types_but_exits_are_not_catchable(sandbox):
    problem = {
        "question": "q",
        "test_style": "script",
        "entry_point": "f",
        "tests": ["try:\n    f(-1)\nexcept ValueError:\n    pass\nelse:\n    raise AssertionError\n"
                  "try:\n    f(0)\nexcept BaseException:\n    pass\n"],
    }  # fmt: skip
    ok = "import sys\ndef f(x):\n    if x < 0:\n        raise ValueError(x)\n    return x\n"
    assert run_tests(ok, problem, sandbox).passed
    exits = "import sys\ndef f(x):\n    if x < 0:\n        raise ValueError(x)\n    sys.exit(0)\n"
    result = run_tests(exits, problem, sandbox)  # caught by the script, still a failure
    assert not result.passed and "SystemExit" in result.feedback()


ASSERT_PROBLEM = {
    "question": "q",
    "test_style": "assert",
    "entry_point": "f",
    "tests": ["assert f(1) == 1000000", "assert f(2) == 0.5"],
}
STDIO_PROBLEM = {
    "question": "q",
    "test_style": "stdio",
    "tests": [{"input": "1\n", "output": "1000000\n"}],
    "time_limit_s": 1.0,
}


def test_integers_compare_exactly(sandbox):
    exact = "def f(x):\n    return 1000000 if x == 1 else 0.5000000001\n"
    assert run_tests(exact, ASSERT_PROBLEM, sandbox).passed  # floats keep their tolerance
    near = "def f(x):\n    return 1000001.0 if x == 1 else 0.5\n"
    result = run_tests(near, ASSERT_PROBLEM, sandbox)
    assert not result.passed and result.passed_tests == 1 and result.error is None
    assert not run_tests("print(1000001.0)\n", STDIO_PROBLEM, sandbox).passed
    assert run_tests("print(1000000)\n", STDIO_PROBLEM, sandbox).passed


def test_death_by_a_signal_after_the_right_output_fails(sandbox):
    abort = "import os, sys\nprint(1000000)\nsys.stdout.flush()\nos.abort()\n"
    result = run_tests(abort, STDIO_PROBLEM, sandbox)
    assert not result.passed and result.error is None and "signal" in result.feedback()
    kill = "import os, signal\nprint(1000000, flush=True)\nos.kill(os.getpid(), signal.SIGSEGV)\n"
    assert not run_tests(kill, STDIO_PROBLEM, sandbox).passed


@pytest.mark.parametrize(
    "code",
    [
        "import sys, json, struct\ndef f(x):\n    return [[]] * 400000\n",  # 1.6 MB frame
        "def f(x):\n    return [[]] * 200000\n",  # under the cap: parsed by the judge, wrong
    ],
)
def test_large_result_frames_are_verdicts(sandbox, code):
    result = run_tests(code, ASSERT_PROBLEM, sandbox)
    assert result.error is None and not result.passed


def test_a_child_keeping_stdout_open_does_not_stall_the_runner(sandbox):
    code = (
        "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(30)\n"
        "    os._exit(0)\nprint(1000000)\n"
    )
    start = time.monotonic()
    result = run_tests(code, STDIO_PROBLEM, sandbox)
    assert result.error is None and time.monotonic() - start < 5


def test_extract_code_is_linear_in_the_worst_case():
    for text in ("`" * 200_000, "```\n" * 50_000, "```x" * 50_000, "``` \n`" * 40_000):
        start = time.monotonic()
        extract_code(text)
        assert time.monotonic() - start < 0.5
    assert extract_code("a ```py\nx = 1\n``` b ```\ny = 2\n```") == "y = 2\n"
    assert extract_code("````\nz\n````") == "z\n"  # the rest of a fence line is its info


def test_output_that_would_swell_the_runners_reply_is_a_verdict(sandbox):
    # control characters take six bytes each in the JSON reply: 12 tests of 1 MiB of them
    # would be 72 MiB in the runner; past its budget a test fails instead
    problem = {
        "question": "q",
        "test_style": "stdio",
        "tests": [{"input": f"{i}\n", "output": "1\n"} for i in range(12)],
        "time_limit_s": 2.0,
    }
    code = "import sys\nsys.stdout.write('\\x01' * ((1 << 20) - 16))\n"
    result = run_tests(code, problem, sandbox)
    assert result.error is None and not result.passed
    assert any("output limit" in t.feedback for t in result.tests)
    assert run_tests("print(1)\n", problem, sandbox).passed
