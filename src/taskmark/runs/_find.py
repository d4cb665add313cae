"""Finding runs on the Prefect API: a run by its id (or a phase's), and the names of their flows.

What a run did is its record, read by :func:`taskmark.read_run`; this module only finds the
flow run it belongs to.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import FlowFilter, FlowFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound

from taskmark.errors import TaskmarkError

__all__ = ["RunNotFound", "flow_names", "parse_run_id", "read_top_run"]


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
