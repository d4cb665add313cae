"""Steering a run from outside its process: answer an approval, hold and continue, cancel."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.objects import FlowRun

from taskmark.definition import typed_value
from taskmark.errors import TaskmarkError

__all__ = ["ControlError", "cancel", "pause", "resume", "review", "unpause"]

REVIEW_FORM = "ContextReview"
"""The title of the form a phase with `review: context` waits on."""


class ControlError(TaskmarkError):
    """The run cannot be steered that way, and why."""


async def resume(run_id: str, *, approve: bool, note: str = "", values: dict[str, str] | None = None) -> str:
    """Answer the approval a run is waiting for.

    Args:
        run_id: The run, or the paused phase's own flow run.
        approve: Approve (the phase starts) or reject (the run fails with ``note``).
        note: Why.
        values: The approval's declared fields, as text; typed by the form's schema.

    Returns:
        The name of the phase that was waiting.

    Raises:
        ControlError: Nothing of that run is waiting, or a value does not fit the form.
    """
    from prefect.exceptions import PrefectHTTPStatusError

    async with get_client() as client:
        paused = await _paused_run(client, run_id)
        state = paused.state
        keyset = state.state_details.run_input_keyset if state else None
        if not keyset:
            raise ControlError(f"phase {phase_of(paused)!r} is paused, but not for an approval")
        schema = json.loads(await client.read_flow_run_input(paused.id, keyset["schema"]))
        if schema.get("title") == REVIEW_FORM:
            raise ControlError(
                f"phase {phase_of(paused)!r} waits for a context review, not an approval: answer it with --pin/--exclude, or resume it as it is"
            )
        answer: dict[str, Any] = {"decision": "approve" if approve else "reject", "note": note}
        answer.update(_typed(schema, values or {}))
        try:
            await client.resume_flow_run(paused.id, run_input=answer)
        except PrefectHTTPStatusError as exc:
            raise ControlError(
                f"the answer does not fit the approval form: {exc.response.json().get('detail', exc)}"
            ) from None
    return phase_of(paused)


async def review(run_id: str, *, pin: list[str], exclude: list[str], note: str = "") -> str:
    """Answer the context review a run is waiting for: items to pin, items to exclude.

    Returns:
        The name of the phase that was waiting.

    Raises:
        ControlError: Nothing of that run waits for a review, or an id is not one of its items.
    """
    from prefect.exceptions import PrefectHTTPStatusError

    async with get_client() as client:
        paused = await _paused_run(client, run_id)
        keyset = paused.state.state_details.run_input_keyset if paused.state else None
        schema = json.loads(await client.read_flow_run_input(paused.id, keyset["schema"])) if keyset else {}
        if schema.get("title") != REVIEW_FORM:
            raise ControlError(f"phase {phase_of(paused)!r} is not waiting for a context review")
        items = schema.get("properties", {}).get("pin", {}).get("items", {}).get("enum")
        unknown = [i for i in (*pin, *exclude) if items is not None and i not in items]
        if unknown:
            raise ControlError(
                f"{', '.join(unknown)}: not an item of this review; its items: {', '.join(items) or 'none'}"
            )
        try:
            await client.resume_flow_run(paused.id, run_input={"pin": pin, "exclude": exclude, "note": note})
        except PrefectHTTPStatusError as exc:
            raise ControlError(
                f"the answer does not fit the review form: {exc.response.json().get('detail', exc)}"
            ) from None
    return phase_of(paused)


async def pause(run_id: str) -> None:
    """Ask a running run to hold before each phase that has not started yet.

    Phases already running finish; `unpause` (or the UI's Resume on each held phase) lets
    the rest start.

    Raises:
        ControlError: The run is unknown or not running.
    """
    from taskmark.flows._schedule import PAUSE_TAG

    async with get_client() as client:
        run = await _read(client, run_id)
        if run.state is None or not run.state.is_running():
            raise ControlError(
                f"flow run {run_id} is {run.state.type.value if run.state else 'unknown'}; only a running run can be paused"
            )
        if PAUSE_TAG not in run.tags:
            await client.update_flow_run(run.id, tags=[*run.tags, PAUSE_TAG])


async def unpause(run_id: str) -> list[str]:
    """Let a held run go on: the pause request is withdrawn and its held phases resume; a
    phase waiting for a context review goes on with its context as it is.

    Returns:
        The phases that were resumed.

    Raises:
        ControlError: The run is unknown, or neither held nor asked to hold.
    """
    from taskmark.flows._schedule import PAUSE_TAG

    async with get_client() as client:
        run = await _read(client, run_id)
        held, reviews = [], []
        for child in await _paused_children(client, run):
            keyset = child.state.state_details.run_input_keyset if child.state else None
            if not keyset:
                held.append(child)
            elif json.loads(await client.read_flow_run_input(child.id, keyset["schema"])).get("title") == REVIEW_FORM:
                reviews.append(child)
        if PAUSE_TAG not in run.tags and not held and not reviews:
            raise ControlError(f"flow run {run_id} is not paused")
        if PAUSE_TAG in run.tags:
            await client.update_flow_run(run.id, tags=[t for t in run.tags if t != PAUSE_TAG])
        for child in held:
            await client.resume_flow_run(child.id)
        for child in reviews:
            await client.resume_flow_run(child.id, run_input={"pin": [], "exclude": [], "note": ""})
    return [phase_of(c) for c in (*held, *reviews)]


async def cancel(run_id: str) -> str:
    """Ask for a run to be cancelled; its state type afterwards (CANCELLING or CANCELLED).

    Raises:
        ControlError: The run is unknown or already finished.
    """
    from prefect.states import Cancelling

    async with get_client() as client:
        flow_run = await _read(client, run_id)
        if flow_run.state is not None and flow_run.state.is_final():
            raise ControlError(f"flow run {run_id} already ended {flow_run.state.type.value}")
        result: Any = await client.set_flow_run_state(
            flow_run.id, Cancelling(message="Cancelled by taskmark"), force=True
        )
    return result.state.type.value if result.state else "CANCELLING"


async def _read(client: PrefectClient, run_id: str) -> FlowRun:
    from prefect.exceptions import ObjectNotFound

    try:
        return await client.read_flow_run(UUID(run_id))
    except (ValueError, ObjectNotFound):
        raise ControlError(f"no flow run {run_id!r} on {client.api_url}") from None


async def _paused_children(client: PrefectClient, run: FlowRun) -> list[FlowRun]:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    return await client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED])),
        )
    )


async def _paused_run(client: PrefectClient, run_id: str) -> FlowRun:
    """The run itself if it waits for an approval, else its one phase that does."""
    run = await _read(client, run_id)
    if run.state is not None and run.state.is_paused():
        return run
    children = [
        c for c in await _paused_children(client, run) if c.state is not None and c.state.state_details.run_input_keyset
    ]
    if not children:
        state = run.state.type.value if run.state else "unknown"
        raise ControlError(f"flow run {run_id} is not waiting for an approval (it is {state})")
    if len(children) > 1:
        names = ", ".join(phase_of(c) for c in children)
        raise ControlError(f"several phases wait for approval ({names}); resume one by its own flow run id")
    return children[0]


def phase_of(run: FlowRun) -> str:
    """The phase a subflow run runs (its ``phase`` parameter)."""
    return str(run.parameters.get("phase", run.name))


def _typed(schema: dict[str, Any], values: dict[str, str]) -> dict[str, Any]:
    """``values`` typed as the form's JSON Schema says: strings as given, the rest as JSON."""
    properties = schema.get("properties", {})
    typed: dict[str, Any] = {}
    for key, raw in values.items():
        if key not in properties or key in ("decision", "note"):
            known = ", ".join(k for k in properties if k not in ("decision", "note")) or "none"
            raise ControlError(f"unknown approval field '{key}'; this approval's fields: {known}")
        try:
            typed[key] = typed_value(properties[key], raw, key)
        except ValueError as error:
            raise ControlError(str(error)) from None
    return typed
