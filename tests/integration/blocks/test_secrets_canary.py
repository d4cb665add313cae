"""The API key appears nowhere Prefect keeps things.

A canary key is planted (on a saved block, in its secret headers, and in
TASKMARK_LLM_API_KEY), calls that succeed and fail (permanently, and after retries; the
fake server even echoes the key back in its error messages) run inside a Prefect flow
with persisted results, and then every log, event, artifact, task and flow run state,
result file and the Prefect database file are searched for it. Each place is first shown
to be searchable: a harmless marker written there is found.
"""

from __future__ import annotations

import base64
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.events.filters import EventFilter, EventNameFilter, EventRelatedFilter
from prefect.settings import get_current_settings

from support.fake_openai import FakeOpenAIServer, Reply
from support.waiting import eventually
from taskmark.blocks import (
    LLM_REQUEST_CACHE,
    CallLabels,
    Completion,
    LLMProvider,
    Message,
    resolve_provider,
)
from taskmark.errors import ProviderError

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.asyncio(loop_scope="session")]

CANARY = f"sk-canary-{uuid.uuid4().hex}"
MARKER = f"marker-{uuid.uuid4().hex}"
BLOCK = f"canary-{uuid.uuid4().hex[:8]}"


@task(persist_result=True, cache_policy=LLM_REQUEST_CACHE)
async def infer(
    provider: LLMProvider, messages: list[Message], schema: Any = None, overrides: dict[str, Any] | None = None
) -> Completion:
    return await provider.acomplete(
        messages, labels=CallLabels(definition="canary", phase="P", stage="inference"), **(overrides or {})
    )


@task(persist_result=True)
async def infer_by_name(name: str, prompt: str) -> Completion:
    provider = await LLMProvider.aload(name)
    return await provider.acomplete([{"role": "user", "content": prompt}], max_retries=1)


@task(persist_result=True)
async def infer_resolved(prompt: str) -> Completion:
    provider = resolve_provider(None, model="canary-model")
    return await provider.acomplete([{"role": "user", "content": prompt}])


@task(persist_result=True)
async def marker_task() -> str:
    get_run_logger().info("log %s", MARKER)
    return f"result {MARKER}"


@flow(persist_result=True)
async def canary_flow(block_name: str) -> list[str]:
    rows: list[dict[str, Any]] = []  # a usage table, as a run's artifact has one
    outcomes: list[str] = []
    await marker_task()
    provider = await LLMProvider.aload(block_name)
    ok = await infer(provider, [{"role": "user", "content": "q1"}])
    rows.append({"phase": "P", "model": ok.model, "cost_usd": ok.cost_usd, **ok.usage.model_dump()})
    outcomes.append(ok.text)
    for prompt in ("permanent", "transient"):
        state = await infer_by_name(block_name, prompt, return_state=True)
        outcomes.append(state.type.value)
        rows.append({"phase": "P", "state": state.type.value, "message": state.message})  # the error, redacted
    resolved = await infer_resolved("via env")
    outcomes.append(resolved.text)
    await create_table_artifact(rows, key="canary-usage", description=f"usage {MARKER}")
    await create_markdown_artifact(f"answer: {ok.text} {MARKER}", key="canary-answer")
    get_run_logger().warning("done: %r", provider)
    raise ProviderError(f"final failure for the flow state ({len(outcomes)} outcomes)")


def _script(fake: FakeOpenAIServer) -> None:
    def reply(request: Any) -> Reply:
        prompt = request.messages[-1]["content"]
        if prompt == "permanent":
            return Reply(
                status=401, error_message=f"Incorrect API key provided: {CANARY}", error_code="invalid_api_key"
            )
        if prompt == "transient":
            return Reply(status=503, error_message=f"overloaded for key {CANARY}")
        return Reply(content=f"answer to {prompt}")

    fake.default = reply


def _decoded_variants(blob: bytes) -> list[bytes]:
    """The blob, decoded from base64 if it is (Prefect stores pickled results so), plus any
    base64 payloads inside JSON (result records with metadata)."""
    out = [blob]
    try:
        out.append(base64.decodebytes(blob))
    except ValueError:
        pass
    try:
        document = json.loads(blob)
    except ValueError:
        return out
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and len(item) > 16:
            try:
                out.append(base64.decodebytes(item.encode()))
            except ValueError:
                pass
    return out


def _files_containing(root: Path, needle: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and any(needle.encode() in v for v in _decoded_variants(path.read_bytes())):
            hits.append(str(path))
    return hits


async def test_the_canary_key_is_found_nowhere(
    fake_llm: FakeOpenAIServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _script(fake_llm)
    block = LLMProvider(
        model="openai/canary-model",
        api_base=fake_llm.api_base,
        api_key=CANARY,
        extra_headers={"X-Api-Key": CANARY},
        retry_backoff_s=0.001,
        max_retries=2,
    )
    await block.save(BLOCK, overwrite=True)
    monkeypatch.setenv("TASKMARK_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("TASKMARK_LLM_API_KEY", CANARY)

    state = await canary_flow(BLOCK, return_state=True)
    assert state.is_failed()
    with pytest.raises(ProviderError) as raised:
        await state.result()
    flow_run_id = state.state_details.flow_run_id

    # The key was really used, and the server really echoed it back in its errors.
    auth = {r.headers.get("authorization") for r in fake_llm.requests}
    assert f"Bearer {CANARY}" in auth
    assert any(r.headers.get("x-api-key") == CANARY for r in fake_llm.requests)
    assert fake_llm.count == 1 + 1 + 2 + 1  # ok; 401 once; 503 twice (max_retries=1); resolved

    async with get_client() as client:
        logs = await _logs(client, flow_run_id)
        task_runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        flow_run = await client.read_flow_run(flow_run_id)
        artifacts = await client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
        events = await _taskmark_events(client, flow_run_id)
        block_doc = await client.read_block_document_by_name(BLOCK, "llm-provider", include_secrets=False)
        await client.delete_block_document(block_doc.id)

    log_text = "\n".join(log.message for log in logs)
    states_text = (
        "\n".join(
            f"{tr.name} {tr.state.type if tr.state else ''} {tr.state.message if tr.state else ''}" for tr in task_runs
        )
        + f"\n{flow_run.state.message if flow_run.state else ''} {flow_run.model_dump_json()}"
    )
    artifacts_text = "\n".join(a.model_dump_json() for a in artifacts)
    events_text = "\n".join(e.model_dump_json() for e in events)
    settings = get_current_settings()
    storage = Path(settings.results.local_storage_path)
    db_url = str(
        settings.server.database.connection_url.get_secret_value()
        if hasattr(settings.server.database.connection_url, "get_secret_value")
        else settings.server.database.connection_url
    )
    db_file = Path(db_url.split("///", 1)[1])
    db_bytes = b"".join(p.read_bytes() for p in db_file.parent.glob(db_file.name + "*"))
    local_text = caplog.text + "".join(capsys.readouterr()) + str(raised.value) + repr(raised.value)

    # Every place is searchable: the marker (or the calls' own traces) is found there.
    assert MARKER in log_text and "LLM attempt" in log_text and "HTTP 401, permanent" in log_text
    assert "HTTP 503, transient" in states_text and "HTTP 401, permanent" in states_text
    assert MARKER in artifacts_text
    assert {e.event for e in events} >= {"taskmark.llm.completed", "taskmark.llm.failed"}
    assert _files_containing(storage, MARKER), f"no persisted result found under {storage}"
    assert _files_containing(storage, "answer to q1"), "the completion was not persisted"
    assert MARKER.encode() in db_bytes and b"taskmark.llm.failed" in db_bytes

    # ...and the canary is in none of them.
    assert CANARY not in log_text
    assert CANARY not in states_text
    assert CANARY not in artifacts_text
    assert CANARY not in events_text
    assert CANARY not in block_doc.model_dump_json()
    assert _files_containing(storage, CANARY) == []
    assert CANARY.encode() not in db_bytes
    assert CANARY not in local_text


async def _taskmark_events(client: Any, flow_run_id: Any) -> list[Any]:
    """This flow run's taskmark.llm events, once both kinds are in (events reach the database
    asynchronously); other tests' events on the shared server are left out."""
    query = EventFilter(
        event=EventNameFilter(prefix=["taskmark.llm."]),
        related=EventRelatedFilter(id=[f"prefect.flow-run.{flow_run_id}"]),
    )

    async def both_kinds() -> list[Any]:
        page = await client.read_events(filter=query, limit=50)
        names = {e.event for e in page.events}
        assert {"taskmark.llm.completed", "taskmark.llm.failed"} <= names, sorted(names)
        return list(page.events)

    return list(await eventually(both_kinds, interval=0.2, message="the taskmark.llm events"))


async def _logs(client: Any, flow_run_id: Any) -> list[Any]:
    """The flow run's logs, once the task runs' lines are in (logs, too, are written in batches)."""
    log_filter = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))

    async def task_lines() -> list[Any]:
        logs = await client.read_logs(log_filter=log_filter, limit=200)
        messages = [log.message for log in logs]
        assert any("gave up after" in m for m in messages) and any("done:" in m for m in messages), messages
        return list(logs)

    return list(await eventually(task_lines, interval=0.2, message="the flow run's log lines"))
