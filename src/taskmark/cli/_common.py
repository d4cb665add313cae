"""What every CLI command shares: finding definition files and printing diagnostics."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Coroutine, Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from taskmark.definition import Definition, Report, validate_file
from taskmark.errors import Diagnostic

T = TypeVar("T")

__all__ = [
    "ApiBase",
    "ApiKey",
    "Model",
    "call_api",
    "connect_prefect",
    "diagnostics_json",
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
    (opt-in) an ephemeral one; the API URL in use. A server that will not start exits 1."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from taskmark.flows._crashes import enable_heartbeats
    from taskmark.flows._local_server import LocalServerError, connect

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
    if url and not quiet:
        typer.echo(f"Prefect UI: {url.removesuffix('/api')}", err=True)
    return url


def call_api(work: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Connect to the Prefect API and run ``work()``: a taskmark error (bad id, wrong state)
    exits 2 with its message, an API that does not answer exits 1; never a traceback."""
    import asyncio

    url = connect_prefect(quiet=True)
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    from taskmark.errors import TaskmarkError

    try:
        return asyncio.run(work())
    except TaskmarkError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(code=2) from None
    except (httpx.HTTPError, PrefectHTTPStatusError) as error:
        typer.echo(f"error: the Prefect API at {url} did not answer: {type(error).__name__}: {error}", err=True)
        raise typer.Exit(code=1) from None


def _typed(definition: Definition, key: str, raw: str) -> Any:  # noqa: ANN401
    requirement = definition.metadata.requirements.get(key)
    if requirement is None:
        known = ", ".join(definition.metadata.requirements) or "none"
        raise typer.BadParameter(f"unknown input '{key}'; the definition's inputs are: {known}", param_hint="--param")
    if requirement.type == "string":
        return raw
    try:
        return json.loads(raw)  # numbers, booleans, arrays and objects are JSON
    except ValueError:
        raise typer.BadParameter(
            f"{key}: expected {requirement.type} (as JSON); found {raw!r}", param_hint="--param"
        ) from None


def parse_inputs(definition: Definition, params: list[str], params_file: Path | None) -> dict[str, Any]:
    """The inputs given as ``--param K=V`` (typed by the requirements) over a JSON ``--params-file``."""
    inputs: dict[str, Any] = {}
    if params_file is not None:
        try:
            loaded = json.loads(params_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"{params_file}: {exc}", param_hint="--params-file") from None
        if not isinstance(loaded, dict):
            raise typer.BadParameter(f"{params_file}: expected a JSON object of inputs", param_hint="--params-file")
        inputs.update(loaded)
    for item in params:
        key, sep, raw = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected K=V; found {item!r}", param_hint="--param")
        inputs[key.strip()] = _typed(definition, key.strip(), raw)
    return inputs


Model = Annotated[str | None, typer.Option("--model", help="Use this model for every call.")]
ApiBase = Annotated[str | None, typer.Option("--api-base", help="Send every call to this OpenAI-compatible URL.")]
ApiKey = Annotated[str | None, typer.Option("--api-key", help="The key for --api-base (prefer TASKMARK_LLM_API_KEY).")]


def provider_overrides(model: str | None, api_base: str | None, api_key: str | None) -> Any:  # noqa: ANN401 - a ProviderOverrides
    """What `--model`, `--api-base` and `--api-key` (:data:`Model`, :data:`ApiBase`, :data:`ApiKey`) change for every call."""
    from pydantic import SecretStr

    from taskmark.blocks import ProviderOverrides

    return ProviderOverrides(model=model, api_base=api_base, api_key=SecretStr(api_key) if api_key else None)
