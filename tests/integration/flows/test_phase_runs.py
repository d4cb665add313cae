"""What Prefect records of a run's phases: one subflow run each, in a final state, the DAG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)

from support.fake_openai import FakeOpenAIServer, Reply
from support.waiting import eventually
from taskmark.blocks import ProviderOverrides
from taskmark.runs._run import arun

from .conftest import answer_by_prompt

Write = Callable[[str, str], Path]

HEAD = "# T\n\n```yaml\nname: {name}\nrequirements:\n  topic: {{type: string, default: tides}}\n```\n\n"


async def test_every_phase_is_a_final_subflow_run_and_the_graph_has_the_dependencies(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.default = answer_by_prompt({"Broken": Reply(status=400, error_message="bad request")})
    path = write(
        "dag",
        HEAD.format(name="phase-runs-dag")
        + "".join(
            f"## Phase: {n}\n{d}\n### Steps\n- agent: a - {n} on {{{{ topic }}}}\n\n"
            for n, d in (
                ("Start", ""),
                ("Broken", "dependsOn: Start\n"),
                ("Side", "dependsOn: Start\n"),
                ("After", "dependsOn: [Broken, Side]\n"),
            )
        ),
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "FAILED"
    assert {n: p.state for n, p in result.phases.items()} == {
        "Start": "COMPLETED",
        "Broken": "FAILED",
        "Side": "COMPLETED",
        "After": "NOT_RUN",
    }
    async with get_client() as client:
        parent = await client.read_flow_run(result.flow_run_id)  # type: ignore[arg-type]
        subflows = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent.id]))
        )
        tracking = await client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[parent.id]))
        )
    flows = {f.id: f.name for f in await _flows({r.flow_id for r in subflows})}
    assert sorted(r.parameters["phase"] for r in subflows) == ["After", "Broken", "Side", "Start"]  # each once
    by_phase = {r.parameters["phase"]: r for r in subflows}
    assert {p: (flows[r.flow_id], r.name) for p, r in by_phase.items()} == {
        p: (f"phase-runs-dag: {p}", parent.name) for p in ("Start", "Broken", "Side", "After")
    }  # the flow says which definition, the run which run
    assert {p: r.state_name for p, r in by_phase.items()} == {
        "Start": "Completed",
        "Broken": "Failed",
        "Side": "Completed",
        "After": "NotRun",
    }
    assert all(r.end_time is None or parent.end_time is None or r.end_time <= parent.end_time for r in subflows)
    assert all({"taskmark", "phase-runs-dag"} <= set(r.tags) for r in [parent, *subflows])
    assert {t.name: t.state_name for t in tracking} == {flows[r.flow_id]: r.state_name for r in subflows}

    # The UI's run graph: each phase once, as its subflow run, with its dependency edges.
    async with get_client() as client:
        response = await client.request("GET", "/flow_runs/{id}/graph-v2", path_params={"id": parent.id})
    nodes = {node_id: node for node_id, node in response.json()["nodes"]}
    phase_of = {str(r.id): p for p, r in by_phase.items()}
    assert sorted(phase_of[n] for n in nodes) == ["After", "Broken", "Side", "Start"]
    assert {phase_of[n]: sorted(phase_of[e["id"]] for e in node["parents"]) for n, node in nodes.items()} == {
        "Start": [],
        "Broken": ["Start"],
        "Side": ["Start"],
        "After": ["Broken", "Side"],
    }
    assert nodes[str(by_phase["Start"].id)]["label"] == f"phase-runs-dag: Start / {parent.name}"


async def test_stage_task_runs_are_named_after_their_phase_and_stage_and_tagged(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    path = write("named", HEAD.format(name="named-stages") + "## Phase: Only\n\n### Steps\n- agent: a - go\n")
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED"
    async with get_client() as client:
        (phase,) = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[result.flow_run_id])  # type: ignore[list-item]
            )
        )

        async def stages() -> list[Any]:
            found = await client.read_task_runs(
                task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[phase.id]))
            )
            assert {t.name for t in found} >= {"Only/ingestion", "Only/inference: a", "Only/integration"}, found
            return found

        found = await eventually(stages)  # pure stages arrive through the event stream
    assert all({"taskmark", "named-stages"} <= set(t.tags) for t in found)


async def _flows(ids: set[Any]) -> list[Any]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId

    async with get_client() as client:
        return list(await client.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=list(ids)))))
