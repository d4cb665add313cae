"""Running one claimed seed: in this process, or through a Prefect deployment.

Both ways end in an :class:`Outcome` holding the files the run leaves in ``complete/ID``.
A run that fails is an outcome too (state ``FAILED``, ``CRASHED``, ...); only
cancellation (the watcher stopping) escapes, leaving the run in ``current/`` to resume.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast
from uuid import UUID

from taskmark.watch._seed import Seed

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

__all__ = ["Outcome", "error_outcome", "run_locally", "run_through_deployment"]


@dataclass
class Outcome:
    """How a run ended, and what it leaves behind."""

    state: str
    """``COMPLETED``, ``FAILED``, ``CRASHED``, ``CANCELLED``, or ``ERROR`` (the watcher could not run it)."""
    message: str | None
    """The final state's message, or the error."""
    duration_s: float
    """Wall time, as the watcher saw it (for a deployment: the flow run's run time)."""
    flow_run_id: str | None = None
    """The Prefect flow run, when one was made."""
    outcome: str | None = None
    """How the run's record says it ended (``accepted_with_errors`` where Prefect says
    ``COMPLETED``); None without a record."""
    usage: dict[str, Any] | None = None
    """The run record's totals (calls, failed and cached calls, requests, tokens, cost), every
    attempt counted once; None without a record."""
    phases: dict[str, Any] | None = None
    """Each phase's state, duration, outputs and error, when known."""
    files: dict[str, str] = field(default_factory=dict)
    """Further files for ``complete/ID``: ``outputs.json``, ``summary.md``, ``usage.json``."""

    def summary(self, **extra: Any) -> dict[str, Any]:  # noqa: ANN401
        """The JSON object of ``summary.json``."""
        return {
            **extra,
            "state": self.state,
            "outcome": self.outcome,
            "message": self.message,
            "flow_run_id": self.flow_run_id,
            "duration_s": round(self.duration_s, 3),
            "usage": self.usage,
            "phases": self.phases,
        }


def error_outcome(exc: BaseException, started: float, flow_run_id: str | None = None) -> Outcome:
    """The outcome of a run the watcher could not carry out (no server, a bad deployment...)."""
    return Outcome(
        state="ERROR",
        message=f"{type(exc).__name__}: {exc}",
        duration_s=time.perf_counter() - started,
        flow_run_id=flow_run_id,
    )


async def run_locally(seed: Seed | None, *, flow_run_id: str | None, created: Callable[[str], None]) -> Outcome:
    """Run ``seed`` in this process with :func:`taskmark.arun`, against the current Prefect API.

    Its flow run's id goes to ``created`` as soon as it exists. With ``flow_run_id`` (the run a
    previous watcher started and did not finish), that run is retried instead: every answer it
    already had is reused, nothing is paid twice.
    """
    from taskmark.runs._run import aretry, arun

    if flow_run_id is not None:
        retried = await aretry(flow_run_id, orphaned=True)
        assert retried is not None  # a local run has no deployment
        result = retried
    else:
        assert seed is not None  # a new local run without a valid seed is filed as ERROR first
        result = await arun(seed.definition, seed.params, on_created=created)
    phases = {name: phase.model_dump(mode="json") for name, phase in result.phases.items()}
    outputs = {name: phase.outputs for name, phase in result.phases.items()}
    outcome = Outcome(
        state=result.state,
        message=result.message,
        duration_s=result.duration_s,
        flow_run_id=result.flow_run_id,
        phases=phases,
        files={"outputs.json": json.dumps(outputs, indent=2, default=str) + "\n"},
    )
    return await _with_record(outcome)


async def run_through_deployment(
    deployment: str,
    params: dict[str, Any],
    *,
    run_name: str,
    idempotency_key: str,
    flow_run_id: str | None,
    created: Callable[[str], None],
) -> Outcome:
    """Run through the deployment ``FLOW/DEPLOYMENT`` and wait until its flow run ends.

    The flow run is created with ``idempotency_key``: asking again (a restarted watcher
    that had not yet recorded the id) returns the same run instead of a second one. Once
    known, its id is handed to ``created`` to be recorded; with ``flow_run_id`` given,
    nothing is created and that run is waited for. Waiting follows the run's state events
    (Prefect's ``wait_for_flow_run``), with no time limit.
    """
    from prefect.deployments import arun_deployment
    from prefect.flow_runs import wait_for_flow_run

    if flow_run_id is None:
        flow_run = await arun_deployment(
            deployment,
            parameters=params,
            flow_run_name=run_name,
            idempotency_key=idempotency_key,
            timeout=0,  # return at once; wait below, with the id recorded
            as_subflow=False,
        )
        flow_run_id = str(flow_run.id)
        created(flow_run_id)
    finished = cast("FlowRun", await wait_for_flow_run(UUID(flow_run_id), timeout=None))
    state = finished.state
    outcome = Outcome(
        state=state.type.value if state is not None else "UNKNOWN",
        message=state.message if state is not None else None,
        duration_s=finished.total_run_time.total_seconds(),
        flow_run_id=flow_run_id,
    )
    outcome.files.update(await _artifacts(UUID(flow_run_id)))
    return await _with_record(outcome)


async def _with_record(outcome: Outcome) -> Outcome:
    """``outcome`` with its run's outcome and totals from the run's record.

    Read once the run has returned, when its record is complete: a run retried after a crash
    counts the requests of every attempt, each once, as :func:`taskmark.read_run` does. A run
    without a record (a worker with an older taskmark) keeps neither.
    """
    from taskmark.runs._read import RecordMissing, aread_run

    if outcome.flow_run_id is None:
        return outcome
    try:
        record = await aread_run(outcome.flow_run_id)
    except RecordMissing:
        return outcome
    outcome.outcome = record.outcome
    outcome.usage = record.totals.model_dump(mode="json")
    return outcome


async def _artifacts(flow_run_id: UUID) -> dict[str, str]:
    """The run's outputs summary (markdown) and usage table, as the flow wrote them."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    files: dict[str, str] = {}
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    for artifact in artifacts:
        if artifact.type == "markdown" and isinstance(artifact.data, str):
            files["summary.md"] = artifact.data
        elif artifact.type == "table":
            rows = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
            files["usage.json"] = json.dumps(rows, indent=2, default=str) + "\n"
    return files
