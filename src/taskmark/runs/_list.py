"""Listing runs, newest first, with their LLM calls and cost from their run records."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timezone

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

from taskmark.flows._compile import RUN_TAG
from taskmark.runs._find import flow_names
from taskmark.runs._read import aread_runs
from taskmark.runs._summary import RunSummary
from taskmark.runs.record import RunRecord

__all__ = ["STATES", "read_runs"]

STATES = tuple(s.value for s in StateType)
"""The states `--state` accepts: Prefect's state types."""


def _duration(run: FlowRun, now: datetime) -> float | None:
    if run.start_time is None:
        return None
    end = run.end_time or (now if run.state is None or not run.state.is_final() else None)
    return round((end - run.start_time).total_seconds(), 3) if end else None


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
        One summary per run. Its outcome, calls and cost are its record's (as
        :func:`taskmark.read_run` reads it, every attempt included, so far for a live run); None
        for a run without a record.

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
    names, records = await asyncio.gather(flow_names(client, runs), aread_runs(runs, client=client))
    now = datetime.now(timezone.utc)
    return [_summary(r, names.get(r.flow_id, "?"), records[r.id], now) for r in runs]


def _summary(run: FlowRun, definition: str, record: RunRecord | None, now: datetime) -> RunSummary:
    summary = RunSummary(
        id=str(run.id),
        name=run.name,
        definition=definition,
        state=run.state_type.value if run.state_type else "PENDING",
        state_name=run.state_name,
        start=run.start_time,
        duration_s=_duration(run, now),
    )
    if record is not None:
        totals = record.totals
        summary.outcome = record.outcome
        summary.calls, summary.failed_calls = totals.calls, totals.failed_calls
        summary.cost_usd, summary.unpriced_calls = totals.cost_usd, totals.unpriced_calls
    return summary
