"""`taskmark trace RUN_ID`: a run's record as a tree (attempts → phases → stages → LLM calls).

The run is read through :func:`taskmark.read_run`'s reader alone, so the tree shows what the
record holds and ``--json`` prints the record itself.

Exit codes: 0 when the trace was printed (whatever the run's outcome), 2 when ``RUN_ID``
names no run (bad input, as for a usage error), 1 when the Prefect API cannot be reached or
the run has no record (a taskmark older than the record ran it).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskmark.cli._common import call_api
from taskmark.cli.runs import seconds

if TYPE_CHECKING:
    from rich.tree import Tree

    from taskmark.runs.record import CallRecord, PhaseRecord, RunRecord, Totals

app = typer.Typer()

COLOURS = {
    "completed": "green",
    "accepted_with_errors": "dark_orange",
    "failed": "red",
    "timed_out": "red",
    "crashed": "red",
    "cancelled": "yellow",
    "running": "cyan",
}
"""How outcomes and states are coloured; the others (pending, not_run, skipped) are dim."""


def _state(state: str) -> str:
    return f"[{COLOURS.get(state, 'dim')}]{state.replace('_', ' ')}[/]"


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _tokens(prompt: int, completion: int) -> str:
    return f"{prompt + completion} tokens ({prompt} in, {completion} out)"


def _totals(totals: Totals) -> str:
    """Calls, failed, cached, requests, tokens and cost (or unpriced) of a set of calls."""
    from taskmark.blocks import describe_cost

    parts = [_count(totals.calls, "call") + (f" ({totals.failed_calls} failed)" if totals.failed_calls else "")]
    if totals.cached_calls:
        parts.append(f"{totals.cached_calls} cached")
    parts.append(_count(totals.requests, "request"))
    parts.append(_tokens(totals.prompt_tokens, totals.completion_tokens))
    parts.append(describe_cost(totals.cost_usd, totals.unpriced_calls, totals.calls))
    return " · ".join(parts)


def _call(call: CallRecord) -> str:
    from rich.markup import escape

    parts = [f"[bold]{escape(call.agent)}[/] — {_state(call.state)} {seconds(call.duration_s)}"]
    if call.round is not None:
        parts.append(f"round {call.round}")
    if call.model:
        parts.append(escape(call.model))
    if call.cached:
        parts.append("cached")
    else:
        parts.append(_count(call.attempts, "request"))
        failed = [r for r in call.requests if r.outcome == "failed"]
        if failed:
            reasons = sorted({f"HTTP {r.status_code}" if r.status_code else "no answer" for r in failed})
            parts.append(f"{len(failed)} failed ({', '.join(reasons)})")
        if any(r.purpose == "repair" for r in call.requests):
            parts.append("1 repair")
        if call.state == "completed":
            parts.append(_tokens(call.prompt_tokens, call.completion_tokens))
            parts.append("unpriced" if call.cost_usd is None else f"${call.cost_usd:.4f}")
    return " · ".join(parts)


def _error(node: Tree, error: str | None) -> None:
    from rich.markup import escape

    if error:
        node.add(f"[red]{escape(error)}[/]")


def _sent(node: Tree, call: CallRecord, bundles: dict[str, Any]) -> None:
    """What the call sent: its parameters, and the context bundle it used (`--context`)."""
    from rich.markup import escape

    temperature = "default" if call.temperature is None else call.temperature
    node.add(
        f"[dim]sent: temperature {temperature} · max_tokens {call.max_tokens or 'default'}"
        f" · messages sha256 {(call.messages_sha256 or '?')[:12]}[/]"
    )
    if call.context is None:
        return
    bundle = bundles.get(call.context)
    if bundle is None:
        node.add(f"[cyan]context {call.context[:12]}[/] · [dim]its snapshot was not found[/]")
        return
    context = node.add(f"[cyan]context {call.context[:12]}[/] · {bundle['used']} of {bundle['budget']} tokens")
    for item in bundle["items"]:
        cut = f", shortened ({item['shortened']})" if item.get("shortened") else ""
        context.add(f"{escape(item['id'])} — {item['kind']}, {item['tokens']} tokens{cut}")
    if bundle.get("note"):
        context.add(f"[dim]note: {escape(bundle['note'])}[/]")


def _phase(parent: Tree, phase: PhaseRecord, bundles: dict[str, Any] | None) -> None:
    """A phase: its state and totals, why it failed or what it still fails, its approval,
    the stages that ran with their calls, and the skipped ones on one line."""
    from rich.markup import escape

    from taskmark.runs.record import Totals

    node = parent.add(
        f"[bold]{escape(phase.name)}[/] — {_state(phase.state)} {seconds(phase.duration_s)}"
        f" · {_totals(Totals.of(phase.calls()))}"
    )
    _error(node, phase.error)
    for answer, checks in phase.failed_checks.items():
        node.add(f"[{COLOURS['accepted_with_errors']}]{escape(answer)} still fails: {escape('; '.join(checks))}[/]")
    if phase.approval is not None:
        note = phase.approval.get("note")
        node.add(f"approval: {escape(str(phase.approval.get('decision')))}" + (f" — {escape(note)}" if note else ""))
    for stage in phase.stages:
        if stage.state == "skipped":
            continue
        leaf = node.add(f"{stage.name} — {_state(stage.state)} {seconds(stage.duration_s)}")
        if stage.error not in {c.error for c in stage.calls}:  # said once, under the call that failed
            _error(leaf, stage.error)
        for call in stage.calls:
            branch = leaf.add(_call(call))
            _error(branch, call.error)
            if bundles is not None:
                _sent(branch, call, bundles)
    skipped = [s.name for s in phase.stages if s.state == "skipped"]
    if skipped:
        node.add(f"[dim]skipped: {', '.join(skipped)}[/]")


def _attempt(parent: Tree, label: str, phases: list[PhaseRecord], bundles: dict[str, Any] | None) -> None:
    from taskmark.runs.record import Totals

    node = parent.add(f"{label} · {_totals(Totals.of([c for p in phases for c in p.calls()]))}")
    for phase in phases:
        _phase(node, phase, bundles)


def trace_tree(record: RunRecord, bundles: dict[str, Any] | None = None) -> Tree:
    """The record as a Rich tree: the run, its attempts, phases, stages and LLM calls.

    Args:
        record: The run's record.
        bundles: The context bundles its calls used, by hash (:func:`taskmark.runs.read_bundles`):
            given, each call shows what it sent and its bundle (`trace --context`).
    """
    from rich.markup import escape
    from rich.tree import Tree

    version = f" {escape(record.definition.version)}" if record.definition.version else ""
    took = f" in {seconds(record.duration_s)}" if record.duration_s is not None else ""
    root = Tree(
        f"[bold]{escape(record.definition.name)}[/]{version} ({record.run_id}) — {_state(record.outcome)}{took}"
        f" · {_totals(record.totals)}"
    )
    _error(root, record.error)
    if not record.earlier:
        for phase in record.phases:
            _phase(root, phase, bundles)
        return root
    attempts = sorted({p.run_attempt for p in record.earlier})
    for number in attempts:
        _attempt(root, f"attempt {number}", [p for p in record.earlier if p.run_attempt == number], bundles)
    _attempt(root, f"attempt {record.attempts} — {_state(record.outcome)}", record.phases, bundles)
    return root


@app.command()
def trace(
    run_id: Annotated[str, typer.Argument(help="The run's id (as `taskmark runs` shows it).", metavar="RUN_ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the run's record as JSON, nothing else.")] = False,
    context: Annotated[
        bool, typer.Option("--context", help="Show what each call sent and the context bundle it used.")
    ] = False,
) -> None:
    """Show a run as a tree: phases, stages and LLM calls with state, time, requests, tokens, cost, errors."""
    from taskmark.runs import read_bundles
    from taskmark.runs._read import RecordMissing, aread_run

    async def read() -> tuple[RunRecord | RecordMissing, dict[str, Any]]:
        try:
            record = await aread_run(run_id)
        except RecordMissing as missing:  # an older taskmark's run, or one not started
            return missing, {}
        return record, await read_bundles(record) if context else {}

    record, bundles = call_api(read)
    if isinstance(record, RecordMissing):
        typer.echo(f"Error: {record}", err=True)
        raise typer.Exit(code=1)
    if as_json:
        if context:
            typer.echo(json.dumps({"record": record.model_dump(mode="json"), "bundles": bundles}, indent=2))
        else:
            typer.echo(record.model_dump_json(indent=2))
        return
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    console.print(trace_tree(record, bundles if context else None))
