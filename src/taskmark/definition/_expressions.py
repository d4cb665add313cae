"""Validation expressions: checked without running them, evaluated by simpleeval.

An expression is a Python expression over a few names (``output``, ``inputs``, ``phases``,
``steps`` and the requirement names) and a few pure functions. It never reaches ``eval``:
the checker whitelists AST node types, and simpleeval evaluates.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from taskmark.definition._source import did_you_mean

__all__ = ["FUNCTIONS", "check_expression", "evaluate", "key_chains"]

FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len, "str": str, "int": int, "float": float, "bool": bool,
    "min": min, "max": max, "sum": sum, "abs": abs, "round": round,
    "any": any, "all": all, "sorted": sorted, "list": list, "set": set,
}  # fmt: skip
"""The functions an expression may call."""

_ALLOWED = (
    ast.Expression, ast.BoolOp, ast.BinOp, ast.UnaryOp, ast.Compare, ast.IfExp,
    ast.Call, ast.keyword, ast.Attribute, ast.Subscript, ast.Slice, ast.Name, ast.Load,
    ast.Store, ast.Constant, ast.List, ast.Tuple, ast.Set, ast.Dict,
    ast.ListComp, ast.SetComp, ast.GeneratorExp, ast.DictComp, ast.comprehension,
    ast.JoinedStr, ast.FormattedValue,
    ast.boolop, ast.operator, ast.unaryop, ast.cmpop,
)  # fmt: skip


@dataclass(frozen=True)
class _Analysis:
    """What an expression is made of, independent of the names in scope."""

    problems: tuple[tuple[int, str], ...] = ()
    free_names: tuple[tuple[int, str], ...] = ()
    chains: tuple[tuple[str, tuple[tuple[int, str, bool], ...]], ...] = ()
    """(name, keys) for each ``name["a"].b``: each key as (column of the key, key, written as
    an attribute), outermost last."""


def _key(node: ast.AST) -> tuple[int, str, bool] | None:
    """The constant key ``node`` reads (``x["key"]`` or ``x.key``): its column, itself, whether an attribute."""
    if isinstance(node, ast.Subscript):
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return key.col_offset + 1, key.value, False  # inside the quote
    if isinstance(node, ast.Attribute) and node.end_col_offset is not None:
        return node.end_col_offset - len(node.attr), node.attr, True
    return None


def _chains(tree: ast.AST) -> list[tuple[str, tuple[tuple[int, str, bool], ...]]]:
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, (ast.Attribute, ast.Subscript)) and _key(n)}
    chains = []
    for node in ast.walk(tree):
        if id(node) in inner or _key(node) is None:
            continue
        keys: list[tuple[int, str, bool]] = []
        current: ast.AST = node
        while (key := _key(current)) is not None:
            keys.append(key)
            current = current.value  # type: ignore[attr-defined]
        if isinstance(current, ast.Name):
            chains.append((current.id, tuple(reversed(keys))))
    return sorted(chains)


@functools.lru_cache(maxsize=4096)
def _analyse(expression: str) -> _Analysis:
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        return _Analysis(problems=((max((exc.offset or 1) - 1, 0), f"invalid expression: {exc.msg}"),))
    except (ValueError, RecursionError, MemoryError) as exc:
        return _Analysis(problems=((0, f"invalid expression: {exc}"),))
    bound = {
        n.id
        for gen in ast.walk(tree)
        if isinstance(gen, ast.comprehension)
        for n in ast.walk(gen.target)
        if isinstance(n, ast.Name)
    }
    problems: list[tuple[int, str]] = []
    free: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        column = getattr(node, "col_offset", 0)
        if not isinstance(node, _ALLOWED):
            problems.append((column, f"'{type(node).__name__}' is not allowed in an expression"))
            break  # its children would only repeat the point
        if isinstance(node, ast.Name) and node.id not in bound and node.id not in FUNCTIONS:
            free.append((column, node.id))
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            problems.append((column, f"attribute '{node.attr}' is not allowed (names starting with '_' are private)"))
    return _Analysis(tuple(problems), tuple(free), tuple(_chains(tree)))


def key_chains(expression: str, name: str) -> list[tuple[tuple[int, str, bool], ...]]:
    """The chains of constant keys an expression reads from ``name``: each key as (0-based
    column of the key itself, key, whether written as an attribute).

    Example:
        >>> key_chains('phases["A"].x > output.y', "phases")
        [((8, 'A', False), (12, 'x', True))]
    """
    return [keys for owner, keys in _analyse(expression).chains if owner == name]


def check_expression(expression: str, names: Collection[str] | None) -> list[tuple[int, str]]:
    """Problems with an expression, each as (0-based column, message); none when it is fine.

    Args:
        expression: The text after ``validation:``.
        names: The names it may read (functions are always allowed); None when they are not
            known, so that no name is reported.
    """
    analysis = _analyse(expression)
    problems = list(analysis.problems)
    for column, name in analysis.free_names:
        if names is not None and name not in names:
            problems.append(
                (
                    column,
                    f"unknown name '{name}'; expected one of {', '.join(sorted(set(names)))}"
                    + did_you_mean(name, [*names, *FUNCTIONS]),
                )
            )
    return sorted(problems)


class _Namespace(dict):  # type: ignore[type-arg]
    """A mapping whose keys also read as attributes, so `output.category` works on dicts.

    Keys win over dict methods: `output.items` is the "items" field when there is one.
    """

    def __getattribute__(self, name: str) -> Any:  # noqa: ANN401 - any JSON value
        if not name.startswith("_") and dict.__contains__(self, name):
            return dict.__getitem__(self, name)
        return super().__getattribute__(name)


def _wrap(value: Any) -> Any:  # noqa: ANN401 - any JSON value
    if isinstance(value, Mapping):
        return _Namespace({k: _wrap(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def evaluate(expression: str, names: Mapping[str, Any]) -> Any:  # noqa: ANN401
    """Evaluate a checked expression with simpleeval.

    Mappings in ``names`` can be read by key or by attribute (``output.category``).

    Raises:
        Exception: Whatever the expression raises (simpleeval's errors, KeyError, ...).
    """
    from simpleeval import EvalWithCompoundTypes

    evaluator = EvalWithCompoundTypes(functions=FUNCTIONS, names={k: _wrap(v) for k, v in names.items()})
    return evaluator.eval(expression.strip())
