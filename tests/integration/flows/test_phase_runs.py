"""What Prefect records of a run's phases: one subflow run each, in a final state, the DAG."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
)

from support.fake_openai import FakeOpenAIServer, Reply
from taskmark.blocks import ProviderOverrides
from taskmark.flows._run import arun

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
    states = {r.name: r.state_name for r in subflows}
    assert states == {
        "Phase: Start": "Completed",
        "Phase: Broken": "Failed",
        "Phase: Side": "Completed",
        "Phase: After": "NotRun",
    }
    assert all(r.end_time is None or parent.end_time is None or r.end_time <= parent.end_time for r in subflows)
    # Each tracking task run follows its subflow's state and names its upstream phases' as inputs.
    by_id = {t.id: t.name for t in tracking}
    upstream = {t.name: sorted(by_id[i.id] for i in t.task_inputs.get("wait_for", [])) for t in tracking}  # type: ignore[union-attr]
    assert upstream == {
        "Phase: Start": [],
        "Phase: Broken": ["Phase: Start"],
        "Phase: Side": ["Phase: Start"],
        "Phase: After": ["Phase: Broken", "Phase: Side"],
    }
    assert {t.name: t.state_name for t in tracking} == states
