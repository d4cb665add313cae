"""YAML with positions: plain values plus where each key and value sits in the file.

PyYAML's composer gives nodes with marks; we turn them into plain Python values and a table
from each key path to its place, so that any later error (pydantic's included) can point at
the line. Anchors and aliases are refused (an alias bomb expands exponentially), and so is
nesting deeper than :data:`MAX_DEPTH`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from taskmark.definition._source import Location, Reporter, Source

__all__ = ["MAX_DEPTH", "KeyPath", "Spans", "load_yaml"]

MAX_DEPTH = 64
KeyPath = tuple[Any, ...]


@dataclass
class Spans:
    """Where each key and value of a loaded YAML document is."""

    root: Location
    values: dict[KeyPath, Location] = field(default_factory=dict)
    keys: dict[KeyPath, Location] = field(default_factory=dict)

    def value(self, path: KeyPath) -> Location:
        """The location of the value at ``path``, or of its nearest enclosing value."""
        return _nearest(self.values, path, self.root)

    def key(self, path: KeyPath) -> Location:
        """The location of the key at ``path``, or of its nearest enclosing value."""
        if tuple(path) in self.keys:
            return self.keys[tuple(path)]
        return self.value(path)

    def sub(self, path: KeyPath) -> Spans:
        """The spans of the value at ``path``, with paths relative to it."""
        n = len(path)
        return Spans(
            root=self.value(path),
            values={p[n:]: loc for p, loc in self.values.items() if p[:n] == tuple(path)},
            keys={p[n:]: loc for p, loc in self.keys.items() if p[:n] == tuple(path) and len(p) > n},
        )


def _nearest(table: dict[KeyPath, Location], path: KeyPath, default: Location) -> Location:
    path = tuple(path)
    while path:
        if path in table:
            return table[path]
        path = path[:-1]
    return table.get((), default)


class _YAMLProblem(Exception):
    def __init__(self, mark: yaml.Mark | None, msg: str) -> None:
        self.mark = mark
        self.msg = msg


class _Loader(yaml.SafeLoader):
    """A safe loader that refuses aliases and deep nesting while composing."""

    depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:  # noqa: ANN401 - PyYAML's API
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _YAMLProblem(
                event.start_mark,
                "YAML aliases (*name) are not allowed in definitions; write the value out",
            )
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _YAMLProblem(
                self.peek_event().start_mark, f"YAML nested deeper than {MAX_DEPTH} levels"
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def load_yaml(
    text: str,
    source: Source,
    first_line0: int,
    reporter: Reporter,
    *,
    indent: int = 0,
    what: str = "YAML",
) -> tuple[Any, Spans] | None:
    """Load one YAML document that starts at a 0-based line of ``source``.

    Args:
        text: The YAML text.
        source: The file it was taken from (for locations).
        first_line0: The 0-based line of the file where ``text`` begins.
        reporter: Where errors go.
        indent: Columns the text was shifted left by when it was cut from the file.
        what: How to name the block in messages ("metadata", "phase options").

    Returns:
        The plain value and its spans, or None when the text is not valid YAML.
    """

    def at(mark: yaml.Mark | None) -> Location:
        if mark is None:
            return source.at(first_line0)
        return source.at(first_line0 + mark.line, indent + mark.column)

    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position)
        mark = yaml.Mark("", exc.position, line, exc.position - (text.rfind("\n", 0, exc.position) + 1), None, None)
        reporter.error(at(mark), f"invalid YAML in {what}: character {exc.character:#06x} is not allowed")
        return None
    try:
        node = loader.get_single_node()
    except _YAMLProblem as exc:
        reporter.error(at(exc.mark), exc.msg)
        return None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        reporter.error(at(mark), f"invalid YAML in {what}: {problem}")
        return None
    except (yaml.YAMLError, RecursionError) as exc:
        reporter.error(source.at(first_line0), f"invalid YAML in {what}: {exc}")
        return None
    finally:
        loader.dispose()
    spans = Spans(root=source.at(first_line0))
    if node is None:
        return None, spans
    problems: list[tuple[Location, str]] = []
    value = _to_python(loader, node, (), spans, at, problems)
    for where, msg in problems:
        reporter.error(where, msg)
    return (value, spans) if not problems else None


def _to_python(
    loader: _Loader,
    node: yaml.Node,
    path: KeyPath,
    spans: Spans,
    at: Any,  # noqa: ANN401 - a local closure
    problems: list[tuple[Location, str]],
) -> Any:  # noqa: ANN401 - YAML values are any plain value
    spans.values[path] = at(node.start_mark)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        seen: dict[Any, Location] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append((at(key_node.start_mark), "YAML keys must be plain scalars"))
                continue
            key = _scalar(loader, key_node, at, problems)
            if isinstance(key, (list, dict)) or key is None and key_node.value == "<<":
                problems.append((at(key_node.start_mark), "YAML merge keys (<<) are not allowed"))
                continue
            where = at(key_node.start_mark)
            if key in seen:
                problems.append(
                    (where, f"key '{key}' is given twice; first at line {seen[key].line}")
                )
                continue
            seen[key] = where
            spans.keys[(*path, key)] = where
            result[key] = _to_python(loader, value_node, (*path, key), spans, at, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _to_python(loader, item, (*path, i), spans, at, problems)
            for i, item in enumerate(node.value)
        ]
    return _scalar(loader, node, at, problems)


def _scalar(
    loader: _Loader,
    node: yaml.ScalarNode,
    at: Any,  # noqa: ANN401 - a local closure
    problems: list[tuple[Location, str]],
) -> Any:  # noqa: ANN401 - YAML scalars are any plain value
    if node.tag == "tag:yaml.org,2002:merge":
        return None
    try:
        value = loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        problems.append((at(node.start_mark), f"invalid YAML value {node.value!r}: {exc}"))
        return None
    # Dates and timestamps are kept as written: a version "2024-01-01" is a string to us.
    if not isinstance(value, (str, int, float, bool)) and value is not None:
        return node.value
    return value
