"""Mini Sudoku (``r1/MiniSudoku-v0``): fill a 4x4 or 6x6 grid.

Problem schema::

    {"size": 4, "grid": [[1, 0, 0, 4], [0, 4, 1, 0], [2, 0, 4, 0], [0, 3, 0, 1]]}

``size`` is 4 (boxes of 2x2) or 6 (boxes of 2 rows x 3 columns); ``grid`` is ``size`` rows of
``size`` digits, 0 for a blank. Validation rejects givens that repeat a digit in a row,
column or box, and grids with no solution.

Rules: every row, every column and every box holds each digit 1..size exactly once; the
given digits stay. The answer is the completed grid, one row per line (digits may be
separated by spaces, commas or ``|``; ``Row 1:`` prefixes are allowed; one line of
size*size digits works too; LaTeX matrices and arrays are read). The grader reads the last
run of grid lines of the final answer (``<answer>`` block, else the end of the text after
the reasoning; the last ``\\boxed{}`` in it if any) and checks it against the rules and the
givens, so any valid completion is correct.

Difficulty (task kwargs): ``size`` and ``num_blanks``. Generated puzzles start from a random
solved grid (a pattern shuffled by digit, row, column, band and stack permutations) and
blank cells in random order while the puzzle stays solvable by single-candidate steps, so
each has one solution.
"""

from __future__ import annotations

import random
import re

from pydantic import BaseModel, ConfigDict, model_validator

from r1envs.core import Grade
from r1envs.families.logic._common import LogicTaskBase, answer_region, render_solution

NAME = "mini_sudoku"
BOXES = {4: (2, 2), 6: (2, 3)}
DEFAULT_BLANKS = {4: 10, 6: 20}
_GRID_LINE = re.compile(r"[0-9\s|,;&\[\]().+\-_*]*")
_LATEX_ENV = re.compile(r"\\(?:begin|end)\{[a-z]*\*?\}(?:\{[lcr|]*\})?|\\hline|\$")
_ROW_PREFIX = re.compile(r"^\s*row\s*\d+\s*[:.)=-]?", re.IGNORECASE)
_SEPARATOR = re.compile(r"[\s|+\-=_*]*")

Grid = list[list[int]]


class SudokuProblem(BaseModel):
    """A mini Sudoku: ``size`` x ``size`` grid, 0 for blanks."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    size: int
    grid: Grid

    @model_validator(mode="after")
    def _consistent(self) -> SudokuProblem:
        n = self.size
        if n not in BOXES:
            raise ValueError(f"size must be one of {sorted(BOXES)}, size: {n}")
        if len(self.grid) != n or any(len(row) != n for row in self.grid):
            raise ValueError(f"grid must be {n} rows of {n} digits, grid: {self.grid!r:.80}")
        bad = [v for row in self.grid for v in row if not 0 <= v <= n]
        if bad:
            raise ValueError(f"grid digits must be in [0, {n}] (0 = blank), got {bad[:5]}")
        conflict = find_conflict(self.grid, n)
        if conflict:
            raise ValueError(f"grid: the givens break the rules: {conflict}")
        if backtrack(self.grid, n) is None:
            raise ValueError("grid: the puzzle has no solution")
        return self


# -- rules -----------------------------------------------------------------------------


def units(n: int) -> list[tuple[str, list[tuple[int, int]]]]:
    """Every row, column and box of an ``n`` x ``n`` grid as (name, cells)."""
    br, bc = BOXES[n]
    out = [(f"row {r + 1}", [(r, c) for c in range(n)]) for r in range(n)]
    out += [(f"column {c + 1}", [(r, c) for r in range(n)]) for c in range(n)]
    for b in range(n):
        r0, c0 = (b // (n // bc)) * br, (b % (n // bc)) * bc
        cells = [(r0 + i, c0 + j) for i in range(br) for j in range(bc)]
        out.append((f"box {b + 1}", cells))
    return out


def find_conflict(grid: Grid, n: int) -> str | None:
    """The first unit that repeats a digit, described, or ``None``."""
    for name, cells in units(n):
        seen = [grid[r][c] for r, c in cells if grid[r][c]]
        dupes = sorted({v for v in seen if seen.count(v) > 1})
        if dupes:
            return f"{name} repeats {dupes}"
    return None


def candidates(grid: Grid, n: int, r: int, c: int) -> set[int]:
    """Digits that can go at ``(r, c)`` given the filled cells."""
    br, bc = BOXES[n]
    r0, c0 = r - r % br, c - c % bc
    used = set(grid[r]) | {grid[i][c] for i in range(n)}
    used |= {grid[i][j] for i in range(r0, r0 + br) for j in range(c0, c0 + bc)}
    return set(range(1, n + 1)) - used


def backtrack(grid: Grid, n: int) -> Grid | None:
    """A completion of ``grid`` (fewest-candidates first), or ``None``."""
    g = [row[:] for row in grid]
    if find_conflict(g, n):
        return None

    def go() -> bool:
        best = None
        for r in range(n):
            for c in range(n):
                if not g[r][c]:
                    cand = candidates(g, n, r, c)
                    if best is None or len(cand) < len(best[2]):
                        best = (r, c, cand)
        if best is None:
            return True
        r, c, cand = best
        for v in sorted(cand):
            g[r][c] = v
            if go():
                return True
        g[r][c] = 0
        return False

    return g if go() else None


def _seen(grid: Grid, n: int, r: int, c: int) -> str:
    """``row has 1 4, column has 2, box has 1 3``: the digits around a cell."""
    br, bc = BOXES[n]
    r0, c0 = r - r % br, c - c % bc
    box = [grid[i][j] for i in range(r0, r0 + br) for j in range(c0, c0 + bc)]
    parts = [("row", grid[r]), ("column", [grid[i][c] for i in range(n)]), ("box", box)]
    return ", ".join(
        f"{name} has {' '.join(str(v) for v in sorted(set(vals) - {0})) or 'none'}"
        for name, vals in parts
    )


def single_step(grid: Grid, n: int) -> tuple[int, int, int, str] | None:
    """One forced cell ``(r, c, digit, reason)``: a cell with one candidate, or a digit with
    one place in a unit. ``None`` if there is none."""
    for r in range(n):
        for c in range(n):
            if not grid[r][c]:
                cand = candidates(grid, n, r, c)
                if len(cand) == 1:
                    v = cand.pop()
                    return r, c, v, f"{_seen(grid, n, r, c)}, so only {v} is left"
    for name, cells in units(n):
        present = {grid[r][c] for r, c in cells}
        for v in range(1, n + 1):
            if v in present:
                continue
            spots = [(r, c) for r, c in cells if not grid[r][c] and v in candidates(grid, n, r, c)]
            if len(spots) == 1:
                r, c = spots[0]
                return r, c, v, f"{v} can go nowhere else in {name}"
    return None


def solve_by_singles(grid: Grid, n: int) -> Grid | None:
    """The grid filled by forced steps alone, or ``None`` if they get stuck."""
    g = [row[:] for row in grid]
    while any(0 in row for row in g):
        step = single_step(g, n)
        if step is None:
            return None
        r, c, v, _ = step
        g[r][c] = v
    return g


def is_solution(answer: Grid, grid: Grid, n: int) -> bool:
    """Whether ``answer`` keeps the givens of ``grid`` and follows every rule."""
    if len(answer) != n or any(len(row) != n for row in answer):
        return False
    digits = set(range(1, n + 1))
    if any(grid[r][c] and grid[r][c] != answer[r][c] for r in range(n) for c in range(n)):
        return False
    return all({answer[r][c] for r, c in cells} == digits for _, cells in units(n))


def parse_grid(text: str, n: int) -> Grid | None:
    """The last run of grid lines of ``text`` as an ``n`` x ``n`` grid, or ``None``."""
    rows: list[str] = []
    text = _LATEX_ENV.sub("", text.replace("\\\\", "\n"))
    for line in reversed(text.splitlines()):
        line = _ROW_PREFIX.sub("", line)
        if _SEPARATOR.fullmatch(line):
            continue
        if not _GRID_LINE.fullmatch(line):
            break
        digits = re.sub(r"\D", "", line)
        if len(digits) % n:
            return None
        rows.append(digits)
    flat = "".join(reversed(rows))
    if len(flat) != n * n:
        return None
    return [[int(ch) for ch in flat[r * n : (r + 1) * n]] for r in range(n)]


def format_grid(grid: Grid, blank: str = "0") -> str:
    """Rows of space-separated digits."""
    return "\n".join(" ".join(str(v) if v else blank for v in row) for row in grid)


# -- generation ------------------------------------------------------------------------


def _solved_grid(rng: random.Random, n: int) -> Grid:
    br, bc = BOXES[n]
    base = [[(bc * (r % br) + r // br + c) % n + 1 for c in range(n)] for r in range(n)]
    digits = list(range(1, n + 1))
    rng.shuffle(digits)
    bands = rng.sample(range(n // br), n // br)
    rows = [b * br + r for b in bands for r in rng.sample(range(br), br)]
    stacks = rng.sample(range(n // bc), n // bc)
    cols = [s * bc + c for s in stacks for c in rng.sample(range(bc), bc)]
    grid = [[digits[base[r][c] - 1] for c in cols] for r in rows]
    if br == bc and rng.random() < 0.5:
        grid = [list(col) for col in zip(*grid, strict=True)]
    return grid


# -- task ------------------------------------------------------------------------------


class SudokuTask(LogicTaskBase[SudokuProblem]):
    """Mini Sudoku puzzles with adjustable difficulty.

    Args:
        size: 4 or 6.
        num_blanks: how many cells to blank (default 10 for 4x4, 20 for 6x6); fewer when no
            more can be blanked with the solution staying forced.
    """

    Problem = SudokuProblem

    def __init__(self, size: int = 4, num_blanks: int | None = None) -> None:
        if size not in BOXES:
            raise ValueError(f"size must be one of {sorted(BOXES)}, size: {size}")
        num_blanks = DEFAULT_BLANKS[size] if num_blanks is None else num_blanks
        if not 1 <= num_blanks <= size * size:
            raise ValueError(f"num_blanks must be in [1, {size * size}], num_blanks: {num_blanks}")
        self.size, self.num_blanks = size, num_blanks

    def sample(self, rng: random.Random) -> SudokuProblem:
        """A random solved grid with up to ``num_blanks`` cells blanked."""
        n = self.size
        grid = _solved_grid(rng, n)
        cells = [(r, c) for r in range(n) for c in range(n)]
        rng.shuffle(cells)
        blanks = 0
        for r, c in cells:
            if blanks >= self.num_blanks:
                break
            v, grid[r][c] = grid[r][c], 0
            if solve_by_singles(grid, n) is None:
                grid[r][c] = v
            else:
                blanks += 1
        return SudokuProblem.model_construct(size=n, grid=grid)

    def prompt(self, problem: SudokuProblem) -> str:
        """The rules, the grid (``.`` for blanks) and the answer format."""
        n = problem.size
        br, bc = BOXES[n]
        return (
            f"Solve this {n}x{n} Sudoku. Fill every blank (.) with a digit from 1 to {n} so that "
            f"each row, each column and each {br}x{bc} box contains every digit 1-{n} exactly "
            "once. Keep the given digits.\n\n"
            f"{format_grid(problem.grid, '.')}\n\n"
            f"Give your final answer as the completed grid: {n} lines, each with {n} digits "
            "separated by spaces."
        )

    def grade(
        self, completion: str, problem: SudokuProblem, answer_text: str | None = None
    ) -> Grade:
        """Correct iff the final grid keeps the givens and follows every rule."""
        text = answer_region(completion)
        if text is None:
            return Grade(correct=False, extracted_answer=None)
        answer = parse_grid(text, problem.size)
        if answer is None:
            return Grade(correct=False, extracted_answer=text)
        return Grade(
            correct=is_solution(answer, problem.grid, problem.size),
            extracted_answer=format_grid(answer),
        )

    def solution(self, problem: SudokuProblem, output_format: str = "r1-zero") -> str:
        """Forced steps cell by cell (a guess from a full solution when stuck), then a check.

        Raises:
            ValueError: if the puzzle has no solution.
        """
        n = problem.size
        g = [row[:] for row in problem.grid]
        steps = [f"Blanks to fill: {sum(row.count(0) for row in g)}."]
        while any(0 in row for row in g):
            step = single_step(g, n)
            if step is None:
                full = backtrack(g, n)
                if full is None:
                    raise ValueError("grid: the puzzle has no solution")
                r, c = min(
                    ((r, c) for r in range(n) for c in range(n) if not g[r][c]),
                    key=lambda rc: len(candidates(g, n, *rc)),
                )
                opts = ", ".join(map(str, sorted(candidates(g, n, r, c))))
                v = full[r][c]
                steps.append(f"r{r + 1}c{c + 1} can be {opts}; try {v}.")
            else:
                r, c, v, why = step
                steps.append(f"r{r + 1}c{c + 1} = {v}: {why}.")
            g[r][c] = v
        groups: dict[str, list[str]] = {"rows": [], "columns": [], "boxes": []}
        for name, cells in units(n):
            kind = {"row": "rows", "column": "columns", "box": "boxes"}[name.split()[0]]
            groups[kind].append("".join(str(g[r][c]) for r, c in cells))
        seen = "; ".join(f"{kind} {' '.join(vals)}" for kind, vals in groups.items())
        steps.append(f"Check: {seen}: each holds 1-{n} once, and the givens are kept.")
        return render_solution(steps, format_grid(g), output_format, lead="Completed grid:")
