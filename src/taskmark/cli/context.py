"""`taskmark context PATH --phase NAME`: the context each agent step of a phase would get.

Nothing is asked of a model: the prompts are rendered, the candidates gathered and counted
with the model's tokenizer, and the bundles assembled as a run would. The phases before the
one previewed are taken from the definition's most recent completed run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

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

if TYPE_CHECKING:
    from taskmark.tasks import StepPreview

app = typer.Typer()


@app.command()
def context(
    path: Annotated[str, typer.Argument(help="A definition file.", metavar="PATH")],
    phase: Annotated[str, typer.Option("--phase", help="The phase to preview.")],
    param: Annotated[
        list[str], typer.Option("--param", "-p", help="An input, K=V (repeatable); non-strings as JSON.")
    ] = [],  # noqa: B006 - Typer's way
    pin: Annotated[list[str], typer.Option("--pin", help="An item id every call must get (repeatable).")] = [],  # noqa: B006
    exclude: Annotated[list[str], typer.Option("--exclude", help="An item id no call may get (repeatable).")] = [],  # noqa: B006
    model: Model = None,
    api_base: ApiBase = None,
    api_key: ApiKey = None,
    show_prompt: Annotated[
        bool, typer.Option("--prompt", help="Also print each step's whole prompt, context included.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the bundles as JSON.")] = False,
) -> None:
    """Preview the context bundles of a phase's agent steps, without calling a model; exit 2 on bad input."""
    definition = load_or_exit(path, code=2)
    try:
        target = definition.phase(phase)
    except KeyError:
        from taskmark.definition import did_you_mean

        names = [p.name for p in definition.phases]
        typer.echo(
            f"{path}: error: no phase '{phase}'{did_you_mean(phase, names)}; phases: {', '.join(names)}", err=True
        )
        raise typer.Exit(code=2) from None
    inputs = parse_inputs(definition, param, None)
    connect_prefect(quiet=True)

    from taskmark.context import Choice
    from taskmark.tasks import Runtime, preview_context

    runtime = Runtime.of(definition, overrides=provider_overrides(model, api_base, api_key))
    previous, previews = call_api(
        lambda: preview_context(definition, target, inputs, runtime, Choice(pin=tuple(pin), exclude=tuple(exclude)))
    )
    if as_json:
        import json

        steps: list[dict[str, Any]] = [
            {"step": p.step, "prompt": p.prompt, "problem": p.problem, "bundle": p.bundle.to_json()} for p in previews
        ]
        typer.echo(json.dumps({"phase": phase, "previous_run": previous, "steps": steps}, indent=2, ensure_ascii=False))
        return
    _show(phase, previous, previews, show_prompt=show_prompt)


def _show(phase: str, previous: str | None, previews: list[StepPreview], *, show_prompt: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if previous:
        console.print(f"Earlier phases' outputs from the latest completed run, {previous}.")
    else:
        console.print("No completed run of this definition yet: earlier phases' outputs are absent.")
    if not previews:
        console.print(f"Phase '{escape(phase)}' has no agent step.")
    for preview in previews:
        bundle = preview.bundle
        console.rule(f"{escape(preview.step)} — {bundle.used} of {bundle.budget} tokens · bundle {bundle.hash[:12]}")
        if preview.problem:
            console.print(f"[yellow]prompt not rendered ({escape(preview.problem)}); ranked against its template[/]")
        table = Table(box=None, pad_edge=False)
        for column in ("", "item", "kind", "tokens", "why"):
            table.add_column(column, justify="right" if column == "tokens" else "left", overflow="fold")
        for item in bundle.items:
            tokens = (
                f"{item.tokens}" if item.tokens == item.original_tokens else f"{item.tokens} of {item.original_tokens}"
            )
            table.add_row("[green]in[/]", escape(item.id), item.kind, tokens, escape(item.reason))
        for left in bundle.left_out:
            table.add_row("[dim]out[/]", escape(left.id), left.kind, str(left.tokens or ""), escape(left.reason))
        console.print(table)
        if show_prompt:
            console.rule("prompt", style="dim")
            console.print(escape(preview.prompt), soft_wrap=True)
