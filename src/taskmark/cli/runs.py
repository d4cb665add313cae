"""`taskmark runs`: the latest runs on the Prefect API, newest first, with calls and cost.

Like every command that talks to Prefect, it uses ``PREFECT_API_URL`` when set, else
taskmark's local server (started if needed), and imports Prefect only when it runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

from taskmark.cli._common import call_api

if TYPE_CHECKING:
    from rich.table import Table

    from taskmark.runs import RunSummary

app = typer.Typer()

STATE_COLOURS = {
    "COMPLETED": "green",
    "FAILED": "red",
    "CRASHED": "red",
    "CANCELLED": "yellow",
    "RUNNING": "cyan",
    "PAUSED": "magenta",
}
"""How states are coloured in `runs` and `trace`."""


def seconds(value: float | None) -> str:
    """A duration for people: `0.42s`, `12.3s`, `4m05s`."""
    if value is None:
        return "-"
    if value < 10:
        return f"{value:.2f}s"
    if value < 60:
        return f"{value:.1f}s"
    minutes, rest = divmod(int(round(value)), 60)
    return f"{minutes}m{rest:02d}s"


def _when(value: datetime | None) -> str:
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _state(run: RunSummary) -> str:
    """Prefect's state name, coloured; a completed run its record says was accepted with
    errors says so (Prefect knows it only as completed)."""
    if run.state == "COMPLETED" and run.outcome == "accepted_with_errors":
        return f"[yellow]{run.outcome}[/]"
    state = run.state_name if run.state_name and run.state_name.upper() != run.state else run.state.lower()
    return f"[{STATE_COLOURS.get(run.state, 'dim')}]{state}[/]"


def runs_table(runs: Sequence[RunSummary]) -> Table:
    """The runs as a Rich table: id, definition, state, start, duration, calls, cost (`-`
    where the run has no record to count them)."""
    from rich.table import Table

    from taskmark.blocks import describe_cost

    table = Table(box=None, pad_edge=False)
    table.add_column("run id", no_wrap=True)
    for column in ("definition", "state", "start"):
        table.add_column(column, no_wrap=column != "definition")
    for column in ("duration", "calls", "cost $"):
        table.add_column(column, justify="right", no_wrap=True)
    for run in runs:
        calls = (
            "-" if run.calls is None else str(run.calls) + (f" ({run.failed_calls} failed)" if run.failed_calls else "")
        )
        table.add_row(
            run.id,
            run.definition,
            _state(run),
            _when(run.start),
            seconds(run.duration_s),
            calls,
            "-"
            if run.cost_usd is None
            else describe_cost(run.cost_usd, run.unpriced_calls or 0, run.calls or 0, sign=""),
        )
    return table


@app.command()
def runs(
    definition: Annotated[
        str | None, typer.Option("--definition", "-d", help="Only runs of this definition (its `name`).")
    ] = None,
    state: Annotated[
        list[str],
        typer.Option(
            "--state",
            "-s",
            help="Only runs in this state: COMPLETED, FAILED, CRASHED, CANCELLED, RUNNING, ... (repeatable).",
        ),
    ] = [],  # noqa: B006 - Typer's way
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many runs.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list of runs, nothing else.")] = False,
) -> None:
    """List runs, newest first: definition, state, start, duration, LLM calls and cost."""
    from taskmark.runs import STATES, read_runs

    unknown = [s for s in state if s.upper() not in STATES]
    if unknown:
        raise typer.BadParameter(
            f"unknown state {unknown[0]!r}; expected one of {', '.join(STATES)}", param_hint="--state"
        )
    found = call_api(lambda: read_runs(definition=definition, states=state, limit=limit))
    if as_json:
        typer.echo(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
        return
    if not found:
        typer.echo("No runs found.")
        return
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    console.print(runs_table(found))
