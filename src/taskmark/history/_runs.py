"""Listing runs, newest first, with their LLM calls and cost."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterParentTaskRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.client.schemas.sorting import FlowRunSort

from taskmark.blocks import COMPLETED_EVENT, FAILED_EVENT
from taskmark.flows._run import RUN_TAG
from taskmark.history._model import RunSummary
from taskmark.history._read import flow_names, read_artifacts, read_llm_events, read_subflows, usage_totals

__all__ = ["STATES", "read_runs"]

STATES = tuple(s.value for s in StateType)
"""The states `--state` accepts: Prefect's state types."""


def _duration(run: FlowRun, now: datetime) -> float | None:
    if run.start_time is None:
        return None
    end = run.end_time or (now if run.state is None or not run.state.is_final() else None)
    return round((end - run.start_time).total_seconds(), 3) if end else None


async def _usage_from_events(client: PrefectClient, run: FlowRun, summary: RunSummary) -> None:
    """Calls and cost of a run that wrote no usage table (it did not reach its end)."""
    subflows = await read_subflows(client, [run.id])
    since = (run.start_time or run.created or datetime.now(timezone.utc)) - timedelta(minutes=1)
    events = await read_llm_events(client, [s.id for s in subflows], since) if subflows else []
    summary.calls = sum(1 for e in events if e.event == COMPLETED_EVENT)
    summary.failed_calls = sum(1 for e in events if e.event == FAILED_EVENT)
    summary.cost_usd = sum(float(e.payload.get("cost_usd") or 0.0) for e in events if e.event == COMPLETED_EVENT)
    summary.usage_from = "events"


async def read_runs(
    *,
    definition: str | None = None,
    states: Sequence[str] = (),
    limit: int = 20,
    client: PrefectClient | None = None,
) -> list[RunSummary]:
    """The latest runs (top-level flow runs), newest first.

    Args:
        definition: Only runs of this definition (its flow's name).
        states: Only runs in one of these Prefect state types (``COMPLETED``, ``FAILED``, ...).
        limit: At most this many.
        client: A Prefect client; by default one for the configured API.

    Returns:
        One summary per run. Calls and cost are the sums of the run's usage artifacts (one per
        attempt that reached its end); for a run without one (it crashed, or is running), from
        its `taskmark.llm.*` events.

    Raises:
        ValueError: For a state that is not a Prefect state type.

    Example:
        >>> [r.state for r in asyncio.run(read_runs(definition="daily-market-analysis", limit=2))]
        ['COMPLETED', 'FAILED']
    """
    unknown = [s for s in states if s.upper() not in STATES]
    if unknown:
        raise ValueError(f"unknown state {unknown[0]!r}; expected one of {', '.join(STATES)}")
    if client is None:
        async with get_client() as own:
            return await read_runs(definition=definition, states=states, limit=limit, client=own)
    run_filter = FlowRunFilter(
        parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True), tags=FlowRunFilterTags(all_=[RUN_TAG])
    )
    if states:
        run_filter.state = FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s.upper()) for s in states]))
    runs = await client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[definition])) if definition else None,
        flow_run_filter=run_filter,
        sort=FlowRunSort.EXPECTED_START_TIME_DESC,
        limit=limit,
    )
    names = await flow_names(client, runs)
    now = datetime.now(timezone.utc)
    out = {
        str(r.id): RunSummary(
            id=str(r.id),
            name=r.name,
            definition=names.get(r.flow_id, "?"),
            state=r.state_type.value if r.state_type else "PENDING",
            state_name=r.state_name,
            start=r.start_time,
            duration_s=_duration(r, now),
        )
        for r in runs
    }
    artifacts = await read_artifacts(client, [r.id for r in runs]) if runs else []
    for summary in out.values():
        totals = usage_totals([a for a in artifacts if str(a.flow_run_id) == summary.id], summary.definition)
        if totals:
            summary.calls = sum(int(t.get("calls") or 0) for t in totals)
            summary.failed_calls = sum(int(t.get("failed calls") or 0) for t in totals)
            summary.cost_usd = sum(float(t.get("cost (USD)") or 0.0) for t in totals)
            summary.usage_from = "artifact"
    await asyncio.gather(
        *(_usage_from_events(client, r, out[str(r.id)]) for r in runs if out[str(r.id)].usage_from is None)
    )
    return list(out.values())
