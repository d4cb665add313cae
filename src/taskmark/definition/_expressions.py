"""Validation expressions: checked without running them, evaluated by simpleeval.

An expression is a Python expression over a few names (``output``, ``inputs``, ``phases``,
``steps`` and the requirement names) and a few pure functions. It never reaches ``eval``:
the checker whitelists AST node types, and simpleeval evaluates.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Collection, Mapping
from typing import Any

from taskmark.definition._source import did_you_mean

__all__ = ["FUNCTIONS", "check_expression", "evaluate", "references"]

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


def _constant_key(node: ast.AST, name: str) -> tuple[int, str] | None:
    """(column, key) when ``node`` reads ``name["key"]`` or ``name.key``."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == name:
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return node.col_offset, key.value
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == name:
        return node.col_offset, node.attr
    return None


def references(expression: str, name: str) -> list[tuple[int, str]]:
    """Constant keys an expression reads from ``name``, as (0-based column, key).

    Example:
        >>> references('phases["A"].x > output.y', "phases")
        [(0, 'A')]
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    return sorted(ref for node in ast.walk(tree) if (ref := _constant_key(node, name)))


def check_expression(expression: str, names: Collection[str]) -> list[tuple[int, str]]:
    """Problems with an expression, each as (0-based column, message); none when it is fine.

    Args:
        expression: The text after ``validation:``.
        names: The names it may read (functions are always allowed).
    """
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as exc:
        column = max((exc.offset or 1) - 1, 0)
        return [(column, f"invalid expression: {exc.msg}")]
    except (ValueError, RecursionError, MemoryError) as exc:
        return [(0, f"invalid expression: {exc}")]
    problems: list[tuple[int, str]] = []
    bound = {
        n.id
        for gen in ast.walk(tree)
        if isinstance(gen, ast.comprehension)
        for n in ast.walk(gen.target)
        if isinstance(n, ast.Name)
    }
    known = set(names) | set(FUNCTIONS) | bound
    for node in ast.walk(tree):
        column = getattr(node, "col_offset", 0)
        if not isinstance(node, _ALLOWED):
            problems.append((column, f"'{type(node).__name__}' is not allowed in an expression"))
            break  # its children would only repeat the point
        elif isinstance(node, ast.Name) and node.id not in known:
            problems.append(
                (column, f"unknown name '{node.id}'; expected one of {', '.join(sorted(set(names)))}" + did_you_mean(node.id, known))
            )
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            problems.append((column, f"attribute '{node.attr}' is not allowed (names starting with '_' are private)"))
    return problems


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

    evaluator = EvalWithCompoundTypes(
        functions=FUNCTIONS, names={k: _wrap(v) for k, v in names.items()}
    )
    return evaluator.eval(expression.strip())
