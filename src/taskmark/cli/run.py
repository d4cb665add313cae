"""`taskmark run PATH`: run a definition as a Prefect flow and watch it phase by phase."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from taskmark.cli._common import (
    ApiBase,
    ApiKey,
    Model,
    api_errors,
    call_api,
    connect_prefect,
    exit_unreachable,
    load_or_exit,
    parse_inputs,
    provider_overrides,
)
from taskmark.definition import Definition
from taskmark.errors import ApiUnreachableError

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
        colours = {"running": "yellow", "completed": "green", "accepted_with_errors": "yellow", "failed": "red"}
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
                row["state"] = payload.get("state") or ("completed" if moment == "phase:complete" else "failed")
            if self.live is not None:
                self.live.update(self.table())
            elif not self.quiet:
                line = f"{row['state']:>9}  {payload['phase']}"
                for answer, checks in (payload.get("failed_checks") or {}).items():
                    line += f"\n           {answer} still fails: {'; '.join(checks)}"
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


def as_yaml(value: Any) -> str:  # noqa: ANN401 - any outputs
    """``value`` as YAML, keys in their order, text of several lines as literal blocks (``|``)."""
    import yaml
    from pydantic_core import to_jsonable_python

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|" if "\n" in data else None)

    Dumper.add_representer(str, text)
    # JSON types first: a handler's outputs may hold tuples or dates, which SafeDumper refuses.
    return yaml.dump(to_jsonable_python(value), Dumper=Dumper, sort_keys=False, allow_unicode=True, width=100)


def _show_outputs(result: Any) -> None:  # noqa: ANN401 - a RunResult
    from rich.console import Console
    from rich.markdown import Markdown
    from rich.markup import escape

    from taskmark.blocks import describe_cost

    console = Console()
    for name, phase in result.phases.items():
        console.rule(f"{name} — {phase.state.lower()}")
        for answer, checks in phase.failed_checks.items():
            console.print(f"[yellow]{escape(answer)} still fails: {escape('; '.join(checks))}[/]")
        if phase.error:
            console.print(f"[red]{phase.error}[/]")
        elif isinstance(phase.outputs, str):
            console.print(Markdown(phase.outputs))
        elif phase.outputs is not None:
            # Never wrapped: a line broken at the terminal's width would no longer be the YAML it shows.
            console.print(escape(as_yaml(phase.outputs).rstrip("\n")), soft_wrap=True, highlight=False)
    usage = result.usage
    console.rule()
    summary = f"{result.outcome.replace('_', ' ')} in {result.duration_s:.1f}s · {usage.calls} calls"
    if usage.failed_calls:
        summary += f" ({usage.failed_calls} failed)"
    summary += f" · {usage.tokens} tokens · {describe_cost(usage.cost_usd, usage.unpriced_calls, usage.calls)}"
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
    url = connect_prefect(ephemeral=ephemeral, quiet=as_json)

    from prefect.exceptions import ParameterTypeError

    from taskmark.runs._run import arun

    created: list[str] = []

    def announce(run_id: str) -> None:
        created.append(run_id)
        if not as_json:
            _announce(run_id)

    try:
        with api_errors(url):
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
                    on_created=announce,
                ),
                lambda: created[0] if created else None,
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
    from taskmark.runs._run import aretry, retry_target

    _, path = call_api(lambda: retry_target(run_id))
    if path is None:
        call_api(lambda: aretry(run_id))
        typer.echo(f"Flow run {run_id} is scheduled again; a worker of its deployment's pool will run it.")
        return
    definition = load_or_exit(path, code=2)
    if not as_json:
        _announce(run_id)
    from prefect.settings import PREFECT_API_URL

    with api_errors(str(PREFECT_API_URL.value())):
        _report(
            path,
            definition,
            as_json,
            lambda hooks: aretry(
                run_id, overrides=provider_overrides(model, api_base, api_key), no_cache=no_cache, hooks=hooks
            ),
            lambda: run_id,
        )


def _announce(run_id: str) -> None:
    """Print the run's id and its page in the Prefect UI, as it starts."""
    from prefect.utilities.urls import url_for

    page = url_for("flow-run", obj_id=run_id)  # None on Prefect's ephemeral server: no UI
    typer.echo(f"Run {run_id}" + (f": {page}" if page else ""), err=True)


def _report(
    path: str,
    definition: Definition,
    as_json: bool,
    start: Callable[[dict[str, list[Any]]], Coroutine[Any, Any, Any]],
    run_id: Callable[[], str | None],
) -> None:
    """Run ``start(hooks)`` with the live view; print the outputs or ``--json``; exit 1 unless it
    completed, 128+N when signal N stopped it (the run is then Cancelled), 1 when the API was lost."""
    progress = _Progress(definition, live=sys.stdout.isatty(), quiet=as_json)
    hooks = {moment: [progress.hook(moment)] for moment in _PHASE_MOMENTS}
    try:
        with progress:
            result = _run_stoppable(start(hooks), run_id)
    except _Stopped as stopped:
        _say_stopped(stopped, run_id())
    except ApiUnreachableError as error:
        # The run cannot go on or be recorded; what Prefect still holds for the server is lost.
        exit_unreachable(error, abandon=True)
    if as_json:
        typer.echo(result.model_dump_json(exclude={"message"}))
    else:
        _show_outputs(result)
    if result.state != "COMPLETED":
        typer.echo(f"{path}: run {result.state.lower()}: {result.message}", err=True)
        raise typer.Exit(code=1)


class _Stopped(Exception):
    """SIGINT or SIGTERM stopped the run."""

    def __init__(self, signum: int, error: ApiUnreachableError | None, clean: bool) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.error = error
        """Why the run's end could not be recorded, if it could not."""
        self.clean = clean
        """Whether the run's event loop has ended: Prefect's services may send what they hold."""


def _run_stoppable(work: Coroutine[Any, Any, Any], run_id: Callable[[], str | None]) -> Any:  # noqa: ANN401
    """Await ``work`` on an event loop in a worker thread; its result. SIGINT and SIGTERM stop it.

    On the main thread, Prefect's flow engine installs a SIGTERM handler that raises
    ``TerminationSignal`` wherever that thread happens to be (the run ends Crashed, the process
    with a traceback, or not at all), and Python raises ``KeyboardInterrupt`` there on SIGINT.
    On a worker thread Prefect installs no handler, so both signals stay here: the first cancels
    ``work`` (the run records itself Cancelled) and raises :class:`_Stopped`; a second ends the
    process at once. Both are handled even if they were ignored when taskmark started: a script
    (``sh``) starts its background jobs with SIGINT ignored, and `kill -INT` must still stop them.

    Raises:
        _Stopped: A signal stopped the run.
    """
    import asyncio
    import concurrent.futures
    import contextvars
    import threading

    from taskmark.runs._run import STOP_GRACE_S

    outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = []
    received: list[int] = []

    async def main() -> None:
        task = asyncio.current_task()
        assert task is not None
        running.append((asyncio.get_running_loop(), task))
        if received:  # a signal came before the loop was up
            task.cancel(_why(received[0]))
        try:
            outcome.set_result(await work)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread, which raises it
            outcome.set_exception(error)

    def stop(signum: int, _frame: object) -> None:
        received.append(signum)
        if len(received) > 1:
            _say_stopped(_Stopped(signum, None, clean=False), run_id(), now=True)
        if running:
            loop, task = running[0]
            loop.call_soon_threadsafe(task.cancel, _why(signum))

    # The thread runs in this context: Prefect's settings (its API URL) live in context variables.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(asyncio.run, main()), name="taskmark-run", daemon=True
    )
    # Only the main thread may set handlers (a CLI invoked from another thread leaves them be).
    on_main = threading.current_thread() is threading.main_thread()
    previous = {n: signal.signal(n, stop) for n in _EXIT_CODES} if on_main else {}
    try:
        thread.start()
        error = outcome.exception()  # waits; signals are handled meanwhile
        if received and isinstance(error, asyncio.CancelledError | ApiUnreachableError):
            thread.join(STOP_GRACE_S)  # the loop's own end: its tasks cancelled, its threads joined
            lost = error if isinstance(error, ApiUnreachableError) else None
            raise _Stopped(received[0], lost, clean=not thread.is_alive())
        if not isinstance(error, ApiUnreachableError):  # a lost API would hold the loop for minutes
            thread.join()
        # A run that ended before a signal could stop it is reported as it ended.
        return outcome.result()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
"""The shell's convention: 128 + the signal's number."""


def _why(signum: int) -> str:
    return f"interrupted by {signal.Signals(signum).name}"


def _say_stopped(stopped: _Stopped, run_id: str | None, *, now: bool = False) -> NoReturn:
    """Print how the run was stopped and how to run it again; exit 128+N.

    ``now`` (a second signal), an end that could not be recorded, or a loop still winding down:
    the process ends at once, without Prefect's services delivering what they hold.
    """
    name = signal.Signals(stopped.signum).name
    if stopped.error is not None:
        typer.echo(f"error: {stopped.error}", err=True)
    if run_id is None:
        typer.echo(f"stopped by {name} before the run was created", err=True)
    else:
        if now:
            typer.echo(f"stopped by {name} at once, before run {run_id} could record its end", err=True)
        else:
            recorded = "" if stopped.error is not None else " cancelled"
            typer.echo(f"stopped by {name}: run {run_id}{recorded}", err=True)
        typer.echo(f"run it again, reusing the answers it has: taskmark retry {run_id}", err=True)
    code = _EXIT_CODES[signal.Signals(stopped.signum)]
    if now or stopped.error is not None or not stopped.clean:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code=code)
