"""Reading a run's record back from the Prefect API: the one reader of a run's data.

Two requests: the flow run (its state says whether it is over, and how, when its process
could not say: crashed, cancelled), and its ``taskmark-record`` artifacts (the run's header
and each phase attempt, see taskmark.flows._recorder). Nothing is parsed from text, nothing
guessed from names, and nothing waits for records on their way: the run's process wrote its
last part before its final state. A list of runs reads all their records in one more
query (:func:`aread_runs`), not one per run.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType
from prefect.client.schemas.objects import Artifact, FlowRun
from prefect.client.schemas.sorting import ArtifactSort

from taskmark.errors import TaskmarkError
from taskmark.runs._find import read_top_run
from taskmark.runs.record import (
    FINAL_OUTCOMES,
    RECORD_ARTIFACT_TYPE,
    DefinitionRef,
    Outcome,
    PhaseRecord,
    RunRecord,
)

__all__ = ["RecordMissing", "aread_run", "aread_runs", "read_run", "record_of", "records_of"]

_PAGE = 200

_STOPPED: dict[str, Outcome] = {"CANCELLED": "cancelled", "CRASHED": "crashed"}
"""Flow-run states that a run's own process could not record: they override the record."""


class RecordMissing(TaskmarkError, LookupError):
    """A run exists but has no record: an older taskmark ran it, or it never started."""


async def _parts(client: PrefectClient, run_ids: Sequence[UUID]) -> list[Artifact]:
    """The record parts of the runs ``run_ids``, oldest first.

    Pages run newest first, so a part created while reading pushes the next page down by
    one: a part read twice is kept once (never counted twice), and none is missed.
    """
    found: dict[UUID, Artifact] = {}
    offset = 0
    while True:
        page = await client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=list(run_ids)),
                type=ArtifactFilterType(any_=[RECORD_ARTIFACT_TYPE]),
            ),
            sort=ArtifactSort.CREATED_DESC,
            limit=_PAGE,
            offset=offset,
        )
        for artifact in page:
            found.setdefault(artifact.id, artifact)
        offset += len(page)
        if len(page) < _PAGE:
            return list(found.values())[::-1]


def record_of(run: FlowRun, parts: list[dict[str, Any]]) -> RunRecord:
    """The record of ``run`` from its parts, oldest first.

    The latest attempt's header says what ran and how it ended; each phase's latest attempt
    is the phase, earlier attempts are kept for what they cost. A run whose flow run was
    crashed or cancelled from outside takes that outcome, and so do its unfinished phases.

    Raises:
        RecordMissing: ``parts`` holds no header.
    """
    headers = [p for p in parts if p.get("part") == "run"]
    if not headers:
        state = run.state.type.value if run.state is not None else None
        if state in (None, "SCHEDULED", "PENDING"):
            raise RecordMissing(f"run {run.id} has not started yet ({(state or 'no state').lower()})")
        if state == "RUNNING":
            raise RecordMissing(
                f"run {run.id} has no run record yet: it started a moment ago, or an older taskmark runs it"
            )
        raise RecordMissing(f"run {run.id} has no run record: it was recorded by a taskmark older than the run record")
    header = max(headers, key=lambda p: int(p.get("attempt", 1)))
    attempt = int(header.get("attempt", 1))
    order: list[str] = list(header.get("phase_order", []))
    phases: dict[str, PhaseRecord] = {}
    earlier: list[PhaseRecord] = []
    for part in sorted((p for p in parts if p.get("part") == "phase"), key=lambda p: int(p.get("run_attempt", 1))):
        phase = PhaseRecord.model_validate(part)
        if phase.name in phases:
            earlier.append(phases[phase.name])
        phases[phase.name] = phase
    state = run.state.type.value if run.state is not None else None
    outcome: Outcome = header.get("outcome", "running")
    error = header.get("error")
    if state in _STOPPED:
        outcome, error = _STOPPED[state], (run.state.message if run.state else None) or error
    elif outcome not in FINAL_OUTCOMES and run.state is not None and run.state.is_final():
        outcome = "completed" if run.state.is_completed() else "failed"
        error = error or run.state.message
    if run.state is not None and run.state.is_final():
        # A phase whose end was never written (its process stopped first: killed, cancelled,
        # or Prefect's own flow timeout behind a stalled server) ended with its run.
        for name, phase in phases.items():
            if phase.state in ("pending", "running"):
                phases[name] = phase.model_copy(update={"state": outcome})

    for name in order:  # phases that never started: pending while the run goes on
        if name not in phases:
            waiting = run.state is None or not run.state.is_final()
            phases[name] = PhaseRecord(name=name, state="pending" if waiting else "not_run", run_attempt=attempt)

    def rank(phase: PhaseRecord) -> tuple[int, int]:
        return phase.run_attempt, order.index(phase.name) if phase.name in order else len(order)

    return RunRecord.model_validate(
        {
            **header,
            "definition": DefinitionRef.model_validate(header.get("definition") or {"name": "?"}),
            "outcome": outcome,
            "error": error,
            "attempts": max(attempt, run.run_count or 1),
            "ended": header.get("ended") or run.end_time,
            "phases": sorted(phases.values(), key=lambda p: rank(p)[1]),
            "earlier": sorted(earlier, key=rank),
        }
    )


async def aread_run(run_id: str, *, client: PrefectClient | None = None) -> RunRecord:
    """The record of the run ``run_id`` (a phase's subflow run id names its run), as it
    stands: complete for a finished run, the finished stages and running phases of a live one.

    Raises:
        taskmark.runs.RunNotFound: No flow run has that id.
        RecordMissing: The run has no record (an older taskmark ran it).
    """
    if client is None:
        async with get_client() as own:
            return await aread_run(run_id, client=own)
    run = await read_top_run(client, run_id)
    parts = [a.data for a in await _parts(client, [run.id]) if isinstance(a.data, dict)]
    return record_of(run, parts)


def records_of(runs: Sequence[FlowRun], parts: Sequence[Artifact]) -> dict[UUID, RunRecord | None]:
    """The record of each of ``runs`` from the record parts of them all, oldest first; None
    for a run that has none (an older taskmark ran it, or it never started)."""
    grouped: dict[UUID, list[dict[str, Any]]] = {run.id: [] for run in runs}
    for part in parts:
        if part.flow_run_id in grouped and isinstance(part.data, dict):
            grouped[part.flow_run_id].append(part.data)
    records: dict[UUID, RunRecord | None] = {}
    for run in runs:
        try:
            records[run.id] = record_of(run, grouped[run.id])
        except RecordMissing:
            records[run.id] = None
    return records


async def aread_runs(runs: Sequence[FlowRun], *, client: PrefectClient) -> dict[UUID, RunRecord | None]:
    """The records of ``runs`` (top-level flow runs, as read), by flow run id; None for a run
    with no record.

    One paged query for all their parts: a list of runs (`taskmark runs`) costs a request per
    200 parts, not one per run.
    """
    if not runs:
        return {}
    return records_of(runs, await _parts(client, [run.id for run in runs]))


def read_run(run_id: str) -> RunRecord:
    """:func:`aread_run` from synchronous code.

    Example:
        >>> record = read_run("4b6c...")
        >>> record.outcome, record.totals.cost_usd
    """
    import asyncio

    return asyncio.run(aread_run(run_id))
