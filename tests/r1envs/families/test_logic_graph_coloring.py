"""Graph colouring: any proper colouring is accepted, improper or partial ones are not."""

from __future__ import annotations

import random

import gymnasium as gym
import pytest

import r1envs  # noqa: F401  (registers the ids)
from r1envs.families.logic.graph_coloring import GraphColoringTask, neighbours

PATH = {"nodes": ["A", "B", "C"], "edges": [["A", "B"], ["B", "C"]], "colors": ["red", "green"]}
TRIANGLE = {
    "nodes": ["A", "B", "C"],
    "edges": [["A", "B"], ["B", "C"], ["A", "C"]],
    "colors": ["red", "green", "blue"],
}


def _correct(problem, answer):
    env = gym.make("r1/GraphColoring-v0")
    env.reset(options={"problem": problem})
    return env.step(f"<think>x</think> <answer>{answer}</answer>")[4]["correct"]


@pytest.mark.parametrize(
    "answer",
    [
        "A=red, B=green, C=red",
        "A=green, B=red, C=green",
        "A: red; B: green; C: red",
        "A is red, B is green and C is red.",
        "C = RED, A = Red, B = green",
        "A -> red, B -> green, C -> red",
    ],
)
def test_proper_colourings_in_several_phrasings(answer):
    assert _correct(PATH, answer) is True


def test_every_permutation_of_a_triangle_is_accepted():
    answers = [
        "A=red, B=green, C=blue",
        "A=blue, B=red, C=green",
        "A=green, B=blue, C=red",
    ]
    assert [_correct(TRIANGLE, a) for a in answers] == [True, True, True]


@pytest.mark.parametrize(
    "answer",
    [
        "A=red, B=red, C=green",  # edge A-B joins equal colours
        "A=red, B=green",  # C left out
        "A=red, B=green, C=blue",  # blue is not allowed
        "A=red, B=green, C=red, A=green",  # A coloured twice
        "red, green, red",
        "A=red, B=green, C=reddish",
        "",
    ],
)
def test_improper_or_partial_colourings_are_rejected(answer):
    assert _correct(PATH, answer) is False


def test_difficulty_kwargs_change_problems():
    small = GraphColoringTask().sample(random.Random(0))
    big = GraphColoringTask(num_nodes=12, edge_prob=0.8, num_colors=4).sample(random.Random(0))
    assert len(small.nodes) == 6 and len(small.colors) == 3
    assert len(big.nodes) == 12 and len(big.colors) == 4 and len(big.edges) > len(small.edges)
    assert all(neighbours(big)[n] for n in big.nodes)  # no isolated nodes
    env = gym.make("r1/GraphColoring-v0", num_nodes=8)
    _, info = env.reset(seed=0)
    assert len(info["problem"]["nodes"]) == 8


@pytest.mark.parametrize(
    "problem, field",
    [
        ({**PATH, "edges": [["A", "Z"]]}, "edges.0"),
        ({**PATH, "edges": [["A", "A"]]}, "edges.0"),
        ({**PATH, "edges": [["A", "B"], ["B", "A"]]}, "edges.1"),
        ({**TRIANGLE, "colors": ["red", "green"]}, "cannot be coloured"),
        ({**PATH, "nodes": ["A", "A", "B"]}, "nodes"),
        ({**PATH, "nodes": ["A", "a", "B"], "edges": []}, "nodes"),
        ({**PATH, "colors": ["red"]}, "colors"),
        ({**PATH, "colors": ["Red", "green"]}, "colors"),
        ({**PATH, "nodes": ["A", "B", "red"], "edges": []}, "share"),
        ({"nodes": ["A", "B"], "colors": ["red", "green"]}, "edges"),
        ({**PATH, "coloring": {}}, "coloring"),
    ],
)
def test_malformed_problems_name_the_field(problem, field):
    env = gym.make("r1/GraphColoring-v0")
    with pytest.raises(ValueError, match=field):
        env.reset(options={"problem": problem})


def test_solution_on_a_graph_where_greedy_order_fails():
    # A crown-like bipartite graph: degree order with first-free colours needs 3 colours.
    problem = GraphColoringTask().validate(
        {
            "nodes": ["A", "B", "C", "D", "E", "F"],
            "edges": [["A", "E"], ["A", "F"], ["B", "D"], ["B", "F"], ["C", "D"], ["C", "E"]],
            "colors": ["red", "green"],
        }
    )
    text = GraphColoringTask().solution(problem)
    assert GraphColoringTask().grade(text, problem).correct


def test_bad_kwargs_raise():
    with pytest.raises(ValueError, match="edge_prob"):
        GraphColoringTask(edge_prob=0)
    with pytest.raises(ValueError, match="num_colors"):
        GraphColoringTask(num_colors=9)
