"""`taskmark deploy PATH...` and `taskmark serve PATH...`: definitions as Prefect deployments.

``deploy`` creates or updates one deployment per definition on a work pool, with the
definition's typed inputs as its run form and its ``schedule:`` (or ``--cron``); a worker of
the pool runs them. ``serve`` runs them from this process instead (Prefect's ``serve``).
Both talk to ``PREFECT_API_URL``, or to taskmark's local server.
"""

from __future__ import annotations

from typing import Annotated

import typer

from taskmark.cli._common import api_errors, connect_prefect, expand_paths, load_or_exit, parse_inputs

app = typer.Typer()


@app.command()
def deploy(
    paths: Annotated[list[str], typer.Argument(help="Definition files or folders of them.", metavar="PATH...")],
    pool: Annotated[
        str, typer.Option("--pool", help="The work pool (a process pool is created if missing).")
    ] = "taskmark",
    cron: Annotated[
        str | None, typer.Option("--cron", help="Run on this cron instead of the definition's schedule.")
    ] = None,
    timezone: Annotated[str | None, typer.Option("--timezone", help="IANA time zone of the schedule.")] = None,
    name: Annotated[
        str | None, typer.Option("--name", help="Deployment name (default: the definition's name).")
    ] = None,
    param: Annotated[
        list[str], typer.Option("--param", "-p", help="A default input, K=V (repeatable); non-strings as JSON.")
    ] = [],  # noqa: B006 - Typer's way
) -> None:
    """Create or update a deployment of each definition; exit 2 on bad input."""
    files = expand_paths(paths)
    if name is not None and len(files) > 1:
        raise typer.BadParameter("--name names one deployment; give one PATH", param_hint="--name")
    definitions = {path: load_or_exit(path, code=2) for path in files}  # located errors, exit 2
    defaults = {path: parse_inputs(definition, param, None) for path, definition in definitions.items()}

    from taskmark.deploy import DeployError, check_scheduled_inputs, ensure_pool, schedules_of
    from taskmark.deploy import deploy as deploy_file

    for path, definition in definitions.items():  # bad input fails before anything is sent
        try:
            check_scheduled_inputs(definition, schedules_of(definition, cron=cron, timezone=timezone), defaults[path])
        except DeployError as error:
            typer.echo(f"{path}: error: {error}", err=True)
            raise typer.Exit(code=2) from None
    api_url = connect_prefect(quiet=True)

    with api_errors(api_url):
        if ensure_pool(pool):
            typer.echo(f"Created the process work pool '{pool}'.")
        ui = api_url.removesuffix("/api")
        for path in files:
            try:
                deployed = deploy_file(
                    path, pool=pool, name=name, cron=cron, timezone=timezone, parameters=defaults[path]
                )
            except DeployError as error:
                typer.echo(f"{path}: error: {error}", err=True)
                raise typer.Exit(code=2) from None
            when = deployed.schedule or "on demand"
            typer.echo(
                f"Deployed {deployed.full_name} ({when}) to pool '{pool}': {ui}/deployments/deployment/{deployed.id}"
            )
    typer.echo(f"Runs start when a worker polls the pool: prefect worker start --pool {pool}")


@app.command()
def serve(
    paths: Annotated[list[str], typer.Argument(help="Definition files or folders of them.", metavar="PATH...")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Most runs at once.")] = None,
) -> None:
    """Serve a deployment of each definition from this process until Ctrl-C; no work pool needed."""
    files = expand_paths(paths)
    for path in files:
        load_or_exit(path, code=2)
    url = connect_prefect()

    from taskmark.deploy import DeployError
    from taskmark.deploy import serve as serve_files

    try:
        with api_errors(url):
            serve_files(files, limit=limit)
    except DeployError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
