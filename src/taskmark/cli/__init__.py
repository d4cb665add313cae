"""The `taskmark` command: one Typer app per command module, joined here.

Commands import only what they need: ``validate``, ``graph``, ``schema`` and ``show`` never
import Prefect or litellm; ``run`` imports them when it runs.
"""

from __future__ import annotations

import typer

from taskmark.cli import context, control, deploy, graph, run, runs, schema, server, show, trace, validate, watch

__all__ = ["app", "main"]

app = typer.Typer(
    name="taskmark",
    help="Markdown LLM workflows, compiled into Prefect flows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for command in (run, validate, graph, show, schema, context, deploy, runs, trace, watch, control):
    app.add_typer(command.app)
app.add_typer(server.app, name="server")


def main() -> None:
    """Run the CLI."""
    app(prog_name="taskmark")
