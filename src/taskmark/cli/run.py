"""`taskmark run PATH`: run a definition as a Prefect flow and watch it phase by phase."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer

from taskmark.cli._common import (
    ApiBase,
    ApiKey,
    Model,
    call_api,
    connect_prefect,
    load_or_exit,
    parse_inputs,
    provider_overrides,
)
from taskmark.definition import Definition

app = typer.Typer()

_PHASE_MOMENTS = ("phase:start", "phase:complete", "phase:failed")


class _Progress:
    """Phase states as the run goes: a live Rich table on a terminal, plain lines otherwise."""

    def __init__(self, definition: Definition, *, live: bool, quiet: bool) -> None:
        self.rows: dict[str, dict[str, Any]] = {p.name: {"state": "waiting"} for p in definition.run_order()}
        self.quiet, self.live = quiet, None
        if live and not quiet:
            from rich.live import Live

            self.live = Live(self.table(), refresh_per_second=8, transient=False)

    def table(self) -> Any:  # noqa: ANN401 - a rich Table
        from rich.table import Table

        table = Table(box=None, pad_edge=False)
        for column in ("phase", "state", "time", "calls", "tokens", "cost $"):
            table.add_column(column, justify="left" if column in ("phase", "state") else "right")
        colours = {"running": "yellow", "completed": "green", "failed": "red"}
        for name, row in self.rows.items():
            state = row["state"]
            elapsed = row.get("duration_s") or (time.perf_counter() - row["began"] if "began" in row else None)
            table.add_row(
                name,
                f"[{colours.get(state, 'dim')}]{state}[/]",
                f"{elapsed:.1f}s" if elapsed is not None else "",
                str(row.get("calls", "")),
                str(row.get("tokens", "")),
                f"{row['cost_usd']:.4f}" if row.get("cost_usd") else "",
            )
        return table

    def hook(self, moment: str) -> Any:  # noqa: ANN401
        def update(payload: dict[str, Any]) -> None:
            row = self.rows.setdefault(str(payload["phase"]), {})
            if moment == "phase:start":
                row.update(state="running", began=time.perf_counter())
            else:
                row.update({k: payload[k] for k in ("duration_s", "calls", "tokens", "cost_usd") if k in payload})
                row["state"] = "completed" if moment == "phase:complete" else "failed"
            if self.live is not None:
                self.live.update(self.table())
            elif not self.quiet:
                line = f"{row['state']:>9}  {payload['phase']}"
                if "duration_s" in payload:
                    line += f"  {payload['duration_s']:.2f}s  {payload.get('calls', 0)} calls"
                typer.echo(line)

        return update

    def __enter__(self) -> _Progress:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self.table())
            self.live.stop()


def _show_outputs(result: Any) -> None:  # noqa: ANN401 - a RunResult
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.pretty import Pretty

    console = Console()
    for name, phase in result.phases.items():
        console.rule(f"{name} — {phase.state.lower()}")
        if phase.error:
            console.print(f"[red]{phase.error}[/]")
        elif isinstance(phase.outputs, str):
            console.print(Markdown(phase.outputs))
        elif phase.outputs is not None:
            console.print(Pretty(phase.outputs))
    usage = result.usage
    console.rule()
    summary = f"{result.state.lower()} in {result.duration_s:.1f}s · {usage.calls} calls"
    if usage.failed_calls:
        summary += f" ({usage.failed_calls} failed)"
    summary += f" · {usage.prompt_tokens + usage.completion_tokens} tokens · ${usage.cost_usd:.4f}"
    if result.models:
        summary += f" · answered by {', '.join(result.models)}"
    console.print(summary, soft_wrap=True)


@app.command()
def run(
    path: Annotated[str, typer.Argument(help="A definition file.", metavar="PATH")],
    param: Annotated[
        list[str], typer.Option("--param", "-p", help="An input, K=V (repeatable); non-strings as JSON.")
    ] = [],  # noqa: B006 - Typer's way
    params_file: Annotated[Path | None, typer.Option("--params-file", help="A JSON object of inputs.")] = None,
    model: Model = None,
    api_base: ApiBase = None,
    api_key: ApiKey = None,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Call every agent afresh, even where the definition's cache holds an answer."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object at the end, nothing else.")] = False,
    ephemeral: Annotated[
        bool, typer.Option("--ephemeral", help="Use Prefect's per-process server instead of taskmark's local one.")
    ] = False,
) -> None:
    """Run a definition; exit 0 when it completed, 1 when it failed, 2 on bad input."""
    definition = load_or_exit(path, code=2)  # a definition error is bad input, like a usage error
    inputs = parse_inputs(definition, param, params_file)
    connect_prefect(ephemeral=ephemeral, quiet=as_json)

    from prefect.exceptions import ParameterTypeError

    from taskmark.flows._run import arun

    try:
        _report(
            path,
            definition,
            as_json,
            lambda hooks: arun(
                definition,
                inputs,
                overrides=provider_overrides(model, api_base, api_key),
                no_cache=no_cache,
                hooks=hooks,
            ),
        )
    except ParameterTypeError as exc:
        typer.echo(f"{path}: error: {exc}", err=True)
        raise typer.Exit(code=2) from None


@app.command()
def retry(
    run_id: Annotated[str, typer.Argument(help="The flow run to retry (its id).", metavar="RUN_ID")],
    model: Model = None,
    api_base: ApiBase = None,
    api_key: ApiKey = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Call every agent again instead of reusing answers.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object at the end, nothing else.")] = False,
) -> None:
    """Run a finished run again under its id, calling only what it has no answer for; exit 0/1/2.

    Exit 0 when it completed, 1 when it failed, 2 on bad input."""
    from taskmark.flows._run import aretry, retry_target

    _, path = call_api(lambda: retry_target(run_id))
    if path is None:
        call_api(lambda: aretry(run_id))
        typer.echo(f"Flow run {run_id} is scheduled again; a worker of its deployment's pool will run it.")
        return
    definition = load_or_exit(path, code=2)
    _report(
        path,
        definition,
        as_json,
        lambda hooks: aretry(
            run_id, overrides=provider_overrides(model, api_base, api_key), no_cache=no_cache, hooks=hooks
        ),
    )


def _report(
    path: str, definition: Definition, as_json: bool, start: Callable[[dict[str, list[Any]]], Coroutine[Any, Any, Any]]
) -> None:
    """Run ``start(hooks)`` with the live view; print the outputs or ``--json``; exit 1 unless it completed."""
    import asyncio

    progress = _Progress(definition, live=sys.stdout.isatty(), quiet=as_json)
    hooks = {moment: [progress.hook(moment)] for moment in _PHASE_MOMENTS}
    with progress:
        result = asyncio.run(start(hooks))
    if as_json:
        typer.echo(result.model_dump_json(exclude={"message"}))
    else:
        _show_outputs(result)
    if result.state != "COMPLETED":
        typer.echo(f"{path}: run {result.state.lower()}: {result.message}", err=True)
        raise typer.Exit(code=1)
