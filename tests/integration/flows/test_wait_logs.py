"""A phase that waits for a person says so on the definition's run, which shows only Running:
which phase, for what, the paused run's page and the command that answers it; and the answer."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.utilities.urls import url_for

from support.fake_openai import FakeOpenAIServer, Reply
from support.waiting import eventually
from taskmark.blocks import ProviderOverrides
from taskmark.runs._run import arun

from .conftest import prompt_of
from .test_context import ANSWER, _rule, _write_docs
from .test_control import APPROVAL, DEADLINE_S, flow_run_of, paused_phase, start_paused, taskmark
from .test_summary_artifacts import artifacts_of

WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


async def logged(flow_run_id: UUID, pattern: str) -> str | None:
    """The first line of the flow run's log (as the Prefect API has it) matching ``pattern``."""
    async with get_client() as client:
        logs = await client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))
    return next((log.message for log in logs if re.fullmatch(pattern, log.message)), None)


@pytest.mark.slow
async def test_approval_wait_and_answer_are_on_the_parent_runs_log_and_in_the_summary(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    llm.default = lambda r: Reply(content=f"done: {prompt_of(r)}")
    path = write("wait-log", APPROVAL.format(name="wait-log"))
    running, run, paused = await start_paused(path, "wait-log", overrides)

    page = url_for("flow-run", obj_id=paused.id)
    assert page is not None and str(paused.id) in page
    command = f"taskmark resume {paused.id} --approve|--reject [--note TEXT]"
    wait = (
        f"Phase 'Publish' waits for approval: Publish the draft on tides? — answer it in the Prefect UI "
        f"(Resume on {page}) or with `{command}`"
    )
    await eventually(lambda: logged(run.id, re.escape(wait)), interval=0.5, message="the wait on the parent's log")

    done = await asyncio.to_thread(taskmark, "resume", str(paused.id), "--approve", "--note", "ship it")
    assert done.returncode == 0, done.stderr
    result = await asyncio.wait_for(running, DEADLINE_S)
    assert result.state == "COMPLETED"

    decision = f"approved at {WHEN}; note: ship it; channel=blog, copies=1"
    for where in (run.id, paused.id):  # the definition's log and the phase's
        await eventually(
            lambda where=where: logged(where, f"Phase 'Publish' {decision}"), interval=0.5, message="the decision"
        )
    summary = (await artifacts_of(result.flow_run_id))["wait-log-summary"]
    assert re.search(rf"^\| Publish \| completed \| \d+\.\d\d s \| approval: {decision} \|$", summary, re.M), summary


@pytest.mark.slow
async def test_a_held_phase_says_how_to_let_it_go_on(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    gate = threading.Event()  # phase One's answer waits until the hold has been asked for

    def reply(request: Any) -> Reply:
        if "first" in prompt_of(request):
            gate.wait(DEADLINE_S)
        return Reply(content="ok")

    llm.default = reply
    path = write(
        "hold-log",
        "# H\n\n```yaml\nname: hold-log\n```\n\n## Phase: One\n\n### Steps\n- agent: a - first\n\n"
        "## Phase: Two\ndependsOn: [One]\n\n### Steps\n- agent: a - second\n",
    )
    running = asyncio.ensure_future(arun(path, overrides=overrides))
    try:
        run = await eventually(lambda: flow_run_of("hold-log"), interval=0.5, message="the flow run")
        await eventually(lambda: llm.count == 1, message="the first call")
        assert (await asyncio.to_thread(taskmark, "pause", str(run.id))).returncode == 0
    finally:
        gate.set()
    held = await eventually(lambda: paused_phase(run), interval=0.5, message="the held phase")

    page = url_for("flow-run", obj_id=held.id)
    hold = (
        f"Phase 'Two' holds (taskmark pause) — let it go on in the Prefect UI (Resume on {page}) "
        f"or with `taskmark resume {run.id}`"
    )
    await eventually(lambda: logged(run.id, re.escape(hold)), interval=0.5, message="the hold on the parent's log")
    assert (await asyncio.to_thread(taskmark, "resume", str(run.id))).returncode == 0
    assert (await asyncio.wait_for(running, DEADLINE_S)).state == "COMPLETED"
    await eventually(
        lambda: logged(run.id, f"Phase 'Two' resumed at {WHEN} after a hold"), interval=0.5, message="the resume"
    )


@pytest.mark.slow
async def test_a_context_review_wait_and_answer_are_on_the_parent_runs_log(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Callable[[str, str], Path]
) -> None:
    llm.default = _rule
    path = write("review-log", ANSWER.format(name="review-log", review="review: context"))
    _write_docs(path.parent)
    running, run, paused = await start_paused(path, "review-log", overrides)

    page = url_for("flow-run", obj_id=paused.id)
    wait = (
        f"Phase 'Answer' waits for a review of its context — answer it in the Prefect UI (Resume on {page}) "
        f"or with `taskmark resume {paused.id} --pin ITEM --exclude ITEM`; "
        f"`taskmark resume {run.id}` goes on with the context as it is"
    )
    await eventually(lambda: logged(run.id, re.escape(wait)), interval=0.5, message="the wait on the parent's log")
    pin = ("resume", str(paused.id), "--pin", "doc:docs/bread.md", "--note", "bread matters")
    assert (await asyncio.to_thread(taskmark, *pin)).returncode == 0
    result = await asyncio.wait_for(running, DEADLINE_S)
    assert result.state == "COMPLETED"

    decision = f"context reviewed at {WHEN}; pinned doc:docs/bread.md; note: bread matters"
    await eventually(lambda: logged(run.id, f"Phase 'Answer' {decision}"), interval=0.5, message="the review")
    summary = (await artifacts_of(result.flow_run_id))["review-log-summary"]
    assert re.search(rf"^\| Answer \| completed \| \d+\.\d\d s \| review: {decision} \|$", summary, re.M), summary
