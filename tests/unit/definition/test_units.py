"""Small pure pieces: time strings, expressions, templates, the graph."""

from __future__ import annotations

import pytest

from taskmark.definition import check_expression, evaluate
from taskmark.definition._durations import parse_duration
from taskmark.definition._graph import ancestors, find_cycles, topological_order
from taskmark.definition._templates import check_template


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30 seconds", 30),
        ("2m", 120),
        ("5 minutes", 300),
        ("1.5 hours", 5400),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("500ms", 0.5),
        ("2 days", 172800),
    ],
)
def test_time_strings(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "90", 90, "1h30", "5 parsecs", "0s", "-5s", "s", None])
def test_bad_time_strings_list_the_accepted_forms(text: object) -> None:
    with pytest.raises(
        ValueError, match=r'expected a time such as "90s", "30 seconds", "2m", "5 minutes", "1.5 hours", "1h30m"; found'
    ):
        parse_duration(text)


def test_expression_evaluates_with_attribute_access_on_mappings() -> None:
    assert evaluate('output.category in ["macro", "news"]', {"output": {"category": "news"}}) is True
    assert evaluate("len(output.items) == 2 and inputs.n > 1", {"output": {"items": [1, 2]}, "inputs": {"n": 3}})
    assert evaluate("sum(x for x in output.v) / len(output.v)", {"output": {"v": [1, 3]}}) == 2


def test_expression_cannot_reach_python() -> None:
    assert check_expression("__import__('os')", ["output"])[0][1].startswith("unknown name '__import__'")
    assert "not allowed" in check_expression("output.__class__", ["output"])[0][1]
    assert "not allowed" in check_expression("[x := 1]", ["output"])[0][1]
    with pytest.raises(Exception):
        evaluate("output.__class__", {"output": {}})


def test_comprehension_variables_are_known() -> None:
    assert check_expression("all(w > 0 for w in output.weights)", ["output"]) == []
    assert check_expression("{k: v for k, v in output.items()}", ["output"]) == []


def test_template_names_and_references() -> None:
    check = check_template(
        '{{ a }} {{ phases["X Y"].f }} {{ phases.Z }} {{ steps["s"] }} {% set b = 1 %}{{ b }} {{ range(2) }}',
        ["a", "phases", "steps"],
    )
    assert check.unknown_names == ()
    assert [(r.name, r.keys) for r in check.reads] == [("phases", ("X Y", "f")), ("phases", ("Z",)), ("steps", ("s",))]
    assert check_template("{{ c }}", ["a"]).unknown_names == ("c",)
    assert check_template("line\n{{ a ", ["a"]).syntax_error == (
        1,
        "unexpected end of template, expected 'end of print statement'.",
    )


def test_topological_order_keeps_file_order_among_independents() -> None:
    edges = {"A": [], "B": ["D"], "C": ["A"], "D": []}
    assert topological_order(edges) == ["A", "C", "D", "B"]


def test_cycles_are_found_once_each_starting_at_the_first_phase() -> None:
    edges = {"A": ["B"], "B": ["C"], "C": ["A"], "D": ["E"], "E": ["D"], "F": ["A"]}
    assert find_cycles(edges) == [["A", "B", "C", "A"], ["D", "E", "D"]]


def test_long_chain_needs_no_recursion() -> None:
    edges = {f"p{i}": [f"p{i - 1}"] if i else [] for i in range(20000)}
    assert find_cycles(edges) == []
    assert len(ancestors(edges, "p19999")) == 19999
    assert topological_order(edges)[-1] == "p19999"
