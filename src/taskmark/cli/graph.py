"""`taskmark graph PATH`: the phase DAG as Mermaid, DOT or JSON."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from taskmark.cli._common import load_or_exit
from taskmark.definition import render_graph

app = typer.Typer()


class GraphFormat(str, Enum):
    """Graph languages."""

    mermaid = "mermaid"
    dot = "dot"
    json = "json"


@app.command()
def graph(
    path: Annotated[str, typer.Argument(help="A definition file.", metavar="PATH")],
    format: Annotated[GraphFormat, typer.Option("--format", help="mermaid, dot or json.")] = GraphFormat.mermaid,
) -> None:
    """Print the phase graph of a definition."""
    typer.echo(render_graph(load_or_exit(path), format.value))
