"""Mini Sudoku: grids checked against the rules and the givens."""

from __future__ import annotations

import random

import gymnasium as gym
import pytest

import r1envs  # noqa: F401  (registers the ids)
from r1envs.families.logic.sudoku import SudokuTask, parse_grid, solve_by_singles

SOLVED = [[1, 2, 3, 4], [3, 4, 1, 2], [2, 1, 4, 3], [4, 3, 2, 1]]
PUZZLE = {"size": 4, "grid": [[1, 0, 0, 4], [0, 4, 1, 0], [2, 0, 0, 3], [0, 3, 2, 0]]}
ROWS = "\n".join(" ".join(map(str, row)) for row in SOLVED)


def _correct(problem, answer):
    env = gym.make("r1/MiniSudoku-v0")
    env.reset(options={"problem": problem})
    return env.step(f"<think>x</think>\n<answer>\n{answer}\n</answer>")[4]["correct"]


@pytest.mark.parametrize(
    "answer",
    [
        ROWS,
        "Completed grid:\n" + ROWS,
        "1234\n3412\n2143\n4321",
        "1 2 3 4 3 4 1 2 2 1 4 3 4 3 2 1",
        "| 1 2 | 3 4 |\n| 3 4 | 1 2 |\n+-----+-----+\n| 2 1 | 4 3 |\n| 4 3 | 2 1 |",
        "Row 1: 1 2 3 4\nRow 2: 3 4 1 2\nRow 3: 2 1 4 3\nRow 4: 4 3 2 1",
        "[[1,2,3,4],[3,4,1,2],[2,1,4,3],[4,3,2,1]]",
        "\\boxed{\\begin{bmatrix} 1 & 2 & 3 & 4 \\\\ 3 & 4 & 1 & 2 \\\\ 2 & 1 & 4 & 3 \\\\ "
        "4 & 3 & 2 & 1 \\end{bmatrix}}",
        "$\\begin{array}{cc|cc} 1 & 2 & 3 & 4 \\\\ 3 & 4 & 1 & 2 \\\\ \\hline 2 & 1 & 4 & 3 "
        "\\\\ 4 & 3 & 2 & 1 \\end{array}$",
    ],
)
def test_valid_grids_in_several_layouts(answer):
    assert _correct(PUZZLE, answer) is True


def test_boxed_and_plain_summary_answers():
    env = gym.make("r1/MiniSudoku-v0", output_format="r1")
    env.reset(options={"problem": PUZZLE})
    start, end = r1envs.formats.REASONING_START, r1envs.formats.REASONING_END
    assert env.step(f"{start} work {end}\nThe grid:\n{ROWS}\n")[4]["correct"] is True
    env.reset(options={"problem": PUZZLE})
    boxed = "\\boxed{" + " \\\\ ".join(" ".join(map(str, r)) for r in SOLVED) + "}"
    assert env.step(f"{start} work {end} {boxed}")[4]["correct"] is True


@pytest.mark.parametrize(
    "answer",
    [
        "\n".join(ROWS.splitlines()[:3]),  # a row missing
        ROWS.replace("4 3 2 1", "4 3 1 2"),  # column and box broken
        "2 1 4 3\n4 3 2 1\n1 2 3 4\n3 4 1 2",  # valid Sudoku, givens changed
        ROWS + "\n1 2 3 4",  # extra row
        ROWS + "\nThat is all.",  # the grid is not the end of the answer
        "1 2 3 4 5\n" + ROWS,
        "",
    ],
)
def test_invalid_grids_are_rejected(answer):
    assert _correct(PUZZLE, answer) is False


def test_any_valid_completion_of_an_open_puzzle_is_accepted():
    empty = {"size": 4, "grid": [[0] * 4 for _ in range(4)]}
    other = "2 1 4 3\n4 3 2 1\n1 2 3 4\n3 4 1 2"
    assert _correct(empty, ROWS) is True and _correct(empty, other) is True


def test_generated_puzzles_follow_the_kwargs_and_are_forced():
    for size, blanks in ((4, 6), (4, 12), (6, 20)):
        task = SudokuTask(size=size, num_blanks=blanks)
        for seed in range(5):
            p = task.sample(random.Random(seed))
            assert len(p.grid) == size and all(len(r) == size for r in p.grid)
            assert sum(r.count(0) for r in p.grid) <= blanks
            assert solve_by_singles(p.grid, size) is not None
    few = SudokuTask(num_blanks=4).sample(random.Random(0))
    assert sum(r.count(0) for r in few.grid) == 4
    env = gym.make("r1/MiniSudoku-v0", size=6)
    _, info = env.reset(seed=0)
    assert len(info["problem"]["grid"]) == 6


def test_parse_grid_takes_the_last_run():
    assert parse_grid("draft:\n1 1 1 1\nfinal:\n" + ROWS, 4) == SOLVED
    assert parse_grid(ROWS + "\n\n", 4) == SOLVED
    assert parse_grid("1 2 3\n" * 4, 4) is None


@pytest.mark.parametrize(
    "problem, field",
    [
        ({"size": 5, "grid": [[0] * 5] * 5}, "size"),
        ({"size": 4, "grid": [[0] * 4] * 3}, "grid"),
        ({"size": 4, "grid": [[1, 1, 0, 0]] + [[0] * 4] * 3}, "row 1 repeats"),
        ({"size": 4, "grid": [[1, 0, 0, 0], [0, 1, 0, 0]] + [[0] * 4] * 2}, "box 1 repeats"),
        ({"size": 4, "grid": [[5, 0, 0, 0]] + [[0] * 4] * 3}, "grid"),
        # r1c3 has no candidate (row has 1 2, column has 3 4) although nothing repeats
        ({"size": 4, "grid": [[1, 2, 0, 0], [0, 0, 3, 0], [0, 0, 4, 0], [0] * 4]}, "no solution"),
        ({"size": 4}, "grid"),
        ({**PUZZLE, "solution": SOLVED}, "solution"),
    ],
)
def test_malformed_problems_name_the_field(problem, field):
    env = gym.make("r1/MiniSudoku-v0")
    with pytest.raises(ValueError, match=field):
        env.reset(options={"problem": problem})


def test_solution_handles_puzzles_that_need_a_guess():
    task = SudokuTask()
    problem = task.validate({"size": 4, "grid": [[0] * 4 for _ in range(4)]})
    text = task.solution(problem)
    assert "try" in text and task.grade(text, problem).correct


def test_bad_kwargs_raise():
    with pytest.raises(ValueError, match="size"):
        SudokuTask(size=9)
    with pytest.raises(ValueError, match="num_blanks"):
        SudokuTask(num_blanks=0)
