"""Registration of the built-in task ids (lazy: each factory is imported on first make)."""

from __future__ import annotations

from r1envs.registry import _TASKS, register_task

BUILTIN: dict[str, str] = {
    "r1/Math-v0": "r1envs.families.math:MathTask",
    "r1/Arithmetic-v0": "r1envs.families.math:ArithmeticTask",
    "r1/ArithmeticEasy-v0": "r1envs.families.math:easy_arithmetic",
    "r1/ArithmeticEasyZh-v0": "r1envs.families.math:easy_arithmetic_zh",
    "r1/Code-v0": "r1envs.families.code:CodeTask",
    "r1/Logic-v0": "r1envs.families.logic:LogicTask",
    "r1/Countdown-v0": "r1envs.families.logic.countdown:CountdownTask",
    "r1/KnightsKnaves-v0": "r1envs.families.logic.knights_knaves:KnightsKnavesTask",
    "r1/MiniSudoku-v0": "r1envs.families.logic.sudoku:SudokuTask",
    "r1/GraphColoring-v0": "r1envs.families.logic.graph_coloring:GraphColoringTask",
    "r1/CountdownEasy-v0": "r1envs.families.logic.countdown:easy_countdown",
}
#: ``gym.make`` defaults of built-in ids (env and task kwargs alike).
BUILTIN_KWARGS: dict[str, dict[str, object]] = {
    "r1/ArithmeticEasyZh-v0": {"language": "zh", "prompt_language": "zh"},
}


def register_all() -> None:
    """Register every built-in id once, the shipped declarative tasks (``tasks/*.yaml``) and,
    when reasoning-gym is installed, its curated generators (lazily: nothing heavy is
    imported here)."""
    for env_id, factory in BUILTIN.items():
        if env_id not in _TASKS:
            register_task(env_id, factory, kwargs=BUILTIN_KWARGS.get(env_id))
    from r1envs import declarative
    from r1envs.integrations import reasoning_gym

    declarative.register_shipped()
    if reasoning_gym.available():
        reasoning_gym.register_reasoning_gym()
