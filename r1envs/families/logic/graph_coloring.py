"""Graph colouring (``r1/GraphColoring-v0``): colour a graph so neighbours differ.

Problem schema::

    {"nodes": ["A", "B", "C"], "edges": [["A", "B"], ["B", "C"]],
     "colors": ["red", "green"]}

``nodes`` holds 2 to 26 names (a letter, then letters or digits; distinct ignoring case); ``edges`` are
pairs of distinct nodes (no repeats); ``colors`` holds 2 to 8 distinct lower-case colour
words. Validation rejects graphs that provably cannot be coloured with the colours (a
bounded search; a graph it cannot decide within budget is accepted).

Rules: give every node one colour from the list so that the two ends of every edge
differ. The answer lists each node with its colour, e.g. ``A=red, B=green, C=red`` (also
``A: red`` or ``A is red``). A node left out or given two different colours makes the answer
wrong; any proper colouring is correct.

Difficulty (task kwargs): ``num_nodes``, ``edge_prob`` (chance of an edge between two
nodes of different planted colours) and ``num_colors``. Graphs are built around a hidden
colouring, so each can be coloured.
"""

from __future__ import annotations

import random
import re
import string

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from r1envs.core import Grade
from r1envs.families.logic._common import LogicTaskBase, final_text, render_solution

NAME = "graph_coloring"
COLORS = ("red", "green", "blue", "yellow", "purple", "orange", "pink", "brown")
MAX_NODES = 26
SEARCH_BUDGET = 50_000


class ColoringProblem(BaseModel):
    """A graph to colour with the given colours."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    nodes: list[str] = Field(min_length=2, max_length=MAX_NODES)
    edges: list[tuple[str, str]] = Field(max_length=MAX_NODES * (MAX_NODES - 1) // 2)
    colors: list[str] = Field(min_length=2, max_length=len(COLORS))

    @field_validator("nodes")
    @classmethod
    def _nodes(cls, v: list[str]) -> list[str]:
        bad = [n for n in v if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{0,9}", n)]
        if bad or len({n.lower() for n in v}) != len(v):
            raise ValueError(
                f"nodes must be names like 'A' or 'v1', distinct ignoring case, got {v!r:.80}"
            )
        return v

    @field_validator("colors")
    @classmethod
    def _colors(cls, v: list[str]) -> list[str]:
        bad = [c for c in v if not re.fullmatch(r"[a-z]{2,12}", c)]
        if bad or len(set(v)) != len(v):
            raise ValueError(f"colors must be distinct lower-case words, got {v!r:.80}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ColoringProblem:
        nodes, colors = set(self.nodes), set(self.colors)
        if nodes & colors:
            raise ValueError(
                f"nodes and colors must not share names, both: {sorted(nodes & colors)}"
            )
        seen = set()
        for k, (a, b) in enumerate(self.edges):
            if a not in nodes or b not in nodes or a == b:
                raise ValueError(f"edges.{k}: ({a!r}, {b!r}) must join two different nodes")
            if frozenset((a, b)) in seen:
                raise ValueError(f"edges.{k}: ({a!r}, {b!r}) is repeated")
            seen.add(frozenset((a, b)))
        if color_graph(self) is False:
            raise ValueError(f"edges: the graph cannot be coloured with {len(self.colors)} colors")
        return self


# -- helpers ---------------------------------------------------------------------------


def neighbours(problem: ColoringProblem) -> dict[str, list[str]]:
    """Adjacency lists in node order."""
    adj: dict[str, list[str]] = {n: [] for n in problem.nodes}
    for a, b in problem.edges:
        adj[a].append(b)
        adj[b].append(a)
    order = {n: i for i, n in enumerate(problem.nodes)}
    return {n: sorted(v, key=order.__getitem__) for n, v in adj.items()}


def color_graph(problem: ColoringProblem) -> dict[str, str] | None | bool:
    """A proper colouring (most-constrained node first), ``False`` if there is none, or
    ``None`` if the search budget ran out."""
    adj = neighbours(problem)
    coloring: dict[str, str] = {}
    budget = [SEARCH_BUDGET]

    def go() -> bool | None:
        open_nodes = [n for n in problem.nodes if n not in coloring]
        if not open_nodes:
            return True
        budget[0] -= 1
        if budget[0] < 0:
            return None
        node = max(
            open_nodes,
            key=lambda n: (len({coloring[m] for m in adj[n] if m in coloring}), len(adj[n])),
        )
        used = {coloring[m] for m in adj[node] if m in coloring}
        for color in problem.colors:
            if color in used:
                continue
            coloring[node] = color
            result = go()
            if result is not False:
                return result
            del coloring[node]
        return False

    result = go()
    if result is None:
        return None
    return dict(coloring) if result else False


def is_proper(coloring: dict[str, str], problem: ColoringProblem) -> bool:
    """Every node has an allowed colour and every edge joins different colours."""
    if set(coloring) != set(problem.nodes) or not set(coloring.values()) <= set(problem.colors):
        return False
    return all(coloring[a] != coloring[b] for a, b in problem.edges)


def parse_coloring(text: str, problem: ColoringProblem) -> dict[str, str] | None:
    """Read ``A=red, B=green`` into a dict; ``None`` if a node is missing or doubly coloured."""
    nodes = "|".join(re.escape(n) for n in sorted(problem.nodes, key=len, reverse=True))
    colors = "|".join(re.escape(c) for c in problem.colors)
    pattern = re.compile(
        rf"(?<![A-Za-z0-9])({nodes})\s*(?:=|:|->|→|is|-)\s*({colors})(?![A-Za-z])",
        re.IGNORECASE,
    )
    lookup = {n.lower(): n for n in problem.nodes}
    coloring: dict[str, str] = {}
    for m in pattern.finditer(text):
        node, color = lookup[m.group(1).lower()], m.group(2).lower()
        if coloring.setdefault(node, color) != color:
            return None
    return coloring if set(coloring) == set(problem.nodes) else None


def format_coloring(coloring: dict[str, str], problem: ColoringProblem) -> str:
    """``A=red, B=green`` in node order."""
    return ", ".join(f"{n}={coloring[n]}" for n in problem.nodes)


# -- task ------------------------------------------------------------------------------


class GraphColoringTask(LogicTaskBase[ColoringProblem]):
    """Graph colouring puzzles with adjustable difficulty.

    Args:
        num_nodes: how many nodes (2 to 26), named A, B, C, ...
        edge_prob: chance of an edge between two nodes of different hidden colours.
        num_colors: how many colours may be used (2 to 8).
    """

    Problem = ColoringProblem

    def __init__(self, num_nodes: int = 6, edge_prob: float = 0.5, num_colors: int = 3) -> None:
        if not 2 <= num_nodes <= MAX_NODES:
            raise ValueError(f"num_nodes must be in [2, {MAX_NODES}], num_nodes: {num_nodes}")
        if not 0.0 < edge_prob <= 1.0:
            raise ValueError(f"edge_prob must be in (0, 1], edge_prob: {edge_prob}")
        if not 2 <= num_colors <= len(COLORS):
            raise ValueError(f"num_colors must be in [2, {len(COLORS)}], num_colors: {num_colors}")
        self.num_nodes, self.edge_prob, self.num_colors = num_nodes, edge_prob, num_colors

    def sample(self, rng: random.Random) -> ColoringProblem:
        """A graph built on a hidden colouring that uses every colour (as far as there are
        nodes), with at least one edge per node."""
        nodes = list(string.ascii_uppercase[: self.num_nodes])
        colors = list(COLORS[: self.num_colors])
        shuffled = rng.sample(nodes, len(nodes))
        hidden = {n: i % self.num_colors for i, n in enumerate(shuffled)}
        pairs = [
            (a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :] if hidden[a] != hidden[b]
        ]
        edges = [p for p in pairs if rng.random() < self.edge_prob]
        touched = {x for e in edges for x in e}
        for n in nodes:
            options = [p for p in pairs if n in p and p not in edges]
            if n not in touched and options:
                edges.append(rng.choice(options))
                touched.update(edges[-1])
        order = {n: i for i, n in enumerate(nodes)}
        edges.sort(key=lambda e: (order[e[0]], order[e[1]]))
        return ColoringProblem.model_construct(nodes=nodes, edges=edges, colors=colors)

    def prompt(self, problem: ColoringProblem) -> str:
        """The graph, the colours, the rule and the answer format."""
        edges = ", ".join(f"{a}-{b}" for a, b in problem.edges) or "none"
        example = ", ".join(
            f"{n}={problem.colors[i % len(problem.colors)]}"
            for i, n in enumerate(problem.nodes[:2])
        )
        return (
            f"Colour the nodes {', '.join(problem.nodes)} of a graph with the colours "
            f"{', '.join(problem.colors)} so that the two nodes of every edge get different "
            f"colours. Edges: {edges}.\n"
            f"Give your final answer as one line listing every node with its colour, e.g. "
            f"{example}, ..."
        )

    def grade(
        self, completion: str, problem: ColoringProblem, answer_text: str | None = None
    ) -> Grade:
        """Correct iff the final answer colours every node and no edge joins equal colours."""
        text = final_text(completion)
        if text is None:
            return Grade(correct=False, extracted_answer=None)
        coloring = parse_coloring(text, problem)
        if coloring is None:
            return Grade(correct=False, extracted_answer=text)
        return Grade(correct=is_proper(coloring, problem), extracted_answer=text)

    def solution(self, problem: ColoringProblem, output_format: str = "r1-zero") -> str:
        """Nodes coloured most-constrained first with the first free colour (backed by a
        full search when that greedy order fails), then a check of every edge.

        Raises:
            ValueError: if no colouring is found.
        """
        adj = neighbours(problem)
        coloring = _greedy(problem, adj)
        fallback = coloring is None
        if fallback:
            found = color_graph(problem)
            if not isinstance(found, dict):
                raise ValueError("edges: no colouring found with the given colors")
            coloring = found
        steps = []
        done: dict[str, str] = {}
        for node in _order(problem, adj):
            near = [f"{m}={done[m]}" for m in adj[node] if m in done]
            why = f"neighbours {', '.join(near)}" if near else "no coloured neighbours"
            pick = "choose" if fallback else "first free colour"
            steps.append(f"{node}: {why}; {pick} {coloring[node]}.")
            done[node] = coloring[node]
        checks = ", ".join(f"{a}-{b} ({coloring[a]}/{coloring[b]})" for a, b in problem.edges)
        steps.append(f"Check: every edge joins different colours: {checks or 'no edges'}.")
        return render_solution(
            steps, format_coloring(coloring, problem), output_format, lead="Colouring:"
        )


def _order(problem: ColoringProblem, adj: dict[str, list[str]]) -> list[str]:
    """Nodes by degree, highest first (ties in node order)."""
    return sorted(problem.nodes, key=lambda n: -len(adj[n]))


def _greedy(problem: ColoringProblem, adj: dict[str, list[str]]) -> dict[str, str] | None:
    coloring: dict[str, str] = {}
    for node in _order(problem, adj):
        used = {coloring[m] for m in adj[node] if m in coloring}
        free = [c for c in problem.colors if c not in used]
        if not free:
            return None
        coloring[node] = free[0]
    return coloring
