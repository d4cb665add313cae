"""Runs whose process died are marked Crashed by the server, so they can be retried.

A flow run's process sends a heartbeat event every ``HEARTBEAT_S`` seconds. Two things on
taskmark's local server turn silence into a Crashed state:

- An automation (Prefect's recipe for "zombie" runs) changes a run to Crashed when its
  heartbeats stop for the heartbeat timeout (``TASKMARK_HEARTBEAT_TIMEOUT_S``, default
  ``SILENCE_S``) without the run reaching a final state. It counts from a heartbeat the
  server received: a run whose process died while the server was down is never counted
  (its window closed while nobody was watching, and Prefect drops closed windows at start).
- :func:`crash_silent_runs`, run by the server once it has been up for the heartbeat
  timeout, catches exactly those: runs already running when the server started, from which
  it has heard no heartbeat since. A live process would have been heard by then, however
  long the server was down, since it sends a heartbeat every ``HEARTBEAT_S`` seconds.

taskmark sets both up for its local server; on another server, `ensure_crash_automation`
does the automation's half.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from pydantic import ValidationError

from taskmark.errors import TaskmarkError
from taskmark.settings import Settings

if TYPE_CHECKING:
    from uuid import UUID

    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect.events.schemas.automations import AutomationCore

__all__ = [
    "AUTOMATION_NAME",
    "HEARTBEAT_S",
    "SILENCE_S",
    "crash_silent_runs",
    "enable_heartbeats",
    "ensure_crash_automation",
    "heartbeat_timeout",
]

HEARTBEAT_S = 30
"""Seconds between a run's heartbeats (Prefect's minimum; its default is 180)."""

SILENCE_S: float = Settings.model_fields["heartbeat_timeout_s"].default
"""The default heartbeat timeout: seconds without a heartbeat after which a running flow run
is marked Crashed."""

AUTOMATION_NAME = "taskmark: mark runs without heartbeats Crashed"

_HEARTBEAT_EVENT = "prefect.flow-run.heartbeat"

logger = logging.getLogger(__name__)


def enable_heartbeats() -> None:
    """Make flow runs of this process send heartbeats every ``HEARTBEAT_S`` seconds (unless
    ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` says otherwise); Prefect sees it once its settings
    are read again (:func:`taskmark.server.connect` does that)."""
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_S))


def heartbeat_timeout() -> float:
    """Seconds without a heartbeat after which a running run is taken for crashed.

    Raises:
        TaskmarkError: ``TASKMARK_HEARTBEAT_TIMEOUT_S`` is not a number of seconds ≥ 10.
    """
    try:
        return Settings().heartbeat_timeout_s
    except ValidationError as error:
        problem = next((e for e in error.errors() if e["loc"] == ("heartbeat_timeout_s",)), None)
        if problem is None:
            raise
        found = os.environ.get("TASKMARK_HEARTBEAT_TIMEOUT_S", "")
        raise TaskmarkError(f"TASKMARK_HEARTBEAT_TIMEOUT_S: {problem['msg'].lower()}; found {found!r}") from None


def _automation(timeout: float) -> AutomationCore:
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    final = ("Completed", "Failed", "TimedOut", "Cancelled", "Crashed")  # state names: TimedOut is a Failed
    return AutomationCore(
        name=AUTOMATION_NAME,
        description="A flow run whose heartbeats stop before it ends has lost its process.",
        trigger=EventTrigger(
            after={_HEARTBEAT_EVENT},
            expect={_HEARTBEAT_EVENT, *(f"prefect.flow-run.{state}" for state in final)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=timeout),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED, message=f"No heartbeat for {timeout:g} s: the run's process is gone."
            )
        ],
    )


async def ensure_crash_automation(client: PrefectClient) -> None:
    """Create the automation that marks silent runs Crashed, once per server; bring its
    window in line with the heartbeat timeout if that was changed since.

    Raises:
        TaskmarkError: The heartbeat timeout setting is invalid.
    """
    timeout = heartbeat_timeout()
    existing = await client.read_automations_by_name(AUTOMATION_NAME)
    if not existing:
        await client.create_automation(_automation(timeout))
        return
    within = getattr(existing[0].trigger, "within", None)
    if within != timedelta(seconds=timeout):
        await client.update_automation(existing[0].id, _automation(timeout))


async def crash_silent_runs(client: PrefectClient, *, server_started: datetime) -> list[UUID]:
    """Mark Crashed the runs that were running when the server started and have sent it no
    heartbeat since: their process is gone. Call it once the server has been up for the
    heartbeat timeout, so that every live process has been heard.

    Args:
        client: A client of the server.
        server_started: When the server began to accept requests (aware).

    Returns:
        The ids of the flow runs marked Crashed.
    """
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
    from prefect.client.schemas.objects import StateType
    from prefect.states import Crashed

    page = 200
    running: list[FlowRun] = []
    while True:
        batch = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.RUNNING]))
            ),
            limit=page,
            offset=len(running),
        )
        running += batch
        if len(batch) < page:
            break
    crashed: list[UUID] = []
    for run in running:
        # A run that began (or resumed) running after the start is heard by the automation.
        if run.state is None or run.state.timestamp is None or run.state.timestamp >= server_started:
            continue
        if await _heard_since(client, run.id, server_started):
            continue
        message = (
            f"No heartbeat in the {(datetime.now(timezone.utc) - server_started).total_seconds():.0f} s since "
            "the local Prefect server started: the run's process is gone."
        )
        await client.set_flow_run_state(run.id, Crashed(message=message), force=True)
        crashed.append(run.id)
    if crashed:
        logger.warning(
            "Marked %d flow run(s) without heartbeats Crashed: %s", len(crashed), ", ".join(map(str, crashed))
        )
    return crashed


async def _heard_since(client: PrefectClient, flow_run_id: UUID, since: datetime) -> bool:
    """Whether the server has a heartbeat of ``flow_run_id`` that occurred since ``since``."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    page = await client.read_events(
        EventFilter(
            occurred=EventOccurredFilter(since=since, until=datetime.now(timezone.utc) + timedelta(minutes=1)),
            event=EventNameFilter(name=[_HEARTBEAT_EVENT]),
            resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
        ),
        limit=1,
    )
    return bool(page.events)
