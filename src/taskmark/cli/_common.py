"""What every CLI command shares: finding definition files and printing diagnostics."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from taskmark.definition import Definition, Report, validate_file
from taskmark.errors import ApiUnreachableError, Diagnostic, TaskmarkError

T = TypeVar("T")

__all__ = [
    "ApiBase",
    "ApiKey",
    "Model",
    "api_errors",
    "call_api",
    "check_api",
    "connect_prefect",
    "diagnostics_json",
    "exit_unreachable",
    "expand_paths",
    "load_or_exit",
    "parse_inputs",
    "print_diagnostics",
]


def expand_paths(paths: Iterable[str]) -> list[str]:
    """Definition files named by ``paths``: files as given, folders as their ``*.md`` files.

    Paths keep the spelling the user typed, so messages name files as they were named.

    Raises:
        typer.BadParameter: For a path that does not exist (exit code 2).
    """
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            files += sorted(
                os.path.join(path, n)
                for n in os.listdir(path)
                if n.endswith(".md") and os.path.isfile(os.path.join(path, n))
            )
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


def connect_prefect(*, ephemeral: bool = False, quiet: bool = False) -> str:
    """Point Prefect at PREFECT_API_URL, else taskmark's local server (started if needed), or
    (opt-in) an ephemeral one; the API URL in use ("" for the ephemeral one). A server that
    will not start, or does not answer, exits 1 with one line."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    # While its server is gone, Prefect's events worker logs every event it could not send,
    # whole (several KB, one every ~7 s); the command says it once. Read as Prefect loads its
    # settings, so before Prefect is imported; a value the user set wins.
    os.environ.setdefault("PREFECT_LOGGING_INTERNAL_LEVEL", "CRITICAL")
    from taskmark.server._crashes import enable_heartbeats
    from taskmark.server._local import LocalServerError, connect

    enable_heartbeats()
    url = ""
    if not ephemeral:
        try:
            url = connect()  # PREFECT_API_URL if set (env, profile, prefect.toml), else the local server
        except LocalServerError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=1) from None
    import logging

    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()
    # Prefect's console lines would interleave with our output and repeat our report; the
    # logs still go to the API (the UI shows them).
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.setLevel(logging.CRITICAL)
    # We report invalid inputs ourselves (exit 2); Prefect would log them a second time.
    logging.getLogger("prefect.flows").setLevel(logging.CRITICAL)
    # The API log handler prints each batch of logs it could not send, unless told not to.
    logging.raiseExceptions = False
    if url:
        check_api(url)
    if url and not quiet:
        typer.echo(f"Prefect UI: {url.removesuffix('/api')}", err=True)
    return url


API_CHECK_TIMEOUT_S = 10.0
"""Seconds a command waits to connect to the Prefect API (and for its first answer)."""


def check_api(url: str) -> None:
    """Exit 1 with the one-line error when nothing accepts connections at ``url``.

    Prefect's client would raise a long traceback instead. A server that accepts the
    connection is there, even if it is too busy to answer at once (Prefect's client waits
    for it), or answers with an HTTP error.
    """
    import httpx

    try:
        httpx.get(f"{url.rstrip('/')}/health", timeout=API_CHECK_TIMEOUT_S)
    except (httpx.ConnectError, httpx.ConnectTimeout) as error:
        exit_unreachable(ApiUnreachableError.from_error(url, error))
    except httpx.TransportError:
        pass


def exit_unreachable(error: ApiUnreachableError, *, abandon: bool = False) -> NoReturn:
    """Print ``error: the Prefect API at URL did not answer: REASON`` and exit 1.

    Args:
        error: What did not answer, and how.
        abandon: Exit at once, leaving what Prefect's background services still hold (events
            and logs of a run) undelivered: at a normal exit they would try to send each to the
            lost server for seconds, one after another, for minutes in all.
    """
    typer.echo(f"error: {error}", err=True)
    if abandon:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    raise typer.Exit(code=1)


@contextmanager
def api_errors(url: str) -> Iterator[None]:
    """Within this block, an API that does not answer exits 1 with the one-line error.

    Covers :class:`ApiUnreachableError` and the HTTP errors of Prefect's client (a refused
    connection, a timeout, a status Prefect gave up on).
    """
    import httpx

    try:
        yield
    except ApiUnreachableError as error:
        exit_unreachable(error)
    except httpx.HTTPError as error:  # Prefect's own PrefectHTTPStatusError is one too
        exit_unreachable(ApiUnreachableError.from_error(url or "Prefect's ephemeral server", error))


def call_api(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Connect to the Prefect API and run ``work()``: a taskmark error (bad id, wrong state)
    exits 2 with its message, an API that does not answer exits 1; never a traceback."""
    import asyncio

    url = connect_prefect(quiet=True)
    with api_errors(url):
        try:
            return asyncio.run(work())
        except ApiUnreachableError:
            raise
        except TaskmarkError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(code=2) from None


def parse_inputs(definition: Definition, params: list[str], params_file: Path | None) -> dict[str, Any]:
    """The inputs given as ``--param K=V`` (typed by the requirements) over a JSON ``--params-file``.

    Raises:
        typer.BadParameter: An unknown input, a value that is not JSON where JSON is needed,
            or one of the wrong type or outside its bounds (exit code 2, the input named).
    """
    inputs: dict[str, Any] = {}
    if params_file is not None:
        try:
            loaded = json.loads(params_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"{params_file}: {exc}", param_hint="--params-file") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{params_file}: expected a JSON object of inputs", param_hint="--params-file")
        inputs.update(loaded)
    given: set[str] = set()  # the names given with --param, to point at the right flag
    for item in params:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected K=V; found {item!r}", param_hint="--param")
        try:
            inputs[key.strip()] = definition.metadata.inputs.parse(key.strip(), raw)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--param") from None
        given.add(key.strip())
    # Checked here, before a server is started or a run made: type and bounds, as the flow will.
    problems = definition.metadata.inputs.problems(inputs, complete=False)
    if problems:
        first = problems[0]
        raise typer.BadParameter(first.message, param_hint="--param" if first.name in given else "--params-file")
    return inputs


Model = Annotated[str | None, typer.Option("--model", help="Use this model for every call.")]
ApiBase = Annotated[str | None, typer.Option("--api-base", help="Send every call to this OpenAI-compatible URL.")]
ApiKey = Annotated[str | None, typer.Option("--api-key", help="The key for --api-base (prefer TASKMARK_LLM_API_KEY).")]


def provider_overrides(model: str | None, api_base: str | None, api_key: str | None) -> Any:  # noqa: ANN401 - a ProviderOverrides
    """What `--model`, `--api-base` and `--api-key` (:data:`Model`, :data:`ApiBase`, :data:`ApiKey`) change for every call."""
    from pydantic import SecretStr

    from taskmark.blocks import ProviderOverrides

    return ProviderOverrides(model=model, api_base=api_base, api_key=SecretStr(api_key) if api_key else None)
