"""Reading a definition file safely, and the one place where 0-based positions become 1-based.

Whatever bytes a file holds, reading it yields text or a located error: never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskmark.errors import Diagnostic, Severity

__all__ = ["MAX_FILE_BYTES", "KeyPath", "Location", "Reporter", "Source", "Spans", "did_you_mean", "read_source"]

MAX_FILE_BYTES = 8 * 1024 * 1024
"""Definitions and agent files larger than this are refused (a 2,000-phase definition is ~1 MB)."""

KeyPath = tuple[Any, ...]
"""Where a value sits in a document: keys and list indexes from the root."""


class Location(BaseModel):
    """Where something came from: a file as the user named it, a 1-based line and column."""

    model_config = ConfigDict(frozen=True)

    path: str = Field(description="The file as the user named it.")
    line: int = Field(description="1-based line.")
    column: int | None = Field(default=None, description="1-based column, or None.")

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" + (f":{self.column}" if self.column else "")


@dataclass
class Spans:
    """Where each key and value of a loaded YAML or JSON document is, by key path."""

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


class Source:
    """The text of one file and the conversion of its 0-based positions to locations."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.lines = text.split("\n")

    def at(self, line0: int, column0: int | None = None) -> Location:
        """The location of a 0-based line and column (as markdown-it and PyYAML count)."""
        return Location(
            path=self.path,
            line=line0 + 1,
            column=None if column0 is None else column0 + 1,
        )

    def line_start(self, line0: int) -> Location:
        """The location of the first non-blank character of a 0-based line."""
        line = self.lines[line0] if 0 <= line0 < len(self.lines) else ""
        return self.at(line0, len(line) - len(line.lstrip()))

    def find(self, line0: int, needle: str) -> Location:
        """The location of ``needle`` on a 0-based line (its start when not found)."""
        line = self.lines[line0] if 0 <= line0 < len(self.lines) else ""
        index = line.find(needle) if needle else -1
        return self.at(line0, index) if index >= 0 else self.line_start(line0)


class Reporter:
    """Collects the diagnostics of one validation."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, where: Location, msg: str) -> None:
        """Record an error at ``where``."""
        self._add(where, msg, "error")

    def warning(self, where: Location, msg: str) -> None:
        """Record a warning at ``where``."""
        self._add(where, msg, "warning")

    def _add(self, where: Location, msg: str, severity: Severity) -> None:
        self.diagnostics.append(Diagnostic(where.path, where.line, where.column, msg, severity))

    @property
    def has_errors(self) -> bool:
        """Whether any error (not warning) was recorded."""
        return any(d.severity == "error" for d in self.diagnostics)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """A suggestion suffix such as ``"; did you mean 'Gamma'?"``, or ``""``."""
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{matches[0]}'?" if matches else ""


def read_source(path: str | Path, reporter: Reporter) -> Source | None:
    """Read a file as UTF-8 text with Unix newlines, or report why it cannot be.

    A UTF-8 byte-order mark is dropped and CRLF/CR line ends become LF. Binary files, other
    encodings and files over :data:`MAX_FILE_BYTES` are reported at the place they fail.

    Args:
        path: The file, as the user named it (kept as given in every location).
        reporter: Where errors go.

    Returns:
        The source, or None when the file cannot be read as a definition.
    """
    shown = str(path)
    whole_file = Location(path=shown, line=1)
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            reporter.error(
                whole_file,
                f"file is too large: {size / 2**20:.1f} MiB; definitions are limited to "
                f"{MAX_FILE_BYTES / 2**20:.0f} MiB",
            )
            return None
        data = Path(path).read_bytes()
    except OSError as exc:
        reporter.error(whole_file, f"cannot read file: {exc.strerror or exc}")
        return None
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    nul = data.find(b"\x00")
    if nul >= 0:
        line0 = data.count(b"\n", 0, nul)
        column0 = nul - (data.rfind(b"\n", 0, nul) + 1)
        reporter.error(
            Source(shown, "").at(line0, column0),
            "file is not text: found a NUL byte; expected a UTF-8 markdown file",
        )
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line0 = data.count(b"\n", 0, exc.start)
        column0 = exc.start - (data.rfind(b"\n", 0, exc.start) + 1)
        reporter.error(
            Source(shown, "").at(line0, column0),
            f"file is not valid UTF-8: found byte 0x{data[exc.start]:02x}; expected a UTF-8 markdown file",
        )
        return None
    return Source(shown, text.replace("\r\n", "\n").replace("\r", "\n"))
