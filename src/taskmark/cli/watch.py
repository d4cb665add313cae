"""`taskmark watch DIR`: run each seed file dropped in DIR/pending/, once."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from taskmark.cli._common import api_errors, connect_prefect

app = typer.Typer()


@app.command()
def watch(
    folder: Annotated[
        Path,
        typer.Argument(
            help="The watch folder (pending/, current/, complete/, rejected/ are made in it).", metavar="DIR"
        ),
    ],
    deployment: Annotated[
        str | None,
        typer.Option(
            "--deployment", help="Run through this Prefect deployment: NAME (for DEFINITION-NAME/NAME) or FLOW/NAME."
        ),
    ] = None,
    max_concurrent: Annotated[int, typer.Option("--max-concurrent", min=1, help="Runs at once.")] = 2,
    ephemeral: Annotated[
        bool, typer.Option("--ephemeral", help="Use Prefect's per-process server instead of taskmark's local one.")
    ] = False,
) -> None:
    """Watch DIR/pending/ for *-seed.json files and run each one once; Ctrl-C stops.

    A seed is {"definition": "PATH.md", "params": {...}}; see docs/watching.md.
    """
    if folder.exists() and not folder.is_dir():
        raise typer.BadParameter(f"not a folder: {folder}", param_hint="DIR")
    url = connect_prefect(ephemeral=ephemeral)  # one line per run event is ours to print
    import asyncio

    from taskmark.watch import FolderBusyError, WatchEvent
    from taskmark.watch import watch as watch_folder

    def report(event: WatchEvent) -> None:
        run = f" {event.run_id}" if event.run_id else ""
        if event.kind == "finished":
            typer.echo(
                f"{event.state.lower() if event.state else 'finished':>9}{run}  {event.seed}"
                + (f"  {event.message}" if event.message and event.state != "COMPLETED" else "")
            )
        elif event.kind in ("rejected", "duplicate"):
            typer.echo(f"{event.kind:>9}  {event.seed} -> {event.path}", err=True)
            typer.echo(event.message or "", err=True)
        elif event.kind == "error":
            typer.echo(f"    error  {event.message}", err=True)
        else:
            typer.echo(f"{event.kind:>9}{run}  {event.seed}")

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stopping() -> None:
            typer.echo("stopping: running runs stay in current/ and resume on the next start", err=True)
            stop.set()
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(number)  # a second Ctrl-C ends at once

        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stopping)
        typer.echo(
            f"watching {folder / 'pending'} (at most {max_concurrent} at once{f', through {deployment}' if deployment else ''}); Ctrl-C stops",
            err=True,
        )
        await watch_folder(folder, deployment=deployment, max_concurrent=max_concurrent, stop=stop, report=report)

    try:
        with api_errors(url):
            asyncio.run(main())
    except FolderBusyError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
