"""Reading runs back from the Prefect API: flow runs and subflows, task runs, events, artifacts.

Flow runs, their states and artifacts are written by the running process itself, so they
are in the API when the run ends. Task runs and events travel through Prefect's event stream
and are stored by the server's services a few seconds later (the event persister flushes
every 5 s by default). :func:`read_trace` therefore reads again, for a bounded time after
the run's end, until every record it expects has arrived.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowFilter,
    FlowFilterId,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import Artifact, FlowRun, TaskRun
from prefect.events import Event
from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventRelatedFilter
from prefect.exceptions import ObjectNotFound

from taskmark.errors import TaskmarkError
from taskmark.history._build import RunRecords, build_trace
from taskmark.history._model import RunTrace

__all__ = ["SETTLE_S", "RunNotFound", "read_trace"]

SETTLE_S = 15.0
"""How long after a run's end a trace waits for records still on their way."""

_PAGE = 200
_EVENT_PAGE = 50  # the most /events/filter returns at once


class RunNotFound(TaskmarkError, LookupError):
    """No flow run has the id asked for."""

    def __init__(self, run_id: str, reason: str = "no such run") -> None:
        self.run_id = run_id
        super().__init__(f"{run_id}: {reason}")


def parse_run_id(run_id: str) -> uuid.UUID:
    """The UUID of ``run_id``.

    Raises:
        RunNotFound: It is not a flow run id.
    """
    try:
        return uuid.UUID(run_id.strip())
    except ValueError:
        raise RunNotFound(run_id, "not a run id (expected a UUID, as `taskmark runs` shows)") from None


async def read_top_run(client: PrefectClient, run_id: str) -> FlowRun:
    """The run ``run_id`` names; a phase's subflow run id names the run it belongs to.

    Raises:
        RunNotFound: No such flow run.
    """
    try:
        run = await client.read_flow_run(parse_run_id(run_id))
        while run.parent_task_run_id is not None:
            parent = await client.read_task_run(run.parent_task_run_id)
            if parent.flow_run_id is None:
                break
            run = await client.read_flow_run(parent.flow_run_id)
    except ObjectNotFound:
        raise RunNotFound(run_id) from None
    return run


async def flow_names(client: PrefectClient, runs: Sequence[FlowRun]) -> dict[uuid.UUID, str]:
    """The name of each run's flow (a taskmark run's flow is named after its definition)."""
    ids = list({r.flow_id for r in runs})
    if not ids:
        return {}
    flows = await client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=ids)))
    return {f.id: f.name for f in flows}


async def read_subflows(client: PrefectClient, run_ids: Sequence[uuid.UUID]) -> list[FlowRun]:
    """The subflow runs (phases) of the runs ``run_ids``."""
    out: list[FlowRun] = []
    while True:
        page = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=list(run_ids))),
            limit=_PAGE,
            offset=len(out),
        )
        out += page
        if len(page) < _PAGE:
            return out


async def _task_runs(client: PrefectClient, flow_run_ids: Sequence[uuid.UUID]) -> list[TaskRun]:
    out: list[TaskRun] = []
    while True:
        page = await client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=list(flow_run_ids))),
            limit=_PAGE,
            offset=len(out),
        )
        out += page
        if len(page) < _PAGE:
            return out


async def read_llm_events(client: PrefectClient, flow_run_ids: Sequence[uuid.UUID], since: datetime) -> list[Event]:
    """Every `taskmark.llm.*` event related to one of the flow runs, since ``since``."""
    until = datetime.now(timezone.utc) + timedelta(minutes=1)
    event_filter = EventFilter(
        occurred=EventOccurredFilter(since=since, until=until),
        event=EventNameFilter(prefix=["taskmark.llm."]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{i}" for i in flow_run_ids]),
    )
    page = await client.read_events(filter=event_filter, limit=_EVENT_PAGE)
    events: list[Event] = list(page.events)
    while page.next_page is not None:
        page = await client.read_events_page(str(page.next_page))
        events += page.events
    return events


async def read_artifacts(client: PrefectClient, run_ids: Sequence[uuid.UUID]) -> list[Artifact]:
    """The artifacts the runs ``run_ids`` wrote."""
    return await client.read_artifacts(
        artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=list(run_ids)))
    )


def usage_totals(artifacts: Sequence[Artifact], definition: str) -> list[dict[str, Any]]:
    """The `total` rows of the usage table artifacts (`DEFINITION-usage`), newest first: one
    per attempt of the run that reached its end."""
    found = []
    for artifact in sorted(artifacts, key=lambda a: a.created.isoformat() if a.created else "", reverse=True):
        if artifact.key == f"{definition}-usage" and artifact.type == "table":
            rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
            if isinstance(rows, list):
                for row in rows:
                    if isinstance(row, dict) and row.get("phase") == "total":
                        found.append(row)
    return found


async def _records(client: PrefectClient, run: FlowRun, definition: str) -> RunRecords:
    subflows = await read_subflows(client, [run.id])
    ids = [run.id, *(s.id for s in subflows)]
    since = (run.start_time or run.created or datetime.now(timezone.utc)) - timedelta(minutes=1)
    task_runs, events, artifacts, states = await asyncio.gather(
        _task_runs(client, ids),
        read_llm_events(client, ids, since),
        read_artifacts(client, [run.id]),
        client.read_flow_run_states(run.id),
    )
    totals = usage_totals(artifacts, definition)
    return RunRecords(
        run=run,
        definition=definition,
        subflows=subflows,
        task_runs=task_runs,
        events=events,
        artifacts=[a.key for a in artifacts if a.key],
        usage_total=totals[0] if totals else None,
        states=states,
    )


async def read_trace(run_id: str, *, settle_s: float = SETTLE_S, client: PrefectClient | None = None) -> RunTrace:
    """A run as a tree of phases, stages and LLM calls, read back from the Prefect API.

    Args:
        run_id: The run's flow run id (a phase's subflow run id works too).
        settle_s: For a run that ended less than this many seconds ago, read again until
            every record has arrived, up to this long after its end.
        client: A Prefect client; by default one for the configured API.

    Returns:
        The trace. ``complete`` is False while the run runs, or if records were missing
        when the wait ended.

    Raises:
        RunNotFound: ``run_id`` is not the id of a flow run.

    Example:
        >>> trace = asyncio.run(read_trace("0b6f…"))
        >>> trace.totals.attempts
        3
    """
    if client is None:
        async with get_client() as own:
            return await read_trace(run_id, settle_s=settle_s, client=own)
    run = await read_top_run(client, run_id)
    definition = (await flow_names(client, [run]))[run.flow_id]
    first_read = datetime.now(timezone.utc)
    while True:
        trace = build_trace(await _records(client, run, definition), datetime.now(timezone.utc))
        if trace.complete or run.state is None or not run.state.is_final():
            return trace
        if datetime.now(timezone.utc) >= (run.end_time or first_read) + timedelta(seconds=settle_s):
            return trace
        await asyncio.sleep(0.5)
        run = await client.read_flow_run(run.id)
