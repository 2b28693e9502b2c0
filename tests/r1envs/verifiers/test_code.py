from __future__ import annotations

import pytest

from r1envs.sandbox import Sandbox, SandboxError
from r1envs.verifiers.code import (
    CodeProblem,
    build_request,
    compare_output,
    compile_assert,
    decode_value,
    extract_code,
    judge_assert,
    run_tests,
    strict_equal,
)

DOUBLE = {
    "question": "Double x.",
    "test_style": "assert",
    "entry_point": "f",
    "tests": ["assert f(3) == 987654", "assert f(0) == 0"],
}


@pytest.mark.parametrize(
    ("test", "exprs"),
    [
        ("assert f(3) == 9", ("f(3)",)),
        ("assert abs(f(2) - 1.5) < 1e-6", ("f(2)",)),
        ("assert Solution().g([1, 2]) == [2, 1]", ("Solution().g([1, 2])",)),
        ("assert f(f(1)) is None", ("f(f(1))",)),
        ("assert sorted(f('ba')) == ['a', 'b'], 'message'", ("f('ba')",)),
        ("assert math.isclose(f(2), 4.0)", ("f(2)",)),
        ("assert f(1) == g(1)", ("f(1)", "g(1)")),
        ("assert len([x for x in f(3) if x > 1]) == 2", ("f(3)",)),
    ],
)
def test_compile_assert_sends_only_the_solution_calls(test, exprs):
    assert compile_assert(test).exprs == exprs


@pytest.mark.parametrize(
    "test",
    [
        "f(3) == 9",
        "assert 1 == 1",
        "assert f(3) ==",
        "assert all(f(i) == i for i in range(3))",
        "assert f(1) == 1\nassert f(2) == 2",
    ],
)
def test_compile_assert_rejects_unsupported_tests(test):
    with pytest.raises(ValueError):
        compile_assert(test)


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        (1, 1, True),
        (True, 1, False),
        (1, True, False),
        (1, 1.0, True),
        (0.1 + 0.2, 0.3, True),
        (1.0, 1.001, False),
        ([1, 2], (1, 2), False),
        ({"a": 1.0}, {"a": 1}, True),
        ({1, 2}, {2, 1}, True),
        ("1", 1, False),
        (None, 0, False),
        ([[1], [2]], [[1], [2]], True),
    ],
)
def test_strict_equal(a, b, equal):
    assert strict_equal(a, b) is equal


def test_opaque_values_equal_nothing_and_have_no_truth_value():
    opaque = decode_value({"__t": "opaque", "type": "A"})
    assert not strict_equal(opaque, opaque)
    with pytest.raises(TypeError):
        bool(opaque)  # no truth value: `assert not f(x)` cannot pass with one
    assert decode_value({"__t": "tuple", "v": [1, {"__t": "float", "v": "2.5"}]}) == (1, 2.5)
    assert not strict_equal(decode_value({"__t": "float", "v": "nope"}), 1.0)


def test_judge_assert_uses_strict_comparison_on_returned_values():
    compiled = compile_assert("assert f(2) == 4")
    assert judge_assert(compiled, [{"ok": 4}])[0]
    assert not judge_assert(compiled, [{"ok": {"__t": "opaque", "type": "A"}}])[0]
    assert not judge_assert(compiled, [{"raised": "ValueError: x"}])[0]
    assert not judge_assert(compiled, [])[0]
    assert not judge_assert(compile_assert("assert f(2) != 4"), [{"ok": {"__t": "opaque"}}])[0]
    assert not judge_assert(compile_assert("assert f(2)"), [{"ok": {"__t": "opaque"}}])[0]
    assert judge_assert(compile_assert("assert 3 in f(2)"), [{"ok": [1, 3]}])[0]
    assert not judge_assert(compile_assert("assert 1 in f(2)"), [{"ok": [True]}])[0]


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        ("3\n", "3", True),
        ("1 2\n3\n", "1 2   \n3\n\n\n", True),
        ("0.333333\n", "0.3333331\n", True),
        ("1.5\n", "1.6\n", False),
        ("3\n10\n", "3\n", False),
        ("3\n", "3\n10\n", False),
        ("", "", True),
        ("a b\n", "a  b\n", True),
        ("YES\n", "yes\n", False),
        ("12345678901234567890\n", "12345678901234567891\n", False),
        ("1e3\n", "1000\n", True),
    ],
)
def test_compare_output(expected, actual, ok):
    assert (compare_output(expected, actual) is None) is ok


def test_extract_code_takes_the_last_fenced_block():
    text = "try this:\n```python\nx = 1\n```\nbetter:\n```py\nx = 2\n```\nthanks"
    assert extract_code(text) == "x = 2\n"
    assert extract_code("print(1)") == "print(1)"
    assert extract_code("```\nprint(3)\n```") == "print(3)\n"


def test_expected_values_never_reach_the_sandbox():
    request = build_request("x", CodeProblem.model_validate(DOUBLE))
    assert "987654" not in str(request)
    stdio = CodeProblem.model_validate(
        {"question": "q", "test_style": "stdio", "tests": [{"input": "1", "output": "424242"}]}
    )
    assert "424242" not in str(build_request("x", stdio))


def test_problems_without_tests_or_with_bad_tests_are_rejected():
    with pytest.raises(ValueError, match="tests"):
        run_tests("x", {**DOUBLE, "tests": []})
    with pytest.raises(ValueError, match="tests"):
        run_tests("x", {"question": "q", "test_style": "stdio", "tests": ["assert f(1) == 1"]})
    with pytest.raises(ValueError, match="tests"):
        run_tests("x", {**DOUBLE, "tests": ["print(1)"]})
    with pytest.raises(ValueError, match="test_style"):
        run_tests("x", {**DOUBLE, "test_style": "junit"})


class _BrokenSandbox(Sandbox):
    isolation = "broken"

    def execute(self, request):
        raise SandboxError("engine down")


def test_infrastructure_failure_is_an_error_not_a_fail():
    result = run_tests("def f(x):\n    return 2 * x\n", DOUBLE, _BrokenSandbox())
    assert not result.passed and result.error and "engine down" in result.error
    assert "could not be run" in result.feedback()


def test_run_tests_end_to_end_with_the_default_sandbox():
    problem = {**DOUBLE, "tests": ["assert f(3) == 6", "assert f(0) == 0", "assert f(-1) == -2"]}
    good = run_tests("```python\ndef f(x):\n    return 2 * x\n```", problem)
    assert good.error is None
    assert not good.passed  # the fence is not Python: run_tests takes code, not a completion
    good = run_tests("def f(x):\n    return 2 * x\n", problem)
    assert good.passed and good.passed_tests == 3 and good.pass_rate == 1.0
    half = run_tests("def f(x):\n    return x + 4 if x == 3 else 2 * x\n", problem)
    assert not half.passed and half.passed_tests == 2 and half.total_tests == 3
    assert "assert f(3) == 6" in half.feedback() and "got f(3) = 7" in half.feedback()
    hint = half.feedback(reveal_expected=False)
    assert "f(3) = 7 is wrong" in hint and "== 6" not in hint


def test_an_entry_point_named_like_a_builtin_is_the_solution():
    with pytest.raises(ValueError):
        compile_assert("assert sum([1, 2]) == 3")  # no solution call at all
    assert compile_assert("assert sum([1, 2]) == 3", "sum").exprs == ("sum([1, 2])",)
    problem = {
        "question": "q",
        "test_style": "assert",
        "entry_point": "sum",
        "tests": ["assert sum([1, 2]) == 3"],
    }
    assert not run_tests("def sum(xs):\n    return 0\n", problem).passed
    assert run_tests(
        "def sum(xs):\n    t = 0\n    for x in xs:\n        t += x\n    return t\n", problem
    ).passed


@pytest.mark.parametrize(
    "test",
    [
        "assert not f(4)",
        "assert f(4) or False",
        "assert -f(4) < 0",
        "assert f(4) is not None and not f(4)",
    ],
)
def test_opaque_values_fail_every_assert_shape(test):
    compiled = compile_assert(test)
    frames = [{"ok": {"__t": "opaque", "type": "A"}}] * len(compiled.exprs)
    assert not judge_assert(compiled, frames)[0]


def test_isinstance_in_tests_does_not_take_bool_for_int():
    compiled = compile_assert("assert isinstance(f(1), int)")
    assert judge_assert(compiled, [{"ok": 3}])[0]
    assert not judge_assert(compiled, [{"ok": True}])[0]
    assert judge_assert(compile_assert("assert isinstance(f(1), (int, bool))"), [{"ok": True}])[0]
