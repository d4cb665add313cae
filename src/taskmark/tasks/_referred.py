"""Outputs kept across runs: what `refers:` reads, and what a context preview starts from.

A definition's latest completed run is found through the Prefect API (its flow runs are
named after it and tagged `taskmark`), and its outputs are read from its record
(taskmark.runs.record), the one home of a run's data: nothing is parsed from an artifact's text.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

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
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort

__all__ = ["CompletedRun", "latest_runs"]

_LOOK_BACK = 10
"""Completed runs of a definition looked at, newest first, for one that has a record: one
request finds them all."""

_KEPT = frozenset({"completed", "accepted_with_errors"})
"""Record outcomes whose outputs are kept: every phase formed its outputs (some, when the
definition allowed it, with checks still failing)."""


@dataclass(frozen=True)
class CompletedRun:
    """The outputs of a definition's most recent completed run, by phase."""

    definition: str
    outputs: dict[str, Any]
    flow_run_id: str


async def latest_runs(definitions: set[str]) -> dict[str, CompletedRun]:
    """The most recent completed run of each definition; those never completed are left out.

    A run counts when its flow run is COMPLETED and its record's outcome is completed or
    accepted_with_errors; the one that ended last wins. A run with no record (one run by a
    taskmark older than the record) is passed over for an older one that has one, among the
    definition's ``_LOOK_BACK`` latest completed runs; when none of them has a record, the
    definition counts as never completed.
    """
    if not definitions:
        return {}
    async with get_client() as client:
        found = await asyncio.gather(*(_latest(client, d) for d in sorted(definitions)))
    return {run.definition: run for run in found if run is not None}


async def _latest(client: PrefectClient, definition: str) -> CompletedRun | None:
    # Imported here: reading records imports the flows, which import this module.
    from taskmark.flows._compile import RUN_TAG
    from taskmark.runs._read import RecordMissing, aread_run

    runs = await client.read_flow_runs(
        flow_filter=FlowFilter(name=FlowFilterName(any_=[definition])),
        flow_run_filter=FlowRunFilter(
            parent_task_run_id=FlowRunFilterParentTaskRunId(is_null_=True),
            tags=FlowRunFilterTags(all_=[RUN_TAG]),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED])),
        ),
        sort=FlowRunSort.END_TIME_DESC,
        limit=_LOOK_BACK,
    )
    for run in runs:
        try:
            record = await aread_run(str(run.id), client=client)
        except RecordMissing:
            continue
        if record.outcome in _KEPT:
            return CompletedRun(definition, {p.name: p.outputs for p in record.phases}, record.run_id)
    return None
