"""Steering runs from another process: approve or reject a paused phase, cancel a run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.client.schemas.objects import FlowRun

from support.fake_openai import FakeOpenAIServer, Reply
from support.waiting import eventually
from taskmark.blocks import ProviderOverrides
from taskmark.runs._run import RunResult, arun

from .conftest import flow_run_of, prompt_of

DEADLINE_S = 120.0
"""How long a run may take to react before the test fails (a deadline, not a measurement)."""

APPROVAL = """# Publish

```yaml
name: {name}
requirements:
  topic: {{type: string, default: tides}}
```

## Phase: Draft

### Steps
- agent: a - draft on {{{{ topic }}}}

## Phase: Publish
dependsOn: [Draft]
approval: {{prompt: "Publish the draft on {{{{ topic }}}}?", fields: {{channel: {{type: string, enum: [blog, newsletter], default: blog}}, copies: {{type: integer, default: 1}}}}}}

### Steps
- agent: b - publish to {{{{ approval.channel }}}} x{{{{ approval.copies }}}} ({{{{ approval.note }}}}): {{{{ phases["Draft"] }}}}
"""


def taskmark(*args: str) -> subprocess.CompletedProcess[str]:
    """The `taskmark` command in another process, against this test's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    command = [str(Path(sys.executable).with_name("taskmark")), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


async def paused_phase(run: FlowRun) -> FlowRun | None:
    async with get_client() as client:
        children = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
        )
    return next((c for c in children if c.state is not None and c.state.is_paused()), None)


async def start_paused(
    path: Path, name: str, overrides: ProviderOverrides
) -> tuple[asyncio.Task[RunResult], FlowRun, FlowRun]:
    running = asyncio.ensure_future(arun(path, overrides=overrides))
    run = await eventually(lambda: flow_run_of(name), interval=0.5, message="the flow run")
    paused = await eventually(lambda: paused_phase(run), interval=0.5, message="the paused phase")
    return running, run, paused


async def test_approval_form_is_typed_and_approve_from_another_process_continues(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    llm.default = lambda r: Reply(content=f"done: {prompt_of(r)}")
    path = write("approve", APPROVAL.format(name="approve-me"))
    running, run, paused = await start_paused(path, "approve-me", overrides)
    assert paused.parameters["phase"] == "Publish" and llm.count == 1  # Draft ran; Publish waits

    async with get_client() as client:  # the form the UI draws, with its description
        keyset = paused.state.state_details.run_input_keyset  # type: ignore[union-attr]
        schema = json.loads(await client.read_flow_run_input(paused.id, keyset["schema"]))
        description = json.loads(await client.read_flow_run_input(paused.id, keyset["description"]))
    assert description == "Publish the draft on tides?"
    fields = schema["properties"]
    assert fields["decision"]["enum"] == ["approve", "reject"] and "decision" in schema["required"]
    assert fields["channel"]["enum"] == ["blog", "newsletter"] and fields["channel"]["default"] == "blog"
    assert fields["copies"]["type"] == "integer" and fields["note"]["type"] == "string"

    done = await asyncio.to_thread(
        taskmark,
        "resume",
        str(run.id),
        "--approve",
        "--note",
        "ship it",
        "--set",
        "channel=newsletter",
        "--set",
        "copies=3",
    )
    assert done.returncode == 0, done.stderr
    assert "approved: phase 'Publish'" in done.stdout
    result = await asyncio.wait_for(running, DEADLINE_S)
    assert result.state == "COMPLETED"
    assert prompt_of(llm.requests[-1]).startswith("publish to newsletter x3 (ship it): done: draft on tides")


async def test_reject_fails_the_run_with_the_note(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    path = write("reject", APPROVAL.format(name="reject-me"))
    running, run, _ = await start_paused(path, "reject-me", overrides)
    bad = await asyncio.to_thread(taskmark, "resume", str(run.id), "--approve", "--set", "copies=many")
    assert bad.returncode == 2 and "copies: expected integer" in bad.stderr and "Traceback" not in bad.stderr
    done = await asyncio.to_thread(taskmark, "resume", str(run.id), "--reject", "--note", "not this week")
    assert done.returncode == 0, done.stderr
    result = await asyncio.wait_for(running, DEADLINE_S)
    assert result.state == "FAILED"
    assert result.phases["Publish"].error == "phase 'Publish' failed in approval: rejected: not this week"
    assert llm.count == 1  # Publish never called its agent


async def test_cancel_from_another_process_stops_the_run(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    held = threading.Event()  # the second call is answered only once the test is over

    def reply(request: Any) -> Reply:
        if "second" in prompt_of(request):
            held.wait(DEADLINE_S)
            return Reply(content="too late")
        return Reply(content="fast")

    llm.default = reply
    path = write(
        "cancel",
        "# C\n\n```yaml\nname: cancel-me\n```\n\n## Phase: One\n\n### Steps\n- agent: a - first\n\n"
        "## Phase: Two\ndependsOn: [One]\n\n### Steps\n- agent: a - second\n\n"
        "## Phase: Three\ndependsOn: [Two]\n\n### Steps\n- agent: a - third\n",
    )
    try:
        running = asyncio.ensure_future(arun(path, overrides=overrides))
        run = await eventually(lambda: flow_run_of("cancel-me"), interval=0.5, message="the flow run")

        await eventually(lambda: llm.count == 2, message="the second call")
        done = await asyncio.to_thread(taskmark, "cancel", str(run.id))
        assert done.returncode == 0, done.stderr
        # The second call never gets its answer: only the cancellation can end the run.
        result = await asyncio.wait_for(running, DEADLINE_S)
        assert result.state == "CANCELLED"
        async with get_client() as client:
            final = await client.read_flow_run(run.id)
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
            )
        assert final.state is not None and final.state.is_cancelled()
        assert all(c.state is not None and c.state.is_final() for c in children)
        # The run has returned and every phase is final: nothing is left to call the LLM.
        assert llm.count == 2  # no call after the cancellation
        again = await asyncio.to_thread(taskmark, "cancel", str(run.id))
        assert again.returncode == 2 and "already ended CANCELLED" in again.stderr
    finally:
        held.set()


async def test_pause_holds_the_next_phase_until_resumed(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    gate = threading.Event()  # phase One's answer waits until the hold has been asked for

    def reply(request: Any) -> Reply:
        if "first" in prompt_of(request):
            gate.wait(DEADLINE_S)
            return Reply(content="one")
        return Reply(content="later")

    llm.default = reply
    path = write(
        "hold",
        "# H\n\n```yaml\nname: hold-me\n```\n\n## Phase: One\n\n### Steps\n- agent: a - first\n\n"
        "## Phase: Two\ndependsOn: [One]\n\n### Steps\n- agent: a - second\n",
    )
    running = asyncio.ensure_future(arun(path, overrides=overrides))
    run = await eventually(lambda: flow_run_of("hold-me"), interval=0.5, message="the flow run")

    await eventually(lambda: llm.count == 1, message="the first call")
    done = await asyncio.to_thread(taskmark, "pause", str(run.id))
    assert done.returncode == 0, done.stderr
    gate.set()
    held = await eventually(lambda: paused_phase(run), interval=0.5, message="the held phase")
    assert held.parameters["phase"] == "Two" and llm.count == 1 and not running.done()
    done = await asyncio.to_thread(taskmark, "resume", str(run.id))
    assert done.returncode == 0 and "phases Two" in done.stdout, done.stderr
    result = await asyncio.wait_for(running, DEADLINE_S)
    assert result.state == "COMPLETED" and llm.count == 2
