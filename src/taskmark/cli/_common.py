"""What every CLI command shares: finding definition files and printing diagnostics."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import typer

from taskmark.definition import Definition, Report, validate_file
from taskmark.errors import Diagnostic

__all__ = ["diagnostics_json", "expand_paths", "load_or_exit", "print_diagnostics"]


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Definition files named by ``paths``: files as given, folders as their ``*.md`` files.

    Paths keep the spelling the user typed, so messages name files as they were named.

    Raises:
        typer.BadParameter: For a path that does not exist (exit code 2).
    """
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".md") and os.path.isfile(os.path.join(path, n)))
        elif os.path.exists(path):
            files.append(path)
        else:
            raise typer.BadParameter(f"no such file or folder: {path}", param_hint="PATH")
    return files


def print_diagnostics(diagnostics: Iterable[Diagnostic]) -> None:
    """Print diagnostics to stderr, one `PATH:LINE:COL: severity: message` per line."""
    for diagnostic in diagnostics:
        typer.echo(str(diagnostic), err=True)


def diagnostics_json(reports: Iterable[Report]) -> str:
    """Every diagnostic of ``reports`` as a JSON list, for editors."""
    return json.dumps([d.to_dict() for r in reports for d in r.diagnostics], indent=2)


def load_or_exit(path: str, *, code: int = 1) -> Definition:
    """The definition at ``path``; or its diagnostics printed and exit ``code``."""
    expand_paths([path])
    report = validate_file(path)
    print_diagnostics(report.diagnostics)
    if report.definition is None:
        raise typer.Exit(code=code)
    return report.definition
