"""taskmark writes to a run's logs: a line per phase on the run, a line per LLM call on the
call's own task run (agent, model, tokens, cost, time, requests) — issue 16 item 22."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
    LogFilterTaskRunId,
    TaskRunFilter,
    TaskRunFilterFlowRunId,
    TaskRunFilterName,
)

from support.fake_openai import FakeOpenAIServer
from support.waiting import eventually
from taskmark.blocks import ProviderOverrides
from taskmark.runs._run import arun

DEFINITION = """# Logged

```yaml
name: logged
```

## Phase: Draft

### Steps
- agent: a - Draft it
"""


async def test_phases_and_calls_are_logged(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    result = await arun(write("logged", DEFINITION), overrides=overrides)
    assert result.state == "COMPLETED" and result.flow_run_id is not None

    async def lines() -> tuple[list[str], list[str]]:
        async with get_client() as client:
            run_logs = await client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[result.flow_run_id]))
            )
            (phase,) = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[result.flow_run_id])
                )
            )
            (call,) = await client.read_task_runs(
                task_run_filter=TaskRunFilter(
                    flow_run_id=TaskRunFilterFlowRunId(any_=[phase.id]),
                    name=TaskRunFilterName(like_="Draft/inference: a"),
                )
            )
            call_logs = await client.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[call.id])))
        return [log.message for log in run_logs], [log.message for log in call_logs]

    async def logged() -> tuple[list[str], list[str]]:
        run_lines, call_lines = await lines()
        assert any(line.startswith("Phase 'Draft' completed in ") for line in run_lines), run_lines
        assert any(" answered by " in line for line in call_lines), call_lines
        return run_lines, call_lines

    run_lines, call_lines = await eventually(logged)
    (phase_line,) = [line for line in run_lines if line.startswith("Phase 'Draft'")]
    assert phase_line.endswith("· 1 call · 18 tokens · unpriced")
    (call_line,) = [line for line in call_lines if " answered by " in line]  # beside Prefect's own
    assert re.fullmatch(
        r"a answered by \S*fake-model · 11 tokens in, 7 out · unpriced · \d+\.\d\d s · 1 request", call_line
    )
