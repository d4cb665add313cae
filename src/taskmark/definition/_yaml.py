"""YAML with positions: plain values plus where each key and value sits in the file.

PyYAML's composer gives nodes with marks; we turn them into plain Python values and a table
from each key path to its place, so that any later error (pydantic's included) can point at
the line. Aliases are refused (an alias bomb expands exponentially), and so is nesting deeper
than :data:`MAX_DEPTH`; both are found in the event stream, before anything is composed.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from taskmark.definition._source import KeyPath, Location, Reporter, Source, Spans

__all__ = ["MAX_DEPTH", "load_yaml"]

MAX_DEPTH = 64
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when installed: ~10x faster
_CONSTRUCTOR = yaml.constructor.SafeConstructor()


def _first_problem(text: str) -> tuple[Any, str] | None:
    """An alias or too deep nesting, found from the event stream before composing.

    libyaml has nesting limits of its own, and its scanner reads far ahead of the events
    (a run of ``[`` is read whole before the first one is parsed), so it can fail before the
    event at depth :data:`MAX_DEPTH` + 1 is seen. When libyaml fails here, the stream is read
    again by PyYAML's pure-Python parser, which has no such limit: the error reported is then
    ours where the nesting is the problem, and libyaml's own where the syntax is, whatever
    either library's messages and limits are.
    """
    try:
        return _scan(text, _LOADER)
    except yaml.YAMLError:
        if _LOADER is yaml.SafeLoader:
            raise
        try:
            problem = _scan(text, yaml.SafeLoader)
        except yaml.YAMLError:
            problem = None
        if problem is None:
            raise
        return problem


def _scan(text: str, loader: Any) -> tuple[Any, str] | None:  # noqa: ANN401 - a PyYAML loader class
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent):
            return event.start_mark, "YAML aliases (*name) are not allowed in definitions; write the value out"
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                return event.start_mark, f"YAML nested deeper than {MAX_DEPTH} levels"
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return None


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
        problem = _first_problem(text)
        if problem is not None:
            reporter.error(at(problem[0]), problem[1])
            return None
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        msg = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark is not None:
            msg += f"; {exc.context} at line {at(exc.context_mark).line}"
        where = at(mark)
        if mark is not None and (hint := _indentation_hint(text.split("\n"), mark.line, indent)) is not None:
            where, msg = source.line_start(first_line0 + mark.line), msg + hint
        reporter.error(where, f"invalid YAML in {what}: {msg}")
        return None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position)
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1)
        reporter.error(
            source.at(first_line0 + line, indent + column),
            f"invalid YAML in {what}: character {exc.character:#06x} is not allowed",
        )
        return None
    except (yaml.YAMLError, RecursionError) as exc:
        reporter.error(source.at(first_line0), f"invalid YAML in {what}: {exc}")
        return None
    spans = Spans(root=source.at(first_line0))
    if node is None:
        return None, spans
    problems: list[tuple[Location, str]] = []
    value = _to_python(node, (), spans, at, problems)
    for where, msg in problems:
        reporter.error(where, msg)
    return (value, spans) if not problems else None


_ITEM = re.compile(r"(?:-[ ]+)+")
_OPENS_BLOCK = re.compile(r"(?::|^-|[|>][+-]?[0-9]?)$")
_COMMENT = re.compile(r"\s+#.*$")


def _indentation_hint(lines: list[str], line0: int, shift: int) -> str | None:
    """Why the line where YAML failed is likely indented wrong, or None when it looks right.

    PyYAML fails at the misindented line but names what it could not parse there ("mapping
    values are not allowed"), not the indentation. A line looks wrong when its indentation is
    that of none of the blocks still open above it and the line above opens no deeper block.

    Args:
        lines: The YAML text's lines.
        line0: The 0-based line where the parser failed.
        shift: Columns the text was shifted left by (to count spaces as they are in the file).
    """
    levels: list[int] = []
    opens = False
    for line in lines[:line0]:
        content = _COMMENT.sub("", line.lstrip(" ")).rstrip()
        if not content or content.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        while levels and levels[-1] > indent:
            levels.pop()
        if not levels or levels[-1] < indent:
            levels.append(indent)
        item = _ITEM.match(content)
        if item:  # the content of a "- " item is a block of its own
            levels.append(indent + item.end())
        opens = bool(_OPENS_BLOCK.search(content))
    if line0 >= len(lines) or not levels or not lines[line0].strip():
        return None
    indent = len(lines[line0]) - len(lines[line0].lstrip(" "))
    if indent in levels or (opens and indent > levels[-1]):
        return None
    above = [str(shift + level) for level in levels]
    listed = f"{', '.join(above[:-1])} or {above[-1]}" if len(above) > 1 else above[0]
    spaces = f"{shift + indent} space" + ("s" if shift + indent != 1 else "")
    return f" (the likely cause is this line's indentation: {spaces}, where the lines above are indented {listed})"


def _to_python(
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
            key = _scalar(key_node, at, problems)
            if isinstance(key, (list, dict)) or key is None and key_node.value == "<<":
                problems.append((at(key_node.start_mark), "YAML merge keys (<<) are not allowed"))
                continue
            where = at(key_node.start_mark)
            if key in seen:
                problems.append((where, f"key '{key}' is given twice; first at line {seen[key].line}"))
                continue
            seen[key] = where
            spans.keys[(*path, key)] = where
            result[key] = _to_python(value_node, (*path, key), spans, at, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(item, (*path, i), spans, at, problems) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    return _scalar(node, at, problems)


def _scalar(
    node: yaml.ScalarNode,
    at: Any,  # noqa: ANN401 - a local closure
    problems: list[tuple[Location, str]],
) -> Any:  # noqa: ANN401 - YAML scalars are any plain value
    if node.tag == "tag:yaml.org,2002:merge":
        return None
    try:
        value = _CONSTRUCTOR.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as exc:
        problems.append((at(node.start_mark), f"invalid YAML value {node.value!r}: {exc}"))
        return None
    # Dates and timestamps are kept as written: a version "2024-01-01" is a string to us.
    if not isinstance(value, (str, int, float, bool)) and value is not None:
        return node.value
    return value
