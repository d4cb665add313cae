"""Where each key and value of a JSON document starts, for located messages.

Python's :mod:`json` says where a document stops being JSON, but not where a valid
document's keys are. This walks an already valid document a second time with the
decoder's own pieces (``raw_decode`` for keys and scalars) and records the
location of every key and value, by path (``("params", "topic")``), in the same
:class:`~taskmark.definition.Spans` a definition's YAML blocks get.
"""

from __future__ import annotations

import json
import re

from taskmark.definition import KeyPath, Location, Spans

__all__ = ["spans_of"]

_WHITESPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _at(path: str, text: str, offset: int) -> Location:
    """The location of a 0-based character ``offset`` in ``text``."""
    line = text.count("\n", 0, offset) + 1
    return Location(path=path, line=line, column=offset - (text.rfind("\n", 0, offset) + 1) + 1)


def spans_of(path: str, text: str) -> Spans:
    """The locations of every key and value of ``text``, the file ``path``, which must be valid JSON.

    Raises:
        json.JSONDecodeError: ``text`` is not JSON (call :func:`json.loads` first to get
            the located syntax error).
    """
    spans = Spans(root=Location(path=path, line=1, column=1))
    _value(text, _skip(text, 0), (), spans)
    return spans


def _skip(text: str, index: int) -> int:
    match = _WHITESPACE.match(text, index)
    return match.end() if match else index


def _value(text: str, index: int, path: KeyPath, spans: Spans) -> int:
    spans.values[path] = _at(spans.root.path, text, index)
    opener = text[index : index + 1]
    if opener == "{":
        return _object(text, index + 1, path, spans)
    if opener == "[":
        return _array(text, index + 1, path, spans)
    _, end = _DECODER.raw_decode(text, index)
    return int(end)


def _object(text: str, index: int, path: KeyPath, spans: Spans) -> int:
    index = _skip(text, index)
    if text[index] == "}":
        return index + 1
    while True:
        key_at = index
        key, index = _DECODER.raw_decode(text, index)
        spans.keys[(*path, key)] = _at(spans.root.path, text, key_at)
        index = _skip(text, _skip(text, index) + 1)  # past the colon
        index = _skip(text, _value(text, index, (*path, key), spans))
        if text[index] == "}":
            return index + 1
        index = _skip(text, index + 1)  # past the comma


def _array(text: str, index: int, path: KeyPath, spans: Spans) -> int:
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
