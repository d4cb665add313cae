"""`taskmark resume`, `pause` and `cancel`: steer a run from another terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from taskmark.cli._common import call_api

app = typer.Typer()


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The paused run (or its paused phase's flow run).", metavar="RUN_ID")],
    approve: Annotated[bool, typer.Option("--approve", help="Approve the phase waiting for approval.")] = False,
    reject: Annotated[
        bool, typer.Option("--reject", help="Reject it: the run fails with --note as the reason.")
    ] = False,
    note: Annotated[str, typer.Option("--note", help="Why; shown in the run's history.")] = "",
    set_: Annotated[list[str], typer.Option("--set", help="A field of the approval form, K=V (repeatable).")] = [],  # noqa: B006 - Typer's way
    pin: Annotated[
        list[str], typer.Option("--pin", help="Context review: an item every call must get (repeatable).")
    ] = [],  # noqa: B006
    exclude: Annotated[
        list[str], typer.Option("--exclude", help="Context review: an item no call may get (repeatable).")
    ] = [],  # noqa: B006
) -> None:
    """Answer a run's approval (--approve/--reject) or context review (--pin/--exclude), or let a
    paused run go on; exit 2 if it cannot be."""
    if approve and reject:
        raise typer.BadParameter("give one of --approve and --reject, not both")
    if (pin or exclude) and (approve or reject or set_):
        raise typer.BadParameter(
            "--pin and --exclude answer a context review; --approve, --reject and --set an approval"
        )
    if pin or exclude:
        from taskmark.runs._control import review

        phase = call_api(lambda: review(run_id, pin=pin, exclude=exclude, note=note))
        typer.echo(f"reviewed: phase '{phase}' of run {run_id} (pinned {len(pin)}, excluded {len(exclude)})")
        return
    if not (approve or reject):
        if note or set_:
            raise typer.BadParameter("--note and --set answer an approval: add --approve or --reject")
        from taskmark.runs._control import unpause

        phases = call_api(lambda: unpause(run_id))
        typer.echo(f"resumed run {run_id}" + (f": phases {', '.join(phases)}" if phases else ""))
        return
    values = {}
    for item in set_:
        key, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected K=V; found {item!r}", param_hint="--set")
        values[key.strip()] = value
    from taskmark.runs._control import resume as resume_run

    phase = call_api(lambda: resume_run(run_id, approve=approve, note=note, values=values))
    typer.echo(f"{'approved' if approve else 'rejected'}: phase '{phase}' of run {run_id}")


@app.command()
def pause(run_id: Annotated[str, typer.Argument(help="The running run to hold.", metavar="RUN_ID")]) -> None:
    """Hold a run before its next phases (running ones finish); `taskmark resume RUN_ID` goes on."""
    from taskmark.runs._control import pause as pause_run

    call_api(lambda: pause_run(run_id))
    typer.echo(f"run {run_id} holds before its next phase; `taskmark resume {run_id}` lets it go on")


@app.command()
def cancel(run_id: Annotated[str, typer.Argument(help="The run to cancel.", metavar="RUN_ID")]) -> None:
    """Cancel a run; calls already sent are abandoned, no new ones start. Exit 2 if it cannot be."""
    from taskmark.runs._control import cancel as cancel_run

    state = call_api(lambda: cancel_run(run_id))
    typer.echo(f"run {run_id}: {state.lower()}")
