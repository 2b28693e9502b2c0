"""Sets of reals (inequalities, set-builder, intervals, empty set), angle units, identities."""

from __future__ import annotations

import pytest

from r1envs.verifiers._math_angles import angle_unit, to_radians
from r1envs.verifiers._math_latex import parse_expr
from r1envs.verifiers._math_sets import real_set
from r1envs.verifiers.math import check, verify


def _boxed(answer: str) -> str:
    return f"Solving the inequality step by step, we get $\\boxed{{{answer}}}$."


SET_ACCEPT = [
    # (answer, gold)
    (r"x>1", r"(1,\infty)"),
    (r"(1,\infty)", r"x>1"),
    (r"1<x", r"(1,\infty)"),
    (r"\{x \mid x > 1\}", r"(1, \infty)"),
    (r"\{x : x \geq 2\}", r"[2, \infty)"),
    (r"\{x | x>1\}", r"(1,\infty)"),
    (r"\{x\in\mathbb{R} \mid -1 < x < 3\}", r"(-1,3)"),
    ("{x \u2208 \u211d \u2223 x > 0}", r"(0,\infty)"),
    (r"\{t \mid t > 1\}", r"x > 1"),
    (r"x \le -1 \text{ or } x \ge 1", r"(-\infty,-1]\cup[1,\infty)"),
    (r"|x| \ge 1", r"(-\infty,-1]\cup[1,\infty)"),
    (r"(-\infty,-1] \cup [1, \infty)", r"|x|\geq 1"),
    (r"|x - 1| < 2", r"(-1,3)"),
    (r"|x|>2", r"(-\infty,-2)\cup(2,\infty)"),
    (r"\{x \mid |x| > 1\}", r"(-\infty,-1)\cup(1,\infty)"),
    (r"(-\infty,-2)\cup(2,\infty)", r"x^2>4"),
    (r"[-2,2]", r"x^2 \le 4"),
    (r"\frac{1}{x} > 1", r"(0,1)"),
    (r"(-\infty, 3) \cup (3, \infty)", r"x \neq 3"),
    (r"\mathbb{R} \setminus \{3\}", r"(-\infty, 3) \cup (3, \infty)"),
    (r"x<0 \text{ or } x>0", r"\mathbb{R}\setminus\{0\}"),
    (r"\text{all real numbers}", r"x \in \mathbb{R}"),
    (r"x \geq 0.5", r"\left[\frac12, \infty\right)"),
    (r"3 \ge x > -1", r"(-1,3]"),
    (r"x > 1 \text{ and } x < 3", r"(1,3)"),
    (r"[1,2) \cup [2,3]", r"[1,3]"),
    (r"x = 3 \text{ or } x \ge 5", r"\{3\} \cup [5,\infty)"),
    (r"x \le -\sqrt{2} \text{ or } x \ge \sqrt{2}", r"(-\infty,-\sqrt2]\cup[\sqrt2,\infty)"),
    (r"\{2, 3\}", r"x = 2 \text{ or } x = 3"),
    (r"2a \geq 2", r"a \geq 1"),
    (r"0 < \sin x", r"\sin x > 0"),
    (r"x = i \text{ or } x = -i", r"x = -i \text{ or } x = i"),
    (r"x<0 \lor x>1", r"(-\infty,0)\cup(1,\infty)"),
]

SET_REJECT = [
    (r"[1,2)", r"[1,2]"),
    (r"(1,2)", r"[1,2]"),
    (r"x \ge 1", r"(1,\infty)"),
    (r"x>1", r"[1,\infty)"),
    (r"x>1", r"(2,\infty)"),
    (r"(1, \infty)", r"x<1"),
    (r"\{x \mid x > 1\}", r"[1,\infty)"),
    (r"\{x \mid x^2 > 1\}", r"(1,\infty)"),
    (r"|x| > 1", r"(-\infty,-1]\cup[1,\infty)"),
    (r"(-1,3)", r"|x-1|\le 2"),
    (r"x \le -1 \text{ and } x \ge 1", r"(-\infty,-1]\cup[1,\infty)"),
    (r"x \le -1 \text{ or } x \ge 1", r"[-1, 1]"),
    (r"x \ne 3", r"(-\infty,3)"),
    (r"y>1", r"x>1"),  # two inequalities about different variables
    (r"x > y", r"(1,\infty)"),  # two variables: not a set of reals
    (r"x>1", "1"),
    ("1", r"x>1"),
    (r"\{2, 3\}", r"x = 2 \text{ or } x = 4"),
    (r"\sin x > 0", r"(0, \pi)"),  # sympy solves it over one period only: not read as a set
    (r"(3,1)", r"\emptyset"),  # not an interval
    (r"x = i \text{ or } x = -i", r"x = 2i \text{ or } x = -2i"),  # no real points: not sets
    (r"\emptyset", r"f(2) < f(1) < f(4)"),  # values of a function, not a variable
    (r"|x|<1", r"x < 1"),
    (r"-x > -1", r"|x|<1"),
]

EMPTY_ACCEPT = [
    (r"\text{no solution}", r"\emptyset"),
    (r"\emptyset", r"\text{no solution}"),
    (r"\varnothing", r"\emptyset"),
    (r"\text{none}", r"\varnothing"),
    (r"\{\}", r"\emptyset"),
    ("\u2205", r"\emptyset"),
    (r"\text{There are no real solutions}", r"\varnothing"),
    (r"\text{no solutions}", r"\text{none}"),
]

EMPTY_REJECT = [
    (r"\emptyset", r"\{0\}"),
    (r"\text{no solution}", r"(1,2)"),
    (r"\emptyset", "0"),
    (r"\text{none}", "0"),
    (r"\text{no}", r"\emptyset"),
    ("0", r"\text{no solution}"),
]


@pytest.mark.parametrize(("answer", "gold"), SET_ACCEPT + EMPTY_ACCEPT)
def test_same_set_of_reals_is_accepted(answer: str, gold: str) -> None:
    r = check(_boxed(answer), gold)
    assert r.error is None
    assert r.correct, (answer, gold)


@pytest.mark.parametrize(("answer", "gold"), SET_REJECT + EMPTY_REJECT)
def test_different_set_is_rejected(answer: str, gold: str) -> None:
    r = check(_boxed(answer), gold)
    assert r.error is None
    assert not r.correct, (answer, gold)


@pytest.mark.parametrize(
    ("answer", "gold", "expected"),
    [
        (r"1 \text{ and } 2", r"\{1,2\}", True),  # two answers, not an intersection
        (r"\{1,2\}", r"\{2,1\}", True),
        (r"(1,2)", r"(1,2)", True),
        (r"(1,2)", r"(2,1)", False),
        (r"x=3 \text{ or } x=5", "3,5", True),
        (r"x^2-5x+6=0", r"(x-2)(x-3)=0", True),
        (r"(x-2)^2(x-3)=0", r"(x-2)(x-3)=0", False),  # same roots, different equation
        (r"y = 2x + 3", "2x+3", True),
        (r"(2,3)", r"x=2 \text{ or } x=3", True),  # a pair of values, as before
        (r"x(x-1) > 0", r"(-\infty,0)\cup(1,\infty)", True),
        # decimal bounds keep the rounding rules of plain numbers
        (r"x > 0.333333", r"(\frac13,\infty)", True),
        (r"x \geq 1.41421", r"[\sqrt2,\infty)", True),
        (r"x > 0.33", r"(\frac13,\infty)", False),
        (r"x \le 0.333333", r"(-\infty, \frac13)", False),
        (r"|x| < 1.5", r"x < 1.5", False),
    ],
)
def test_point_lists_and_equations_keep_their_meaning(answer: str, gold: str, expected: bool):
    assert verify(_boxed(answer), gold) is expected


def test_real_set_reading() -> None:
    assert real_set("(1, 2)") is not None and not real_set("(1, 2)").explicit  # maybe a point
    assert real_set(r"\{1, 2\}") is not None and not real_set(r"\{1, 2\}").explicit
    assert real_set(r"[1, 2)").explicit and real_set(r"(1, \infty)").explicit
    assert real_set("x > 1").var == "x"
    assert real_set(r"\{x \mid x > 1\}").var is None  # bound by the set-builder
    assert real_set(r"\{x \mid y > 1\}") is None
    assert real_set("x + y > 1") is None
    assert real_set("x^2 = 4") is None  # an equation to solve, not a stated value
    assert real_set("3") is None and real_set(r"\frac{1}{2}") is None
    assert real_set(r"x > 10^{10^{10^{10}}}") is None  # absurd sizes are refused
    assert real_set(r"\text{none}").desc == ("empty",)


def test_realsets_equal_in_process() -> None:
    from r1envs.verifiers._math_worker import realsets_equal

    open_right = ("interval", parse_expr("1"), parse_expr("2"), False, True)
    closed = ("interval", parse_expr("1"), parse_expr("2"), False, False)
    assert not realsets_equal(open_right, closed)
    split = ("union", [open_right, ("points", [parse_expr("2")])])
    assert realsets_equal(split, closed)
    with pytest.raises(ValueError):
        realsets_equal(("interval", parse_expr("2"), parse_expr("1"), True, True), closed)


ANGLE_ACCEPT = [
    (r"45^\circ", r"\frac{\pi}{4}"),
    (r"45^{\circ}", r"\pi/4"),
    ("45\u00b0", r"\frac{\pi}{4}"),
    (r"45 \text{ degrees}", r"\frac{\pi}{4}"),
    (r"90^\circ", r"\frac{\pi}{2}"),
    (r"\frac{\pi}{2} \text{ radians}", r"90^\circ"),
    (r"\frac{\pi}{4}\text{ rad}", r"45^\circ"),
    (r"\frac{\pi}{4}", r"\frac{\pi}{4}\text{ radians}"),
    (r"30^\circ", "30"),
    ("30", r"30^\circ"),
    (r"30^\circ, 150^\circ", r"\frac{\pi}{6}, \frac{5\pi}{6}"),
    (r"\theta = 45^\circ", r"\frac{\pi}{4}"),
    (r"90^\circ", r"\frac{\pi}{2}\text{ rad}"),
    (r"60^\circ", r"\arccos \frac{1}{2}"),
]

ANGLE_REJECT = [
    ("45", r"\frac{\pi}{4}"),  # a bare number is read in the gold's unit
    (r"\frac{\pi}{4}", "45"),
    (r"\frac{\pi}{6}", r"30^\circ"),  # the gold asks for degrees
    (r"\frac{\pi}{4}", r"45^\circ"),
    (r"60^\circ", r"\frac{\pi}{4}"),
    (r"\frac{\pi}{3} \text{ radians}", r"90^\circ"),
    (r"45^\circ", "45\\pi"),
    (r"30^\circ", "0.5"),  # a gold without pi need not be an angle (sin 30 = 0.5)
]


@pytest.mark.parametrize(("answer", "gold"), ANGLE_ACCEPT)
def test_angle_with_a_stated_unit_is_converted(answer: str, gold: str) -> None:
    assert verify(_boxed(answer), gold), (answer, gold)


@pytest.mark.parametrize(("answer", "gold"), ANGLE_REJECT)
def test_angle_unit_never_guessed(answer: str, gold: str) -> None:
    assert not verify(_boxed(answer), gold), (answer, gold)


def test_angle_unit_detection() -> None:
    assert angle_unit(r"45^\circ") == angle_unit(r"45^{\circ}") == angle_unit("45\u00b0") == "deg"
    assert angle_unit(r"45\text{ degrees}") == "deg"
    assert angle_unit(r"\frac{\pi}{2}\text{ radians}") == angle_unit(r"2\text{ rad}") == "rad"
    assert angle_unit(r"\frac{\pi}{4}") is None and angle_unit("45") is None
    assert angle_unit(r"\deg p = 4") is None  # the degree of a polynomial
    assert angle_unit(r"\arg z") is None
    assert to_radians(("text", "north")) is None


@pytest.mark.parametrize(
    ("answer", "gold", "expected"),
    [
        (r"\sin^2 x + \cos^2 x", "1", True),
        (r"\sin^2 x - \cos^2 x", "1", False),
        (r"2\sin x\cos x", r"\sin 2x", True),
        (r"\sin 2x", r"2\sin x", False),
        (r"\cos^2 x - \sin^2 x", r"\cos(2x)", True),
        (r"\frac{1-\cos 2x}{2}", r"\sin^2 x", True),
        (r"\tan x \cos x", r"\sin x", True),
        (r"\sec^2 \theta - \tan^2 \theta", "1", True),
        (r"\sqrt{x^2} - x + 1", "1", False),  # |x| - x + 1 is not 1 for x < 0
        ("x + 1", "1", False),
        ("x", "y", False),
    ],
)
def test_identities_proved_by_simplification(answer: str, gold: str, expected: bool) -> None:
    r = check(_boxed(answer), gold)
    assert r.error is None
    assert r.correct is expected


def test_function_argument_takes_juxtaposed_letters() -> None:
    assert parse_expr(r"\sin 2x") == ("func", "sin", ("mul", [("num", 2, "2"), ("sym", "x")]))
    assert parse_expr(r"\sin x \cos x")[0] == "mul"
    assert parse_expr(r"\sin(x) y")[0] == "mul"


@pytest.mark.parametrize(
    ("answer", "gold", "expected"),
    [
        (r"\sin 30^\circ", r"\frac12", True),
        ("\\cos 60\u00b0", r"\frac12", True),
        (r"\tan\left(45^{\circ}\right)", "1", True),
        (r"2\sin^2 45^\circ", "1", True),
        (r"\sin 30", r"\frac12", False),  # 30 radians
        (r"\sin 30^\circ", r"\frac{\sqrt3}{2}", False),
        (r"\sin 30^\circ", r"\frac{\pi}{6}", False),  # a value, not an angle to convert
    ],
)
def test_trigonometric_function_of_degrees(answer: str, gold: str, expected: bool) -> None:
    assert verify(_boxed(answer), gold) is expected
