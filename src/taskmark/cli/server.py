"""`taskmark server start|stop|status`: the local Prefect server that `taskmark run` uses.

The library is imported inside each command: ``from taskmark.cli import app`` stays free
of Prefect, so ``taskmark validate`` stays fast.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from taskmark.server._local import ServerStatus

app = typer.Typer(
    name="server",
    help="Start, stop or inspect the local Prefect server that `taskmark run` uses.",
    no_args_is_help=True,
)


def _api_url_note() -> None:
    # Only the environment is checked here: reading profiles would import Prefect, and
    # `ensure_server` gives the exact answer at run time.
    url = os.environ.get("PREFECT_API_URL")
    if url:
        typer.echo(f"Note: PREFECT_API_URL is set; `taskmark run` uses {url}, not this server.", err=True)


def _check_api_url() -> None:
    """Exit 1 with the one-line error every command gives when PREFECT_API_URL does not answer."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        from taskmark.cli._common import check_api

        check_api(url)


def _print_status(status: ServerStatus) -> None:
    typer.echo(f"UI:       {status.ui_url}")
    typer.echo(f"API:      {status.api_url}")
    typer.echo(f"PID:      {status.pid}")
    if status.started_at:
        typer.echo(f"Started:  {status.started_at}")
    typer.echo(f"Database: {status.database_url}")
    typer.echo(f"Log:      {status.log_path}")


@app.command()
def start(
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server to answer.", min=1.0)] = 60.0,
) -> None:
    """Start the local Prefect server in the background, or reuse the running one."""
    from taskmark.server._local import LocalServerError, server_status, start_server

    running = server_status().running
    if not running:
        typer.echo("Starting the local Prefect server…")
    began = time.perf_counter()
    try:
        status = start_server(startup_timeout=timeout)
    except LocalServerError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(code=1) from None
    if running or not status.started:
        typer.echo("The local Prefect server is already running.")
    else:
        typer.echo(f"Started in {time.perf_counter() - began:.1f} s.")
        if status.moved_from is not None:
            typer.echo(
                f"Note: port {status.moved_from}, where it listened before, is taken by another program; "
                "the UI has a new address.",
                err=True,
            )
    _print_status(status)
    _api_url_note()


@app.command()
def stop() -> None:
    """Stop the local Prefect server."""
    from taskmark.server._local import LocalServerError, stop_server

    try:
        stopped = stop_server()
    except LocalServerError as error:
        typer.echo(f"Error: {error}", err=True)
        raise typer.Exit(code=1) from None
    typer.echo("Stopped the local Prefect server." if stopped else "The local Prefect server is not running.")


@app.command()
def status() -> None:
    """Show the local Prefect server's address; exit 0 if it is running, 1 if not (or if
    PREFECT_API_URL is set and does not answer: `taskmark run` would fail)."""
    from taskmark.server._local import server_status

    current = server_status()
    if current.running:
        typer.echo("The local Prefect server is running.")
        _print_status(current)
        _api_url_note()
        _check_api_url()
        return
    if current.pid is not None:
        typer.echo(f"The local Prefect server (pid {current.pid}) is not answering at {current.api_url}.")
        typer.echo(f"Log:      {current.log_path}")
    else:
        typer.echo("The local Prefect server is not running. Start it with `taskmark server start`.")
    _api_url_note()
    _check_api_url()
    raise typer.Exit(code=1)
