"""Knights and Knaves (``r1/KnightsKnaves-v0``): who always tells the truth, who always lies?

Problem schema::

    {"people": ["Alice", "Bob"],
     "statements": [{"speaker": "Alice", "claim": ["knave", "Bob"]},
                    {"speaker": "Bob", "claim": ["and", ["knight", "Alice"], ["knight", "Bob"]]}]}

``people`` holds 2 to 10 distinct names (letters only). A claim is a nested list:
``["knight", name]``, ``["knave", name]``, ``["not", claim]`` or ``[op, claim, claim]`` with
``op`` one of ``and``, ``or``, ``iff`` (if and only if), ``implies`` (if ... then ...);
nesting is at most 6 deep. Validation rejects puzzles that no assignment satisfies.

A knight's statements are true, a knave's are false. The answer names every person's kind,
e.g. ``Alice is a knave, Bob is a knight`` (also ``Alice: knave; Bob: knight`` or ``Alice and
Carol are knights, Bob is a knave``). The grader reads names and the words knight/knave in
order: each kind word applies to the names since the previous one. An answer that leaves
someone out, gives someone both kinds, or contains a negation (not, no, never, ...) is
wrong. The assignment is checked against every statement, so any consistent answer is
correct; generated puzzles have exactly one.

Difficulty (task kwargs): ``num_people`` and ``depth`` (connectives nested in a claim: 0 means
plain "X is a knight" claims).
"""

from __future__ import annotations

import itertools
import random
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from r1envs.core import Grade
from r1envs.families.logic._common import NEGATIONS, LogicTaskBase, final_text, render_solution

NAME = "knights_knaves"
ROLES = ("knight", "knave")
BINARY_OPS = ("and", "or", "iff", "implies")
MAX_PEOPLE = 10
MAX_DEPTH = 6
PEOPLE_NAMES = (
    "Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Iris", "Jack",
    "Kate", "Leo", "Mia", "Nora", "Oscar", "Paul", "Quinn", "Rose", "Sam", "Tina",
)  # fmt: skip
_WORD = re.compile(r"[A-Za-z]+(?:['’][a-z]+)?")

Claim = list[Any]


def _check_claim(claim: Any, people: set[str], depth: int = 0) -> None:
    """Raise ``ValueError`` describing the first malformed part of ``claim``."""
    if depth > MAX_DEPTH:
        raise ValueError(f"claims may nest at most {MAX_DEPTH} deep")
    if not isinstance(claim, (list, tuple)) or not claim:
        raise ValueError(f"a claim must be a non-empty list, got {claim!r:.60}")
    op = claim[0]
    if op in ROLES:
        if len(claim) != 2 or not isinstance(claim[1], str) or claim[1] not in people:
            raise ValueError(f"[{op!r}, name] needs a name from people, got {claim!r:.60}")
    elif op == "not":
        if len(claim) != 2:
            raise ValueError(f"['not', claim] takes one claim, got {claim!r:.60}")
        _check_claim(claim[1], people, depth + 1)
    elif op in BINARY_OPS:
        if len(claim) != 3:
            raise ValueError(f"[{op!r}, claim, claim] takes two claims, got {claim!r:.60}")
        _check_claim(claim[1], people, depth + 1)
        _check_claim(claim[2], people, depth + 1)
    else:
        raise ValueError(
            f"unknown claim operator {op!r:.30}; known: {[*ROLES, 'not', *BINARY_OPS]}"
        )


class Statement(BaseModel):
    """What one person says."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    speaker: str
    claim: Claim


class KnightsKnavesProblem(BaseModel):
    """A Knights and Knaves puzzle."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    people: list[str] = Field(min_length=2, max_length=MAX_PEOPLE)
    statements: list[Statement] = Field(min_length=1, max_length=4 * MAX_PEOPLE)

    @field_validator("people")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        bad = [n for n in v if not re.fullmatch(r"[A-Z][a-z]{0,19}", n) or n.lower() in _RESERVED]
        if bad:
            raise ValueError(f"names must be capitalized words (not kind words), got {bad}")
        if len({n.lower() for n in v}) != len(v):
            raise ValueError(f"names must be distinct, got {v}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> KnightsKnavesProblem:
        people = set(self.people)
        for k, s in enumerate(self.statements):
            if s.speaker not in people:
                raise ValueError(f"statements.{k}.speaker: {s.speaker!r} is not one of people")
            try:
                _check_claim(s.claim, people)
            except ValueError as err:
                raise ValueError(f"statements.{k}.claim: {err}") from None
        if not solutions(self, limit=1):
            raise ValueError("statements: no assignment of knights and knaves satisfies them")
        return self


_RESERVED = {*ROLES, "knights", "knaves", *NEGATIONS, "and", "or", "is", "are", "a", "i"}


# -- logic -----------------------------------------------------------------------------


def evaluate(claim: Claim, world: dict[str, bool | None]) -> bool | None:
    """Truth of ``claim`` (``True`` = knight) in a possibly partial world (Kleene logic)."""
    op = claim[0]
    if op in ROLES:
        v = world.get(claim[1])
        return None if v is None else v == (op == "knight")
    if op == "not":
        v = evaluate(claim[1], world)
        return None if v is None else not v
    a, b = evaluate(claim[1], world), evaluate(claim[2], world)
    if op == "implies":
        a = None if a is None else not a
        op = "or"
    if op == "and":
        return False if a is False or b is False else (None if a is None or b is None else True)
    if op == "or":
        return True if a is True or b is True else (None if a is None or b is None else False)
    return None if a is None or b is None else a == b  # iff


def holds(problem: KnightsKnavesProblem, world: dict[str, bool | None]) -> bool | None:
    """Whether every statement is consistent with its speaker's kind (``None``: undecided)."""
    result: bool | None = True
    for s in problem.statements:
        speaker, value = world.get(s.speaker), evaluate(s.claim, world)
        if speaker is None or value is None:
            result = None
        elif speaker != value:
            return False
    return result


def solutions(problem: KnightsKnavesProblem, limit: int = 2) -> list[dict[str, bool]]:
    """Up to ``limit`` consistent assignments (``True`` = knight), by brute force."""
    found = []
    for values in itertools.product((True, False), repeat=len(problem.people)):
        world = dict(zip(problem.people, values, strict=True))
        if holds(problem, world):
            found.append(world)
            if len(found) >= limit:
                break
    return found


def parse_assignment(text: str, people: list[str]) -> dict[str, bool] | None:
    """Read ``Alice is a knight, Bob is a knave`` into ``{"Alice": True, "Bob": False}``.

    Returns ``None`` if someone is missing or given both kinds, a kind word has no name
    before it, a name has no kind after it, or the text contains a negation.
    """
    lookup = {p.lower(): p for p in people}
    pending: list[str] = []
    world: dict[str, bool] = {}
    for word in _WORD.findall(text):
        w = word.lower()
        if w in NEGATIONS:
            return None
        if w in lookup:
            pending.append(lookup[w])
        elif w.rstrip("s") in ROLES:
            if not pending:
                return None
            for name in pending:
                value = w.rstrip("s") == "knight"
                if world.setdefault(name, value) != value:
                    return None
            pending = []
    if pending or set(world) != set(people):
        return None
    return world


def describe_claim(claim: Claim, speaker: str, top: bool = True) -> str:
    """A claim in English from ``speaker``'s point of view; nested parts in parentheses."""
    op = claim[0]
    if op in ROLES:
        who = claim[1]
        return f"I am a {op}" if who == speaker else f"{who} is a {op}"
    if op == "not":
        inner = claim[1]
        if inner[0] in ROLES:
            who = inner[1]
            return f"I am not a {inner[0]}" if who == speaker else f"{who} is not a {inner[0]}"
        text = f"it is not true that {describe_claim(inner, speaker, False)}"
    else:
        a, b = (describe_claim(c, speaker, False) for c in claim[1:])
        text = {
            "and": f"{a} and {b}",
            "or": f"{a} or {b}",
            "iff": f"{a} if and only if {b}",
            "implies": f"if {a} then {b}",
        }[op]
    return text if top else f"({text})"


def _kind(value: bool) -> str:
    return "knight" if value else "knave"


def format_assignment(world: dict[str, bool], people: list[str]) -> str:
    """``Alice is a knight, Bob is a knave`` in the order of ``people``."""
    return ", ".join(f"{p} is a {_kind(world[p])}" for p in people)


# -- generation ------------------------------------------------------------------------


def _random_claim(rng: random.Random, people: list[str], depth: int) -> Claim:
    if depth == 0:
        return [rng.choice(ROLES), rng.choice(people)]
    if rng.random() < 0.15:
        return ["not", _random_claim(rng, people, depth - 1)]
    op = rng.choice(BINARY_OPS)
    parts = [
        _random_claim(rng, people, depth - 1),
        _random_claim(rng, people, rng.randrange(depth)),
    ]
    rng.shuffle(parts)
    return [op, *parts]


def _people_in(claim: Claim) -> set[str]:
    return {claim[1]} if claim[0] in ROLES else set().union(*(_people_in(c) for c in claim[1:]))


def _dull(claim: Claim) -> bool:
    """Whether a compound part of ``claim`` is about one person only or always has the same
    truth value (``Bob is a knight or Bob is a knave``)."""
    if claim[0] in ROLES:
        return False
    if any(_dull(c) for c in claim[1:]):
        return True
    people = sorted(_people_in(claim))
    if claim[0] in BINARY_OPS and len(people) < 2:
        return True
    values = {
        evaluate(claim, dict(zip(people, v, strict=True)))
        for v in itertools.product((True, False), repeat=len(people))
    }
    return len(values) < 2


def _pinning_claim(speaker: str, person: str, value: bool) -> Claim:
    """A claim whose utterance by ``speaker`` forces ``person``'s kind to ``value``."""
    return ["iff", ["knight", speaker], [_kind(value), person]]


# -- task ------------------------------------------------------------------------------


class KnightsKnavesTask(LogicTaskBase[KnightsKnavesProblem]):
    """Knights and Knaves puzzles with a unique solution.

    Args:
        num_people: how many islanders (2 to 10); each makes one statement (rarely, extra
            statements are added to make the solution unique).
        depth: how many connectives claims nest (0 to 3).
    """

    Problem = KnightsKnavesProblem

    def __init__(self, num_people: int = 3, depth: int = 1) -> None:
        if not 2 <= num_people <= MAX_PEOPLE:
            raise ValueError(f"num_people must be in [2, {MAX_PEOPLE}], num_people: {num_people}")
        if not 0 <= depth <= 3:
            raise ValueError(f"depth must be in [0, 3], depth: {depth}")
        self.num_people, self.depth = num_people, depth

    def sample(self, rng: random.Random) -> KnightsKnavesProblem:
        """Random kinds, one true-to-kind claim per person, redrawn until the solution is
        unique (after 200 tries, claims that pin the remaining ambiguity are added)."""
        people = rng.sample(PEOPLE_NAMES, self.num_people)
        truth = {p: rng.random() < 0.5 for p in people}
        for _ in range(200):
            statements = []
            for p in people:
                claim = _random_claim(rng, people, self.depth)
                # A claim about the speaker alone says nothing ("I am a knight").
                while (
                    evaluate(claim, truth) != truth[p] or _dull(claim) or _people_in(claim) == {p}
                ):
                    claim = _random_claim(rng, people, self.depth)
                statements.append(Statement(speaker=p, claim=claim))
            problem = KnightsKnavesProblem.model_construct(people=people, statements=statements)
            if len(solutions(problem)) == 1:
                return problem
        while len(found := solutions(problem)) > 1:
            person = next(p for p in people if found[0][p] != found[1][p])
            speaker = next(p for p in people if p != person)
            statements.append(
                Statement(speaker=speaker, claim=_pinning_claim(speaker, person, truth[person]))
            )
            problem = KnightsKnavesProblem.model_construct(people=people, statements=statements)
        return problem

    def prompt(self, problem: KnightsKnavesProblem) -> str:
        """The island's rules, the statements and the answer format."""
        names = ", ".join(problem.people[:-1]) + f" and {problem.people[-1]}"
        lines = [
            "On an island, every inhabitant is either a knight, who always tells the truth, or "
            f"a knave, who always lies. You meet {len(problem.people)} inhabitants: {names}."
        ]
        for s in problem.statements:
            text = describe_claim(s.claim, s.speaker)
            lines.append(f'{s.speaker} says: "{text[0].upper()}{text[1:]}."')
        example = ", ".join(f"{p} is a knight/knave" for p in problem.people[:2])
        lines.append(
            "Who is a knight and who is a knave? Give your final answer as one sentence naming "
            f"everyone, in the form: {example}, ..."
        )
        return "\n".join(lines)

    def grade(
        self, completion: str, problem: KnightsKnavesProblem, answer_text: str | None = None
    ) -> Grade:
        """Correct iff the final answer assigns everyone a kind consistent with all statements."""
        text = final_text(completion)
        if text is None:
            return Grade(correct=False, extracted_answer=None)
        world = parse_assignment(text, problem.people)
        if world is None:
            return Grade(correct=False, extracted_answer=text)
        return Grade(correct=holds(problem, world) is True, extracted_answer=text)

    def solution(self, problem: KnightsKnavesProblem, output_format: str = "r1-zero") -> str:
        """Case analysis with propagation, then a check of every statement.

        Raises:
            ValueError: if the puzzle has no solution.
        """
        steps: list[str] = []
        world = _reason(problem, {p: None for p in problem.people}, steps)
        if world is None:
            raise ValueError("statements: no assignment of knights and knaves satisfies them")
        for s in problem.statements:
            value = evaluate(s.claim, world)
            steps.append(
                f"Check: {s.speaker} is a {_kind(world[s.speaker])} and says "
                f'"{describe_claim(s.claim, s.speaker)}", which is {str(value).lower()}. OK.'
            )
        answer = format_assignment(world, problem.people)  # type: ignore[arg-type]
        return render_solution(steps, answer + ".", output_format, lead="Answer:")


def _conflict(problem: KnightsKnavesProblem, world: dict[str, bool | None]) -> str | None:
    """Why ``world`` contradicts a statement, or ``None``."""
    for s in problem.statements:
        speaker, value = world.get(s.speaker), evaluate(s.claim, world)
        if speaker is not None and value is not None and speaker != value:
            return (
                f'{s.speaker}\'s statement "{describe_claim(s.claim, s.speaker)}" would be '
                f"{str(value).lower()}, but {s.speaker} would be a {_kind(speaker)}"
            )
    return None


def _reason(
    problem: KnightsKnavesProblem, world: dict[str, bool | None], steps: list[str]
) -> dict[str, bool | None] | None:
    """Propagate forced kinds, then split on the first open person; log the steps."""
    world = dict(world)
    changed = True
    while changed:
        changed = False
        for p in problem.people:
            if world[p] is not None:
                continue
            reasons = {}
            for value in (True, False):
                reasons[value] = _conflict(problem, {**world, p: value})
            if reasons[True] and reasons[False]:
                steps.append(f"{p} can be neither: as a knight, {reasons[True]}.")
                return None
            for value in (True, False):
                if reasons[value]:
                    steps.append(
                        f"If {p} were a {_kind(value)}, {reasons[value]}. So {p} is a "
                        f"{_kind(not value)}."
                    )
                    world[p] = not value
                    changed = True
    if _conflict(problem, world):
        return None
    open_people = [p for p in problem.people if world[p] is None]
    if not open_people:
        return world
    p = open_people[0]
    for value in (True, False):
        steps.append(f"Suppose {p} is a {_kind(value)}.")
        branch: list[str] = []
        result = _reason(problem, {**world, p: value}, branch)
        steps.extend(branch)
        if result is not None:
            return result
        steps.append(f"That is impossible, so {p} is not a {_kind(value)}.")
    return None
