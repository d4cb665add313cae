"""The contract of :mod:`taskmark._engine` with Prefect's server: what taskmark writes by hand
(phases' subflow runs, pure stages' task runs) is what Prefect's own engine would have written,
as the server and its UI read it. Run on the lowest and the newest supported Prefect (CI)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)
from prefect.client.schemas.objects import FlowRun
from prefect.states import Cancelling

from support.fake_openai import FakeOpenAIServer, Reply
from support.waiting import eventually
from taskmark import aread_run
from taskmark.blocks import ProviderOverrides
from taskmark.runs._run import arun

from .conftest import flow_run_of, prompt_of

Write = Callable[[str, str], Path]

DEADLINE_S = 120.0
"""How long a run may take to react before the test fails (a deadline, not a measurement)."""

DAG = """# Contract

```yaml
name: {name}
```

## Phase: Start

### Steps
- agent: a - start

## Phase: Slow
dependsOn: Start

### Steps
- agent: a - slow

## Phase: Side
dependsOn: Start

### Steps
- agent: a - side

## Phase: After
dependsOn: [Slow, Side]

### Steps
- agent: a - after
"""

EDGES = {"Start": [], "Slow": ["Start"], "Side": ["Start"], "After": ["Side", "Slow"]}


def _held(word: str, gate: threading.Event) -> Callable[[Any], Reply]:
    """A reply rule: the call whose prompt ends with ``word`` is answered once ``gate`` is set."""

    def reply(request: Any) -> Reply:
        if prompt_of(request).endswith(word):
            gate.wait(DEADLINE_S)
        return Reply(content="ok")

    return reply


async def _phases(parent: FlowRun) -> dict[str, FlowRun]:
    async with get_client() as client:
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id]))
        )
    return {c.parameters["phase"]: c for c in children}


async def _graph(parent: FlowRun) -> dict[str, list[str]]:
    """The UI's run graph of ``parent``: each node's phase and its upstream phases."""
    phase_of = {str(run.id): name for name, run in (await _phases(parent)).items()}
    async with get_client() as client:
        response = await client.request("GET", "/flow_runs/{id}/graph-v2", path_params={"id": parent.id})
    nodes = dict(response.json()["nodes"])
    graph = {
        phase_of.get(n, n): sorted(phase_of.get(e["id"], e["id"]) for e in node["parents"]) for n, node in nodes.items()
    }
    assert len(graph) == len(nodes), nodes  # each phase once
    return graph


async def test_the_run_graph_draws_each_phase_once_with_its_edges_while_it_runs_and_after(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    gate = threading.Event()
    llm.default = _held("slow", gate)
    path = write("graph", DAG.format(name="contract-graph"))
    running = asyncio.ensure_future(arun(path, overrides=overrides))
    try:
        parent = await eventually(lambda: flow_run_of("contract-graph"), interval=0.5, message="the run")
        await eventually(lambda: any(prompt_of(r).endswith("slow") for r in llm.requests), message="Slow's call")

        async def drawn() -> bool:
            assert await _graph(parent) == EDGES
            return True

        await eventually(drawn, interval=0.5, message="the live graph")  # Slow runs, After waits
        live = await _phases(parent)
        assert (live["Slow"].state_name, live["After"].state_name) == ("Running", "Pending")
    finally:
        gate.set()
    result = await asyncio.wait_for(running, DEADLINE_S)
    assert result.state == "COMPLETED"
    assert await _graph(parent) == EDGES


async def test_every_state_taskmark_writes_is_accepted_in_order(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.default = lambda r: Reply(status=400, error_message="bad") if prompt_of(r).endswith("slow") else Reply()
    path = write("states", DAG.format(name="contract-states"))
    result = await arun(path, overrides=overrides)
    assert result.state == "FAILED"
    assert result.flow_run_id is not None
    parent = await flow_run_of("contract-states")
    assert parent is not None
    phases = await _phases(parent)
    async with get_client() as client:
        histories = {
            name: [s.name for s in sorted(await client.read_flow_run_states(run.id), key=lambda s: s.timestamp)]
            for name, run in phases.items()
        }
        tracking = {
            t.name: t.state_name
            for t in await client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[parent.id]))
            )
        }
    # A state the server rejected would be missing here; one it changed would be another.
    assert histories == {
        "Start": ["Running", "Completed"],  # created Running: it starts with the run
        "Slow": ["Pending", "Running", "Failed"],
        "Side": ["Pending", "Running", "Completed"],
        "After": ["Pending", "NotRun"],
    }
    # Each phase's task run in the parent follows its subflow run, as under Prefect's engine.
    assert tracking == {f"contract-states: {name}": run.state_name for name, run in phases.items()}

    # Each stage is a task run of its phase (pure stages written by hand, the call by Prefect's
    # engine), each Pending, Running, then Completed.
    record = await aread_run(result.flow_run_id)
    side = next(p for p in record.phases if p.name == "Side")
    expected = {f"Side/{s.name}" for s in side.stages if s.state != "skipped"} | {"Side/inference: a"}

    async def stage_histories() -> dict[str, list[str]]:
        async with get_client() as client:
            stages = await client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[phases["Side"].id]))
            )
            found = {
                t.name: [s.name for s in sorted(await client.read_task_run_states(t.id), key=lambda s: s.timestamp)]
                for t in stages
            }
        assert set(found) == expected and all(states[-1] == "Completed" for states in found.values()), found
        return found

    found = await eventually(stage_histories, message="the stages' task runs")  # they arrive as events
    assert len(expected) >= 5  # ingestion, promptTemplating, inference, parsing, integration and the call
    assert found == {name: ["Pending", "Running", "Completed"] for name in expected}


async def test_each_phase_that_runs_sends_heartbeats_as_a_flow_run_does(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    llm.default = lambda r: Reply(status=400, error_message="bad") if prompt_of(r).endswith("slow") else Reply()
    path = write("beats", DAG.format(name="contract-beats"))
    began = datetime.now(timezone.utc)
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        result = await arun(path, overrides=overrides)
    assert result.state == "FAILED"
    parent = await flow_run_of("contract-beats")
    assert parent is not None
    phases = await _phases(parent)

    async def beating() -> set[str]:
        async with get_client() as client:
            page = await client.read_events(
                EventFilter(
                    occurred=EventOccurredFilter(since=began, until=datetime.now(timezone.utc) + timedelta(minutes=1)),
                    event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
                    resource=EventResourceFilter(id=[f"prefect.flow-run.{r.id}" for r in phases.values()]),
                ),
                limit=50,
            )
        by_id = {f"prefect.flow-run.{r.id}": name for name, r in phases.items()}
        heard = {by_id[e.resource.id] for e in page.events}
        assert heard == {"Start", "Slow", "Side"}, heard  # After never ran
        flows = {e.resource.id: {r.id for r in e.related if r.role == "flow"} for e in page.events}
        assert {n: flows[f"prefect.flow-run.{phases[n].id}"] for n in heard} == {
            n: {f"prefect.flow.{phases[n].flow_id}"} for n in heard
        }, [e.related for e in page.events]
        return heard

    await eventually(beating, message="the phases' heartbeats")  # the server stores events in batches


async def test_cancelling_as_the_ui_does_stops_the_running_phases(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    gate = threading.Event()  # Slow's call is answered only once the test is over
    llm.default = _held("slow", gate)
    path = write("cancel", DAG.format(name="contract-cancel"))
    try:
        running = asyncio.ensure_future(arun(path, overrides=overrides))
        parent = await eventually(lambda: flow_run_of("contract-cancel"), interval=0.5, message="the run")
        await eventually(lambda: any(prompt_of(r).endswith("slow") for r in llm.requests), message="Slow's call")

        async def side_done() -> bool:
            return (await _phases(parent))["Side"].state_name == "Completed"

        await eventually(side_done, interval=0.5, message="Side to complete")  # Slow alone is running
        calls = llm.count
        async with get_client() as client:
            # The UI's Cancel button: the parent set Cancelling, not forced.
            answer = await client.set_flow_run_state(parent.id, Cancelling())
        assert answer.status.value == "ACCEPT", answer.details
        result = await asyncio.wait_for(running, DEADLINE_S)
    finally:
        gate.set()
    assert result.state == "CANCELLED"
    phases = await _phases(parent)
    assert {name: run.state_type.value if run.state_type else None for name, run in phases.items()} == {
        "Start": "COMPLETED",
        "Slow": "CANCELLED",
        "Side": "COMPLETED",
        "After": "CANCELLED",
    }
    assert llm.count == calls  # nothing was asked after the cancellation
    async with get_client() as client:
        slow = await client.read_flow_run_states(phases["Slow"].id)
    assert [s.name for s in sorted(slow, key=lambda s: s.timestamp)] == ["Pending", "Running", "Cancelled"]
