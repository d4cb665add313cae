"""`taskmark trace RUN_ID`: a run as a tree (phases → stages → LLM calls), from the Prefect API.

Exit codes: 0 when the trace was printed (whatever the run's state), 2 when ``RUN_ID`` names
no run (bad input, as for a usage error), 1 when the Prefect API cannot be reached.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from taskmark.cli._common import call_api
from taskmark.cli.runs import STATE_COLOURS, seconds

if TYPE_CHECKING:
    from rich.tree import Tree

    from taskmark.history import CallTrace, PhaseTrace, RunTrace, TraceTotals

app = typer.Typer()


def _state(state: str, name: str | None) -> str:
    shown = name if name and name.upper() != state else state.lower()
    return f"[{STATE_COLOURS.get(state, 'dim')}]{shown}[/]"


def _totals(totals: TraceTotals) -> str:
    parts = [f"{totals.calls} call{'s' if totals.calls != 1 else ''}"]
    if totals.failed_calls:
        parts[0] += f" ({totals.failed_calls} failed)"
    if totals.cached_calls:
        parts.append(f"{totals.cached_calls} cached")
    if totals.attempts:
        retries = f" ({totals.retries} retr{'ies' if totals.retries != 1 else 'y'})" if totals.retries else ""
        parts.append(f"{totals.attempts} request{'s' if totals.attempts != 1 else ''}{retries}")
    parts.append(f"{totals.total_tokens} tokens")
    parts.append(f"${totals.cost_usd:.4f}" + (f" (+{totals.unpriced_calls} unpriced)" if totals.unpriced_calls else ""))
    return " · ".join(parts)


def _call(call: CallTrace) -> str:
    from rich.markup import escape

    parts = [f"[bold]{escape(call.agent)}[/] — {_state(call.state, call.state_name)} {seconds(call.duration_s)}"]
    if call.model:
        parts.append(escape(call.model))
    if call.cached:
        parts.append("cached")
    if call.attempts is not None:
        parts.append(
            f"{call.attempts} attempt{'s' if call.attempts != 1 else ''}"
            + (f" ({call.retries} retr{'ies' if call.retries != 1 else 'y'})" if call.retries else "")
        )
    if not call.cached and call.error is None and call.state == "COMPLETED":
        parts.append(f"{call.total_tokens} tokens ({call.prompt_tokens} in, {call.completion_tokens} out)")
        parts.append("unpriced" if call.cost_usd is None else f"${call.cost_usd:.4f}")
    return " · ".join(parts)


def _reason(tree: Tree, message: str | None, state: str) -> None:
    from rich.markup import escape

    if message and state != "COMPLETED":
        tree.add(f"[red]{escape(message)}[/]")


def _phases(parent: Tree, phases: list[PhaseTrace]) -> None:
    from rich.markup import escape

    for phase in phases:
        node = parent.add(
            f"[bold]{escape(phase.name)}[/] — {_state(phase.state, phase.state_name)} {seconds(phase.duration_s)} · {_totals(phase.totals)}"
        )
        _reason(node, phase.message, phase.state)
        for stage in phase.stages:
            ran = f" · ran {stage.run_count} times" if stage.run_count > 1 else ""
            leaf = node.add(f"{stage.name} — {_state(stage.state, stage.state_name)} {seconds(stage.duration_s)}{ran}")
            _reason(leaf, stage.message, stage.state)
            for call in stage.calls:
                branch = leaf.add(_call(call))
                _reason(branch, call.error or call.message, "FAILED" if call.error else call.state)
                if call.bundle is not None:
                    sent = f"temperature {call.temperature if call.temperature is not None else 'default'} · max_tokens {call.max_tokens or 'default'}"
                    branch.add(f"[dim]sent: {sent} · messages sha256 {(call.messages_sha256 or '?')[:12]}[/]")
                    _bundle(branch, call.bundle)


def _bundle(parent: Tree, bundle: dict[str, Any]) -> None:
    from rich.markup import escape

    node = parent.add(f"[cyan]context {bundle['hash'][:12]}[/] · {bundle['used']} of {bundle['budget']} tokens")
    for item in bundle["items"]:
        cut = f", shortened ({item['shortened']})" if item.get("shortened") else ""
        node.add(f"{escape(item['id'])} — {item['kind']}, {item['tokens']} tokens{cut}")
    if bundle.get("note"):
        node.add(f"[dim]note: {escape(bundle['note'])}[/]")


def trace_tree(trace: RunTrace) -> Tree:
    """The trace as a Rich tree: the run, its phases, their stages, their LLM calls.

    A retried run shows one branch per attempt, each with its phases.
    """
    from rich.markup import escape
    from rich.tree import Tree

    root = Tree(
        f"[bold]{escape(trace.definition)}[/] {escape(trace.name)} ({trace.id}) — {_state(trace.state, trace.state_name)} "
        f"in {seconds(trace.duration_s)} · {_totals(trace.totals)}"
    )
    _reason(root, trace.message, trace.state)
    if trace.earlier_attempts:
        for attempt in trace.earlier_attempts:
            node = root.add(
                f"attempt {attempt.number} — {_state(attempt.state, attempt.state_name)} {seconds(attempt.duration_s)} · {_totals(attempt.totals)}"
            )
            _reason(node, attempt.message, attempt.state)
            _phases(node, attempt.phases)
        _phases(
            root.add(f"attempt {trace.attempt} — {_state(trace.state, trace.state_name)} {seconds(trace.duration_s)}"),
            trace.phases,
        )
    else:
        _phases(root, trace.phases)
    if trace.artifacts:
        root.add(f"[dim]artifacts: {', '.join(escape(a) for a in trace.artifacts)}[/]")
    return root


@app.command()
def trace(
    run_id: Annotated[str, typer.Argument(help="The run's id (as `taskmark runs` shows it).", metavar="RUN_ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the trace as one JSON object, nothing else.")] = False,
    context: Annotated[bool, typer.Option("--context", help="Show the context bundle each call used.")] = False,
) -> None:
    """Show a run as a tree: phases, stages and LLM calls with state, time, tokens, cost, retries, errors."""
    from taskmark.history import read_trace, with_bundles

    found = call_api(lambda: read_trace(run_id))
    if context:
        found = call_api(lambda: with_bundles(found))
    if as_json:
        typer.echo(found.model_dump_json(indent=2))
        return
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=max(console.width, 160))
    console.print(trace_tree(found))
    if not found.complete:
        still = (
            "the run has not ended"
            if found.state not in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
            else "some records had not reached the API"
        )
        typer.echo(f"Note: this trace may be incomplete: {still}.", err=True)
