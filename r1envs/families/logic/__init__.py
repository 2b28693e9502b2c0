"""Logic puzzles verified against their rules (``r1/Logic-v0`` mixes them).

Families, one module each (problem schema, difficulty kwargs and answer format in the
module docstring):

* :mod:`~r1envs.families.logic.countdown` — ``r1/Countdown-v0``
* :mod:`~r1envs.families.logic.knights_knaves` — ``r1/KnightsKnaves-v0``
* :mod:`~r1envs.families.logic.sudoku` — ``r1/MiniSudoku-v0``
* :mod:`~r1envs.families.logic.graph_coloring` — ``r1/GraphColoring-v0``

Every family accepts any answer that satisfies the rules (not one stored solution) and has
``solution(problem, output_format)``, a worked completion with a final check, used for
cold-start data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from r1envs.core import MixProblem, MixTask
from r1envs.families.logic import countdown, graph_coloring, knights_knaves, sudoku
from r1envs.families.logic.countdown import CountdownTask
from r1envs.families.logic.graph_coloring import GraphColoringTask
from r1envs.families.logic.knights_knaves import KnightsKnavesTask
from r1envs.families.logic.sudoku import SudokuTask

FAMILIES: dict[str, type] = {
    countdown.NAME: CountdownTask,
    knights_knaves.NAME: KnightsKnavesTask,
    sudoku.NAME: SudokuTask,
    graph_coloring.NAME: GraphColoringTask,
}

#: Family kwargs per difficulty level of :class:`LogicTask` (``"medium"`` = the defaults).
DIFFICULTY: dict[str, dict[str, dict[str, Any]]] = {
    "easy": {
        countdown.NAME: {"num_numbers": 3, "max_value": 10, "min_target": 5, "max_target": 50},
        knights_knaves.NAME: {"num_people": 2, "depth": 1},
        sudoku.NAME: {"size": 4, "num_blanks": 6},
        graph_coloring.NAME: {"num_nodes": 4, "edge_prob": 0.5, "num_colors": 3},
    },
    "medium": {name: {} for name in FAMILIES},
    "hard": {
        countdown.NAME: {"num_numbers": 5, "max_value": 50, "min_target": 100, "max_target": 999},
        knights_knaves.NAME: {"num_people": 5, "depth": 2},
        sudoku.NAME: {"size": 6, "num_blanks": 22},
        graph_coloring.NAME: {"num_nodes": 10, "edge_prob": 0.6, "num_colors": 3},
    },
}

__all__ = [
    "DIFFICULTY",
    "FAMILIES",
    "CountdownTask",
    "GraphColoringTask",
    "KnightsKnavesTask",
    "LogicTask",
    "SudokuTask",
]


class LogicTask(MixTask):
    """The logic families mixed by weight (``r1/Logic-v0``).

    Args:
        weights: weight per family name (``countdown``, ``knights_knaves``, ``mini_sudoku``,
            ``graph_coloring``); equal by default, 0 leaves a family out.
        families: kwargs per family, e.g. ``{"countdown": {"num_numbers": 5}}``; a family
            given here takes these kwargs instead of its difficulty preset.
        difficulty: a preset of family kwargs, ``"easy"``, ``"medium"`` (the families'
            defaults) or ``"hard"`` (see :data:`DIFFICULTY`).
    """

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        families: Mapping[str, Mapping[str, Any]] | None = None,
        difficulty: str = "medium",
    ) -> None:
        if difficulty not in DIFFICULTY:
            raise ValueError(
                f"difficulty must be one of {sorted(DIFFICULTY)}, difficulty: {difficulty!r}"
            )
        families = dict(families or {})
        unknown = set(families) - set(FAMILIES)
        if unknown:
            raise ValueError(
                f"families names unknown families: {sorted(unknown)}; known: {sorted(FAMILIES)}"
            )
        preset = DIFFICULTY[difficulty]
        tasks = {
            name: cls(**dict(families.get(name, preset[name]))) for name, cls in FAMILIES.items()
        }
        super().__init__(tasks, weights)

    def validate(self, data: Mapping[str, Any] | BaseModel) -> MixProblem:
        """Validate a dict as a problem of its ``family`` (or of the first family that fits).

        Raises:
            ValueError: naming the bad field.
        """
        if isinstance(data, Mapping) and not isinstance(data.get("family", ""), str):
            raise ValueError(f"family must be a string, family: {data['family']!r:.80}")
        return super().validate(data)

    def solution(self, problem: MixProblem, output_format: str = "r1-zero") -> str:
        """The chosen family's worked solution."""
        return self.tasks[problem.family].solution(problem.problem, output_format)
