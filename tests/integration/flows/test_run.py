"""Running definitions: scheduling, stages, failure rules, context — through Prefect and HTTP."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from prefect.exceptions import ParameterTypeError

from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from support.waiting import eventually
from taskmark import aread_run
from taskmark.blocks import ProviderOverrides
from taskmark.definition import load_definition
from taskmark.flows import compile
from taskmark.runs._run import arun
from taskmark.tasks import step_strategy

from .conftest import answer_by_prompt, prompt_of

HEAD = "# T\n\n```yaml\nname: {name}\n{meta}requirements:\n  topic: {{type: string, default: tides}}\n```\n\n"
Write = Callable[[str, str], Path]

DEADLINE_S = 120.0
"""How long a held reply waits before giving up (a deadline, not a measurement)."""


def head(name: str, meta: str = "") -> str:
    return HEAD.format(name=name, meta=meta)


async def test_independent_phases_overlap_and_the_parent_waits(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    both = threading.Barrier(2)  # Left's and Right's calls are answered once both have arrived

    def reply(request: RecordedRequest) -> Reply:
        if prompt_of(request).startswith(("Left", "Right")):
            both.wait(DEADLINE_S)  # breaks (and the test fails) if the two never overlap
        return Reply(content="done")

    llm.default = reply
    path = write(
        "overlap",
        head("overlap")
        + "".join(
            f"## Phase: {n}\n{d}\n### Steps\n- agent: a - {n} on {{{{ topic }}}}\n\n"
            for n, d in (
                ("Start", ""),
                ("Left", "dependsOn: Start\n"),
                ("Right", "dependsOn: Start\n"),
                ("End", "dependsOn: [Left, Right]\n"),
            )
        ),
    )
    seen: dict[str, dict[str, int]] = {}
    order = itertools.count()  # the order the hooks fired in

    def at(moment: str) -> Callable[[dict[str, object]], None]:
        return lambda p: seen.setdefault(str(p["phase"]), {}).__setitem__(moment, next(order))

    result = await arun(path, overrides=overrides, hooks={"phase:start": [at("start")], "phase:complete": [at("end")]})
    assert result.state == "COMPLETED", result.message
    assert not both.broken and llm.max_in_flight >= 2, "Left and Right did not call the LLM at once"
    left, right, start, end = seen["Left"], seen["Right"], seen["Start"], seen["End"]
    assert left["start"] < right["end"] and right["start"] < left["end"], "Left and Right did not overlap"
    assert start["end"] < min(left["start"], right["start"])
    assert end["start"] > max(left["end"], right["end"])
    assert llm.count == 4 and result.usage.calls == 4
    async with get_client() as client:
        parent = await client.read_flow_run(result.flow_run_id)
        subflows = await client.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[result.flow_run_id]))
        )
    assert {r.parameters["phase"] for r in subflows} == {"Start", "Left", "Right", "End"}
    assert all(r.end_time <= parent.end_time for r in subflows if r.end_time)


async def test_max_concurrent_phases_is_a_limit(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    path = write(
        "limited",
        head("limited", "maxConcurrentPhases: 1\n")
        + "".join(f"## Phase: P{i}\n\n### Steps\n- agent: a - P{i}\n\n" for i in range(3)),
    )
    windows: dict[str, list[int]] = {}
    order = itertools.count()  # the order the hooks fired in
    hooks = {
        "phase:start": [lambda p: windows.setdefault(str(p["phase"]), []).append(next(order))],
        "phase:complete": [lambda p: windows[str(p["phase"])].append(next(order))],
    }
    result = await arun(path, overrides=overrides, hooks=hooks)
    assert result.state == "COMPLETED"
    spans = sorted(windows.values())
    assert len(spans) == 3 and all(a[1] < b[0] for a, b in zip(spans, spans[1:], strict=False)), (
        "phases overlapped despite maxConcurrentPhases: 1"
    )
    assert llm.max_in_flight == 1


async def test_stages_without_work_are_recorded_skipped(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    path = write("skips", head("skips") + "## Phase: Only\n\n### Steps\n- agent: a - Say {{ topic }}\n")
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED" and result.flow_run_id is not None
    only = (await aread_run(result.flow_run_id)).phase("Only")
    assert only is not None
    stages = {stage.name: stage.state for stage in only.stages}
    assert stages == {
        "ingestion": "completed",
        "preProcessing": "skipped",
        "promptTemplating": "completed",
        "inference": "completed",
        "parsing": "completed",
        "validateStructure": "skipped",
        "validateQuality": "skipped",
        "critique": "skipped",
        "refine": "skipped",
        "finalValidation": "skipped",
        "integration": "completed",
    }
    assert next(s.data for s in only.stages if s.name == "promptTemplating") == {"a": "Say tides"}
    expected = {
        "Only/ingestion",
        "Only/promptTemplating",
        "Only/inference",
        "Only/inference: a",
        "Only/parsing",
        "Only/integration",
    }
    async with get_client() as client:
        flow_filter = FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[uuid.UUID(result.flow_run_id)])
        )

        async def task_run_names() -> set[str]:
            runs = await client.read_task_runs(flow_run_filter=flow_filter)
            names = {r.name if ":" in r.name else r.name.rsplit("-", 1)[0] for r in runs}
            assert names >= expected, sorted(names)
            return names

        # The server records task runs from events, a moment later.
        names = await eventually(task_run_names, message="the stages' task runs")
    assert names == expected  # skipped stages cost no task run


async def test_sequential_steps_see_the_ones_before(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.default = answer_by_prompt({"First": Reply(content="alpha"), "Second": Reply(content="beta")})
    path = write(
        "seq",
        head("seq") + '## Phase: S\n\n### Steps\n- agent: a - First\n- agent: b - Second after {{ steps["a"] }}\n',
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED"
    assert [prompt_of(r) for r in llm.requests] == ["First", "Second after alpha"]
    assert result.phases["S"].outputs == "beta"


async def test_settings_merge_phase_over_definition_over_agent_and_reach_the_request(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write, tmp_path: Path
) -> None:
    (tmp_path / "agents" / "tuned.md").write_text("---\ntemperature: 0.7\nmaxTokens: 999\n---\nYou analyse.\n")
    path = write(
        "merged",
        head("merged", "llm: {maxTokens: 500}\n")
        + "## Phase: P\nllm: {maxTokens: 64}\n\n### Steps\n- agent: tuned - q\n",
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED", result.message
    (request,) = llm.requests
    assert (request.body["max_tokens"], request.body["temperature"]) == (64, 0.7)
    assert request.messages[0] == {"role": "system", "content": "You analyse."}
    assert (result.usage.calls, result.usage.requests, result.usage.prompt_tokens) == (1, 1, 11)  # the fake's count


async def test_parallel_phase_survives_one_failing_agent_which_is_not_retried(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.default = answer_by_prompt(
        {"bad": Reply(status=400, error_message="bad request"), "good": Reply(content="fine")}
    )
    path = write(
        "sib",
        head("sib")
        + "## Phase: P\nparallel: true\n\n### Steps\n- agent: a - bad one\n- agent: b - good one\n- aggregate: merge\n",
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED", result.message
    assert result.phases["P"].outputs == {"b": "fine"}
    assert sum(1 for r in llm.requests if "bad" in prompt_of(r)) == 1
    assert result.usage.failed_calls == 1


async def test_transient_failures_retry_with_the_definitions_policy(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.push(Reply(status=500), Reply(status=503), Reply(content="third time"))
    path = write(
        "retry",
        head("retry", "retry: {maxAttempts: 3, backoffMs: 10}\n") + "## Phase: P\n\n### Steps\n- agent: a - go\n",
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED" and result.phases["P"].outputs == "third time"
    assert llm.count == 3


async def test_transient_failures_past_the_policy_fail_the_phase(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.default = lambda _r: Reply(status=500)
    path = write(
        "retry2",
        head("retry2", "retry: {maxAttempts: 2, backoffMs: 10}\n")
        + "## Phase: P\n\n### Steps\n- agent: a - go\n\n## Phase: Q\ndependsOn: P\n\n### Steps\n- agent: a - q\n",
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "FAILED"
    assert llm.count == 2
    assert result.phases["P"].state == "FAILED" and "phase 'P' failed in inference" in (result.phases["P"].error or "")
    assert result.phases["Q"].state == "NOT_RUN"


async def test_validation_failure_is_one_attempt_and_names_expression_value_phase(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.default = lambda _r: Reply(content=json.dumps({"score": 1}))
    path = write(
        "val",
        head("val")
        + "## Phase: Check\n\n### Steps\n- agent: a - rate\n- validation: output.score > 5\n\n### Outputs\n- score: integer\n",
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "FAILED"
    assert llm.count == 1
    assert result.phases["Check"].error == (
        "phase 'Check' failed in validateQuality: validation `output.score > 5` is false for output {\"score\": 1} in phase 'Check'"
    )


async def test_refine_stops_at_the_limit_and_passes_its_last_output(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    drafts = iter(range(1, 10))
    llm.default = answer_by_prompt(
        {"Critique": Reply(content="too short"), "Revise": lambda _r: Reply(content=json.dumps({"n": next(drafts)}))},
        default=Reply(content=json.dumps({"n": 0})),
    )
    path = write(
        "refine",
        head("refine")
        + (
            "## Phase: Loop\n\n### Steps\n- agent: a - Draft\n- validation: output.n > 100\n\n### Outputs\n- n: integer\n\n"
            "### Critique\n- agent: critic - Critique {{ output.n }}: {{ errors }}\n\n"
            "### Refine\nmaxRefinements: 2\n\n- agent: reviser - Revise {{ output.n }} per {{ critique }}\n"
        ),
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED", result.message
    assert result.phases["Loop"].outputs == {"n": 2}
    kinds = [prompt_of(r).split()[0] for r in llm.requests]
    assert kinds == ["Draft", "Critique", "Revise", "Critique", "Revise"]


async def test_a_failing_loop_body_says_so(llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write) -> None:
    llm.default = answer_by_prompt({"Critique": Reply(status=401, error_message="no key")}, default=Reply(content="x"))
    path = write(
        "loopfail",
        head("loopfail")
        + (
            "## Phase: Loop\n\n### Steps\n- agent: a - Draft\n- validation: len(output) > 100\n\n"
            "### Critique\n- agent: critic - Critique {{ output }}\n\n### Refine\n- agent: reviser - Revise {{ output }}\n"
        ),
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "FAILED"
    assert "Loop body failed: " in (result.phases["Loop"].error or "")


async def test_bad_parameter_is_named_before_anything_runs(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    path = write(
        "params",
        "# T\n\n```yaml\nname: params\nrequirements:\n  count: integer\n  mode: {type: string, enum: [a, b], default: a}\n```\n\n## Phase: P\n\n### Steps\n- agent: a - {{ count }}\n",
    )
    with pytest.raises(ParameterTypeError, match="count"):
        await arun(path, {"count": "many"}, overrides=overrides)
    with pytest.raises(ParameterTypeError, match="mode"):
        await arun(path, {"count": 1, "mode": "c"}, overrides=overrides)
    assert llm.count == 0
    schema = compile(load_definition(path)).parameters.model_dump()
    assert schema["required"] == ["count"]
    assert schema["properties"]["mode"]["enum"] == ["a", "b"] and schema["properties"]["mode"]["default"] == "a"


async def test_handlers_and_custom_steps_store_data_under_their_own_stage(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "myhooks.py").write_text(
        "def prepare(view):\n    return {'data': {'seen': sorted(view['inputs'])}, 'flags': {'prepared': True}}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    @step_strategy("shout")
    def shout(argument: str, names: dict[str, object]) -> str:
        return argument.upper()

    path = write(
        "custom",
        head("custom")
        + '## Phase: P\nhandlers: {preProcessing: "myhooks:prepare"}\n\n### Steps\n- shout: hello {{ topic }}\n',
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED" and result.flow_run_id is not None, result.message
    record = (await aread_run(result.flow_run_id)).phase("P")
    assert record is not None
    assert next(s.data for s in record.stages if s.name == "preProcessing") == {"seen": ["topic"]}
    assert record.flags == {"prepared": True}
    assert record.outputs == {"shout": "HELLO TIDES"}
    assert llm.count == 0


async def test_route_by_expression_runs_only_the_picked_branches(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.default = lambda r: Reply(content=f"from {prompt_of(r)}")
    path = write(
        "route",
        head("route")
        + (
            "## Phase: Pick\n\n### Steps\n- agent: a - pick\n\n"
            '## Phase: Fan\ndependsOn: Pick\nparallel: true\n\n### Steps\n- route: ["b"] if topic == "tides" else branches\n'
            "- agent: a - branch a\n- agent: b - branch b\n- aggregate: merge\n\n"
            '## Phase: After\ndependsOn: Fan\n\n### Steps\n- agent: a - after {{ phases["Fan"] }}\n'
        ),
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED", result.message
    assert result.phases["Fan"].executed_branches == ["b"]
    assert result.phases["Fan"].outputs == {"b": "from branch b"}
    assert "branch a" not in [prompt_of(r) for r in llm.requests]
    assert prompt_of(llm.requests[-1]) == "after {'b': 'from branch b'}"


async def test_route_by_agent(llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write) -> None:
    llm.default = answer_by_prompt(
        {"Which": Reply(content=json.dumps({"branches": ["a"]}))}, default=Reply(content="answered")
    )
    path = write(
        "route2",
        head("route2")
        + (
            "## Phase: Fan\nparallel: true\n\n### Steps\n- route: by chair - Which of {{ branches }} fit {{ topic }}?\n"
            "- agent: a - branch a\n- agent: b - branch b\n"
        ),
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED", result.message
    assert result.phases["Fan"].executed_branches == ["a"]
    assert result.phases["Fan"].outputs == "answered"
    assert [prompt_of(r) for r in llm.requests] == ["Which of ['a', 'b'] fit tides?", "branch a"]


async def test_response_cache_answers_a_second_run_without_a_call(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    llm.default = lambda r: Reply(content=f"answer to {prompt_of(r)}")
    # A question of this test's own: the cache lives in result storage, which outlives a test.
    question = f"same question {uuid.uuid4().hex[:8]}"
    path = write(
        "cached",
        head("cached", "cache: {ttl: 1 hour}\n")
        + f"## Phase: P\n\n### Steps\n- agent: a - {question} {{{{ topic }}}}\n",
    )
    first = await arun(path, overrides=overrides)
    second = await arun(path, overrides=overrides)
    assert first.state == second.state == "COMPLETED"
    assert second.phases["P"].outputs == first.phases["P"].outputs == f"answer to {question} tides"
    assert llm.count == 1
    assert (first.usage.calls, second.usage.calls) == (1, 0)
    third = await arun(path, overrides=overrides, no_cache=True)
    assert third.usage.calls == 1 and llm.count == 2
    other = await arun(path, {"topic": "waves"}, overrides=overrides)
    assert other.usage.calls == 1 and llm.count == 3


async def test_a_run_leaves_summary_and_usage_artifacts(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    llm.default = lambda _r: Reply(content="the **answer**", prompt_tokens=5, completion_tokens=3)
    path = write(
        "artifacts",
        head("artifacts")
        + "## Phase: One\n\n### Steps\n- agent: a - go\n\n## Phase: Two\ndependsOn: One\n\n### Steps\n- agent: b - again\n",
    )
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED"
    async with get_client() as client:
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[result.flow_run_id]))
        )
    by_key = {a.key: a for a in artifacts}
    summary, usage = by_key["artifacts-summary"], by_key["artifacts-usage"]
    assert (
        "## Two\n\nthe **answer**" in summary.data
        and "| One | completed |" in summary.data
        and "Answered by: openai/fake-model" in summary.data
    )
    rows = usage.data if isinstance(usage.data, list) else json.loads(usage.data)
    assert rows[-1] == {
        "phase": "total",
        "model": "",
        "calls": 2,
        "failed calls": 0,
        "prompt tokens": 10,
        "completion tokens": 6,
        "cost (USD)": "unpriced",  # litellm has no price for the fake model
        "unpriced calls": 2,
    }
    assert [r["phase"] for r in rows] == ["One", "Two", "total"]


async def test_phase_moments_reach_prefects_event_feed(
    llm: FakeOpenAIServer, overrides: ProviderOverrides, write: Write
) -> None:
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    path = write("evented", head("evented") + "## Phase: Solo\n\n### Steps\n- agent: a - go\n")
    result = await arun(path, overrides=overrides)
    assert result.state == "COMPLETED"
    wanted = {"taskmark.phase.started", "taskmark.phase.completed", "taskmark.execution.completed"}
    query = EventFilter(
        event=EventNameFilter(prefix=["taskmark."]),
        resource=EventResourceFilter(labels={"prefect.resource.id": ["taskmark.*evented*"]}),
    )
    async with get_client() as client:

        async def event_names() -> set[str]:
            response = await client.request(
                "POST", "/events/filter", json={"filter": query.model_dump(mode="json"), "limit": 50}
            )
            names = {e["event"] for e in response.json()["events"]}
            assert names >= wanted, sorted(names)
            return names

        # The server persists events a moment after they are sent.
        await eventually(event_names, message="the phase events")
