"""The context bundles a run's calls used, read from their snapshots (`trace --context`)."""

from __future__ import annotations

from taskmark.context import SNAPSHOT_TAG
from taskmark.history._model import CallTrace, PhaseTrace, RunTrace

__all__ = ["with_bundles"]


def _calls(phases: list[PhaseTrace]) -> list[CallTrace]:
    return [call for phase in phases for stage in phase.stages for call in stage.calls]


async def with_bundles(trace: RunTrace) -> RunTrace:
    """``trace`` with each call's context bundle filled in from its snapshot."""
    from taskmark.tasks._snapshots import read_snapshots

    calls = _calls(trace.phases) + [c for attempt in trace.earlier_attempts for c in _calls(attempt.phases)]
    bundles = await read_snapshots({SNAPSHOT_TAG + c.context for c in calls if c.context})
    for call in calls:
        if call.context and SNAPSHOT_TAG + call.context in bundles:
            call.bundle = bundles[SNAPSHOT_TAG + call.context].to_json()
    return trace
