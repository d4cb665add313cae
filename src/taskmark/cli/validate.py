"""`taskmark validate PATH...`: check definition files, report every error at its line."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from taskmark.cli._common import diagnostics_json, expand_paths, print_diagnostics
from taskmark.definition import validate_file

app = typer.Typer()


class ReportFormat(str, Enum):
    """How diagnostics are printed."""

    text = "text"
    json = "json"


@app.command()
def validate(
    paths: Annotated[
        list[str], typer.Argument(help="Definition files, or folders of them (their *.md files).", metavar="PATH")
    ],
    format: Annotated[
        ReportFormat, typer.Option("--format", help="text for people, json for editors.")
    ] = ReportFormat.text,
) -> None:
    """Check definitions; exit 0 when all are valid, 1 when any is not, 2 on bad usage."""
    files = expand_paths(paths)
    if not files:
        raise typer.BadParameter("no definition files (*.md) found", param_hint="PATH")
    reports = [validate_file(path) for path in files]
    if format is ReportFormat.json:
        typer.echo(diagnostics_json(reports))
    else:
        for report in reports:
            print_diagnostics(report.diagnostics)
            if report.definition is not None:
                typer.echo(f"ok: {report.path} ({len(report.definition.phases)} phases)")
    invalid = sum(1 for r in reports if not r.ok)
    if format is ReportFormat.text and invalid:
        typer.echo(f"{invalid} of {len(reports)} definitions invalid", err=True)
    raise typer.Exit(code=1 if invalid else 0)
