"""Where each key and value of a JSON document starts, for located messages.

Python's :mod:`json` says where a document stops being JSON, but not where a valid
document's keys are. This walks an already valid document a second time with the
decoder's own pieces (``raw_decode`` for keys and scalars) and records the
1-based line and column of every key and value, by path (``("params", "topic")``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

__all__ = ["Position", "Spans", "position_at", "spans_of"]

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    """A 1-based line and column."""

    line: int
    """1-based line."""
    column: int
    """1-based column."""


@dataclass
class Spans:
    """Positions of the keys and values of one JSON document, by path."""

    keys: dict[Path, Position] = field(default_factory=dict)
    """Where the key of each object member starts (the opening quote)."""
    values: dict[Path, Position] = field(default_factory=dict)
    """Where each value starts; the root value is at path ``()``."""

    def key(self, path: Path) -> Position:
        """The key at ``path``, else the nearest enclosing value or key, else 1:1."""
        if not path:
            return Position(1, 1)
        return self.keys.get(path) or self.value(path[:-1])

    def value(self, path: Path) -> Position:
        """The value at ``path``, else its key, else the nearest enclosing value, else 1:1."""
        while path:
            found = self.values.get(path) or self.keys.get(path)
            if found is not None:
                return found
            path = path[:-1]
        return self.values.get((), Position(1, 1))


def position_at(text: str, offset: int) -> Position:
    """The 1-based line and column of a 0-based character ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + 1
    return Position(line, offset - (text.rfind("\n", 0, offset) + 1) + 1)


def spans_of(text: str) -> Spans:
    """The positions of every key and value of ``text``, which must be valid JSON.

    Raises:
        json.JSONDecodeError: ``text`` is not JSON (call :func:`json.loads` first to get
            the located syntax error).
    """
    spans = Spans()
    _value(text, _skip(text, 0), (), spans)
    return spans


def _skip(text: str, index: int) -> int:
    match = _WHITESPACE.match(text, index)
    return match.end() if match else index


def _value(text: str, index: int, path: Path, spans: Spans) -> int:
    spans.values[path] = position_at(text, index)
    opener = text[index : index + 1]
    if opener == "{":
        return _object(text, index + 1, path, spans)
    if opener == "[":
        return _array(text, index + 1, path, spans)
    _, end = _DECODER.raw_decode(text, index)
    return int(end)


def _object(text: str, index: int, path: Path, spans: Spans) -> int:
    index = _skip(text, index)
    if text[index] == "}":
        return index + 1
    while True:
        key_at = index
        key, index = _DECODER.raw_decode(text, index)
        spans.keys[(*path, key)] = position_at(text, key_at)
        index = _skip(text, _skip(text, index) + 1)  # past the colon
        index = _skip(text, _value(text, index, (*path, key), spans))
        if text[index] == "}":
            return index + 1
        index = _skip(text, index + 1)  # past the comma


def _array(text: str, index: int, path: Path, spans: Spans) -> int:
    index = _skip(text, index)
    if text[index] == "]":
        return index + 1
    item = 0
    while True:
        index = _skip(text, _value(text, index, (*path, item), spans))
        item += 1
        if text[index] == "]":
            return index + 1
        index = _skip(text, index + 1)
