"""Runs whose process died are marked Crashed by the server, so they can be retried.

A flow run's process sends a heartbeat event every ``HEARTBEAT_S`` seconds. An automation on
the server (Prefect's recipe for "zombie" runs) changes a run to Crashed when its heartbeats
stop for ``SILENCE_S`` seconds without the run reaching a final state. taskmark sets both up
for its local server; on another server, `ensure_crash_automation` does the server's half.
"""

from __future__ import annotations

import os
from datetime import timedelta

from prefect.client.orchestration import PrefectClient

__all__ = ["AUTOMATION_NAME", "HEARTBEAT_S", "SILENCE_S", "enable_heartbeats", "ensure_crash_automation"]

HEARTBEAT_S = 30
"""Seconds between a run's heartbeats (Prefect's minimum; its default is 180)."""

SILENCE_S = 90
"""Seconds without a heartbeat after which a running flow run is marked Crashed."""

AUTOMATION_NAME = "taskmark: mark runs without heartbeats Crashed"


def enable_heartbeats() -> None:
    """Make flow runs of this process send heartbeats every ``HEARTBEAT_S`` seconds (unless
    ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` says otherwise); call before the settings are read."""
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_S))


async def ensure_crash_automation(client: PrefectClient) -> None:
    """Create the automation that marks silent runs Crashed, once per server."""
    if await client.read_automations_by_name(AUTOMATION_NAME):
        return
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    final = ("Completed", "Failed", "TimedOut", "Cancelled", "Crashed")  # state names: TimedOut is a Failed
    automation = AutomationCore(
        name=AUTOMATION_NAME,
        description="A flow run whose heartbeats stop before it ends has lost its process.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{state}" for state in final)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=SILENCE_S),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED, message=f"No heartbeat for {SILENCE_S} s: the run's process is gone."
            )
        ],
    )
    await client.create_automation(automation)
