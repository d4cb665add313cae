"""`taskmark run PATH`: run a definition as a Prefect flow and watch it phase by phase."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from taskmark.cli._common import load_or_exit
from taskmark.definition import Definition

app = typer.Typer()

_PHASE_MOMENTS = ("phase:start", "phase:complete", "phase:failed")


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
        raise typer.BadParameter(f"{key}: expected {requirement.type} (as JSON); found {raw!r}", param_hint="--param") from None


def _inputs(definition: Definition, params: list[str], params_file: Path | None) -> dict[str, Any]:
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
    param: Annotated[list[str], typer.Option("--param", "-p", help="An input, K=V (repeatable); non-strings as JSON.")] = [],  # noqa: B006 - Typer's way
    params_file: Annotated[Path | None, typer.Option("--params-file", help="A JSON object of inputs.")] = None,
    model: Annotated[str | None, typer.Option("--model", help="Use this model for every call.")] = None,
    api_base: Annotated[str | None, typer.Option("--api-base", help="Send every call to this OpenAI-compatible URL.")] = None,
    api_key: Annotated[str | None, typer.Option("--api-key", help="The key for --api-base (prefer TASKMARK_LLM_API_KEY).")] = None,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Ignore the definition's response cache.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object at the end, nothing else.")] = False,
    ephemeral: Annotated[bool, typer.Option("--ephemeral", help="Use Prefect's per-process server instead of taskmark's local one.")] = False,
) -> None:
    """Run a definition; exit 0 when it completed, 1 when it failed, 2 on bad input."""
    definition = load_or_exit(path, code=2)  # a definition error is bad input, like a usage error
    inputs = _inputs(definition, param, params_file)
    _connect(ephemeral=ephemeral, quiet=as_json)

    from pydantic import SecretStr
    from prefect.exceptions import ParameterTypeError

    from taskmark.blocks import ProviderOverrides
    from taskmark.flows._run import arun

    overrides = ProviderOverrides(model=model, api_base=api_base, api_key=SecretStr(api_key) if api_key else None)
    progress = _Progress(definition, live=sys.stdout.isatty(), quiet=as_json)
    hooks = {moment: [progress.hook(moment)] for moment in _PHASE_MOMENTS}
    import asyncio

    try:
        with progress:
            result = asyncio.run(arun(definition, inputs, overrides=overrides, no_cache=no_cache, hooks=hooks))
    except ParameterTypeError as exc:
        typer.echo(f"{path}: error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    if as_json:
        typer.echo(result.model_dump_json(exclude={"message"}))
    else:
        _show_outputs(result)
    if result.state != "COMPLETED":
        typer.echo(f"{path}: run {result.state.lower()}: {result.message}", err=True)
        raise typer.Exit(code=1)


def _connect(*, ephemeral: bool, quiet: bool) -> None:
    """Point Prefect at PREFECT_API_URL, taskmark's local server, or (opt-in) an ephemeral one."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if not ephemeral:
        from taskmark.flows._local_server import connect

        connect()  # PREFECT_API_URL if set (env, profile, prefect.toml), else the local server
    import logging

    from prefect.logging.configuration import ensure_logging_setup
    from prefect.logging.handlers import PrefectConsoleHandler

    ensure_logging_setup()
    # Prefect's console lines would interleave with our view and repeat our report; the run's
    # logs still go to the API (the UI shows them).
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.setLevel(logging.CRITICAL)
    # We report invalid inputs ourselves (exit 2); Prefect would log them a second time.
    logging.getLogger("prefect.flows").setLevel(logging.CRITICAL)
    if not quiet:
        url = os.environ.get("PREFECT_API_URL", "")
        if url:
            typer.echo(f"Prefect UI: {url.removesuffix('/api')}", err=True)
