"""The run record: one typed record per run, read back with `taskmark.read_run`, whose totals
are the provider's own count of requests and tokens, for each way a run can end."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import taskmark
from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from support.waiting import eventually
from taskmark.blocks import ProviderOverrides
from taskmark.runs._run import aretry, arun
from taskmark.runs.record import RunRecord

from .conftest import answer_by_prompt, prompt_of

Write = Callable[[str, str], Path]

HEAD = "# T\n\n```yaml\nname: {name}\n{meta}requirements:\n  topic: {{type: string, default: tides}}\n```\n\n"

TWO = (
    "## Phase: Draft\n\n### Steps\n- agent: a - Draft on {{ topic }}\n\n"
    "## Phase: Check\ndependsOn: [Draft]\n\n### Steps\n- agent: b - Check {{ phases['Draft'] }}\n"
)

DEADLINE_S = 120.0
"""How long a held reply waits before giving up (a deadline, not a measurement)."""


def provider_counts(llm: FakeOpenAIServer) -> tuple[int, int, int]:
    """Requests the fake server received, and the prompt and completion tokens it reported."""
    _answers, prompt, completion = llm.usage_sent
    return llm.count, prompt, completion


def recorded_counts(record: RunRecord) -> tuple[int, int, int]:
    return record.totals.requests, record.totals.prompt_tokens, record.totals.completion_tokens


async def test_a_completed_run_records_every_level(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    path = write("rec-done", HEAD.format(name="rec-done", meta="version: 2.1.0\n") + TWO)
    result = await arun(path, {"topic": "waves"}, overrides=overrides)
    assert result.flow_run_id is not None

    record = await taskmark.aread_run(result.flow_run_id)
    assert record.schema_version == 1 and record.run_id == result.flow_run_id
    assert record.outcome == "completed" and record.error is None and record.ended is not None
    assert record.inputs == {"topic": "waves"}
    assert record.definition.name == "rec-done" and record.definition.version == "2.1.0"
    assert record.definition.content_sha256 is not None and len(record.definition.content_sha256) == 64
    assert [p.name for p in record.phases] == ["Draft", "Check"]
    assert [p.state for p in record.phases] == ["completed", "completed"]
    draft = record.phases[0]
    assert draft.outputs == "ok"
    stages = {s.name: s for s in draft.stages}
    assert list(stages)[:4] == ["ingestion", "preProcessing", "promptTemplating", "inference"]
    assert stages["preProcessing"].state == "skipped"
    assert stages["promptTemplating"].data == {"a": "Draft on waves"}
    (call,) = stages["inference"].calls
    assert call.agent == "a" and call.model is not None and call.state == "completed" and not call.cached
    assert (call.prompt_tokens, call.completion_tokens, call.attempts) == (11, 7, 1)
    [request] = call.requests
    assert (request.model, request.outcome, request.purpose) == (call.model, "answered", "answer")
    assert call.latency_s is not None and call.duration_s is not None
    assert call.messages_sha256 is not None and len(call.messages_sha256) == 64 and call.context is None
    assert recorded_counts(record) == provider_counts(llm) == (2, 22, 14)
    assert record.totals.calls == 2 and record.totals.unpriced_calls == 2  # fake-model has no price


async def test_a_failed_phase_records_why_and_what_did_not_run(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.default = answer_by_prompt({"Draft": Reply(status=400, error_message="refused here")})
    path = write("rec-fail", HEAD.format(name="rec-fail", meta="") + TWO)
    result = await arun(path, overrides=overrides)
    assert result.flow_run_id is not None

    record = await taskmark.aread_run(result.flow_run_id)
    assert record.outcome == "failed" and "refused here" in (record.error or "")
    draft, check = record.phases
    assert draft.state == "failed" and "failed in inference" in (draft.error or "")
    (call,) = draft.calls()
    assert call.state == "failed" and call.status_code == 400 and "refused here" in (call.error or "")
    assert [(r.outcome, r.status_code, r.transient) for r in call.requests] == [("failed", 400, False)]
    assert check.state == "not_run" and check.stages == []
    assert recorded_counts(record) == provider_counts(llm) == (1, 0, 0)
    assert record.totals.failed_calls == 1


async def test_a_refine_loop_that_ends_at_its_limit_is_accepted_with_errors(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.default = answer_by_prompt(
        {"Critique": Reply(content="too small"), "Revise": Reply(content=json.dumps({"n": 3}))},
        default=Reply(content=json.dumps({"n": 1})),
    )
    path = write(
        "rec-awe",
        HEAD.format(name="rec-awe", meta="")
        + "## Phase: Loop\n\n### Steps\n- agent: a - Draft\n- validation: output.n > 100\n\n### Outputs\n- n: integer\n\n"
        "### Critique\n- agent: critic - Critique {{ output.n }}: {{ errors }}\n\n"
        "### Refine\nmaxRefinements: 1\n\n- agent: reviser - Revise {{ output.n }} per {{ critique }}\n",
    )
    result = await arun(path, overrides=overrides)
    assert result.flow_run_id is not None

    record = await taskmark.aread_run(result.flow_run_id)
    assert record.outcome == "accepted_with_errors"
    (loop,) = record.phases
    assert loop.state == "accepted_with_errors" and loop.outputs == {"n": 3}
    assert list(loop.failed_checks) == ["a"] and "output.n > 100" in loop.failed_checks["a"][0]
    stages = {s.name: s for s in loop.stages}
    assert [c.agent for c in stages["critique"].calls] == ["critic"]
    assert [(c.agent, c.round) for c in stages["refine"].calls] == [("reviser", 1)]  # not under critique
    assert recorded_counts(record) == provider_counts(llm) == (3, 33, 21)


async def test_a_timed_out_run_keeps_its_finished_phase(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    never = threading.Event()

    def late(_request: RecordedRequest) -> Reply:
        never.wait(DEADLINE_S)
        return Reply(content="late")

    llm.default = answer_by_prompt({"Check": late})
    # Draft must end well before the deadline even when a busy server makes the client retry.
    path = write("rec-slow", HEAD.format(name="rec-slow", meta="maxExecutionTime: 15s\n") + TWO)
    try:
        result = await arun(path, overrides=overrides)
        sent = provider_counts(llm)  # before the held request is let go, to a client long gone
    finally:
        never.set()
    assert result.state == "FAILED" and "phase 'Check' timed out" in (result.message or "")
    assert result.phases["Draft"].state == "COMPLETED" and result.phases["Draft"].outputs == "ok"
    assert result.phases["Check"].state == "TIMED_OUT"
    assert result.flow_run_id is not None

    record = await taskmark.aread_run(result.flow_run_id)
    assert record.outcome == "timed_out" and "timed out" in (record.error or "")
    draft, check = record.phases
    assert draft.state == "completed" and draft.outputs == "ok"
    assert check.state == "timed_out"
    assert record.totals.requests == 1 and sent[0] == 2  # the held request was never answered
    assert recorded_counts(record)[1:] == sent[1:] == (11, 7)


async def test_a_cancelled_run_says_so_at_every_unfinished_level(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    release = threading.Event()

    def held(_request: RecordedRequest) -> Reply:
        release.wait(DEADLINE_S)
        return Reply(content="late")

    llm.default = answer_by_prompt({"Check": held})
    path = write("rec-cancel", HEAD.format(name="rec-cancel", meta="") + TWO)
    created: list[str] = []
    running = asyncio.ensure_future(arun(path, overrides=overrides, on_created=created.append))
    try:
        await eventually(lambda: llm.in_flight == 1, message="the held call")
        running.cancel("stopped by the test")
        with pytest.raises(asyncio.CancelledError):
            await running
    finally:
        release.set()

    record = await taskmark.aread_run(created[0])
    assert record.outcome == "cancelled"
    draft, check = record.phases
    assert draft.state == "completed" and check.state == "cancelled"
    assert record.totals.calls == 1


async def test_a_retried_run_counts_every_paid_request_once(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    refuse = {"on": True}

    def reply(request: RecordedRequest) -> Reply:
        if prompt_of(request).startswith("Check") and refuse["on"]:
            return Reply(status=400, error_message="not yet")
        return Reply(content="ok")

    llm.default = reply
    path = write("rec-retry", HEAD.format(name="rec-retry", meta="") + TWO)
    first = await arun(path, overrides=overrides)
    assert first.state == "FAILED" and first.flow_run_id is not None
    refuse["on"] = False
    retried = await aretry(first.flow_run_id, overrides=overrides)
    assert retried is not None and retried.state == "COMPLETED"

    record = await taskmark.aread_run(first.flow_run_id)
    assert record.outcome == "completed" and record.attempts == 2
    assert [(p.name, p.state, p.run_attempt) for p in record.phases] == [
        ("Draft", "completed", 2),
        ("Check", "completed", 2),
    ]
    assert [(p.name, p.state) for p in record.earlier] == [("Draft", "completed"), ("Check", "failed")]
    (reused,) = record.phases[0].calls()
    assert reused.cached and reused.attempts == 0 and reused.requests == []  # not asked again
    assert recorded_counts(record) == provider_counts(llm) == (3, 22, 14)


def test_read_run_is_the_python_api(llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write) -> None:
    path = write("rec-sync", HEAD.format(name="rec-sync", meta="") + TWO)
    result = asyncio.run(arun(path, overrides=overrides))
    assert result.flow_run_id is not None
    record = taskmark.read_run(result.flow_run_id)
    assert isinstance(record, taskmark.RunRecord) and record.outcome == "completed"
    assert record == asyncio.run(taskmark.aread_run(result.flow_run_id))


async def test_a_reply_that_never_parses_still_counts_what_it_cost(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.default = lambda _request: Reply(content="no JSON here, sorry")
    path = write(
        "rec-unparsed",
        HEAD.format(name="rec-unparsed", meta="") + "## Phase: Count\n\n### Steps\n- agent: a - Count\n\n"
        "### Outputs\n- n: integer\n",
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "FAILED" and result.flow_run_id is not None
    # The reply and its repair were both answered, and paid for, though neither parsed.
    assert (result.usage.failed_calls, result.usage.prompt_tokens, result.usage.completion_tokens) == (1, 22, 14)

    record = await taskmark.aread_run(result.flow_run_id)
    (call,) = record.phases[0].calls()
    assert call.state == "failed" and call.model is not None and call.attempts == 2
    assert [(r.purpose, r.outcome) for r in call.requests] == [("answer", "answered"), ("repair", "answered")]
    assert "did not return valid JSON after one repair" in (call.error or "")
    assert recorded_counts(record) == provider_counts(llm) == (2, 22, 14)
