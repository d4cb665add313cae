"""`taskmark runs` and `taskmark trace`, read back from Prefect's real server after real runs.

Runs go through `taskmark run` (in this process, or in a child process that is killed) against
the fake OpenAI-compatible server, which counts every request; the commands then read the
runs back from the API, as a user would. `trace` shows the run's record: `--json` is the
record itself, as `taskmark.read_run` returns it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import taskmark
from support.fake_openai import FakeOpenAIServer, RecordedRequest, Reply
from support.prefect_stack import BIN, wait_for
from taskmark.cli import app

runner = CliRunner()
KEY = f"sk-canary-{uuid.uuid4().hex}"
DEFINITION = """# Two Steps

```yaml
name: NAME
retry: {maxAttempts: 3, backoffMs: 10}
requirements:
  topic: string
```

## Phase: Draft

### Steps
- agent: writer - Draft on {{ topic }}

## Phase: Polish
dependsOn: Draft

### Steps
- agent: writer - Polish {{ phases["Draft"] }}
"""
LOOP = """# Loop

```yaml
name: NAME
requirements:
  topic: string
```

## Phase: Loop

### Steps
- agent: writer - Draft on {{ topic }}
- validation: output.n > 100

### Outputs
- n: integer

### Critique
- agent: writer - Critique {{ output.n }}: {{ errors }}

### Refine
maxRefinements: 1

- agent: writer - Revise {{ output.n }} per {{ critique }}
"""
WITH_DOCUMENTS = """# Documents

```yaml
name: NAME
requirements:
  topic: string
```

## Phase: Answer
documents: docs/*.md
context: {budgetTokens: 400, retrieval: {k: 1}}

### Steps
- agent: writer - explain {{ topic }} and the moon
"""
STAGES = ["ingestion", "promptTemplating", "inference", "parsing", "integration"]
"""The stages a phase with one agent step and no outputs runs; the others are skipped."""
SKIPPED = "skipped: preProcessing, validateStructure, validateQuality, critique, refine, finalValidation"


@pytest.fixture
def project(
    tmp_path: Path, fake_llm: FakeOpenAIServer, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A definition with a name of its own (the server is shared by the session's tests)."""
    from prefect.settings import PREFECT_API_URL

    (tmp_path / "agents").mkdir()
    (tmp_path / "agents" / "writer.md").write_text("You write.\n")
    monkeypatch.setenv("PREFECT_API_URL", str(PREFECT_API_URL.value()))
    monkeypatch.setenv("TASKMARK_LLM_API_BASE", fake_llm.api_base)
    monkeypatch.setenv("TASKMARK_LLM_MODEL", "openai/fake-model")
    monkeypatch.setenv("TASKMARK_LLM_API_KEY", KEY)
    yield write(tmp_path, DEFINITION)


def write(folder: Path, text: str) -> Path:
    """``text`` as a definition in ``folder``, under a name of its own."""
    name = f"trace-{uuid.uuid4().hex[:8]}"
    path = folder / f"{name}.md"
    path.write_text(text.replace("NAME", name))
    return path


def name_of(project: Path) -> str:
    return project.stem


def run_once(project: Path, *, exit_code: int = 0) -> str:
    """Run the definition with `taskmark run --json`; its flow run id."""
    result = runner.invoke(app, ["run", str(project), "-p", "topic=tides", "--json"])
    assert result.exit_code == exit_code, result.output
    return str(json.loads(result.stdout)["flow_run_id"])


def trace_json(run_id: str, *options: str) -> dict[str, Any]:
    result = runner.invoke(app, ["trace", run_id, "--json", *options])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def trace_text(run_id: str, *options: str) -> str:
    result = runner.invoke(app, ["trace", run_id, *options])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    return result.stdout


def recorded(run_id: str) -> dict[str, Any]:
    """The run's record as the Python API reads it, as JSON."""
    return dict(json.loads(taskmark.read_run(run_id).model_dump_json()))


def answer_by_prompt(rules: dict[str, Reply], default: Reply) -> Any:
    def reply(request: RecordedRequest) -> Reply:
        prompt = request.messages[-1]["content"]
        return next((r for key, r in rules.items() if key in prompt), default)

    return reply


def test_trace_of_a_completed_run_with_a_retried_request_is_its_record(
    project: Path, fake_llm: FakeOpenAIServer
) -> None:
    fake_llm.push(Reply(status=429, headers={"Retry-After": "0"}, error_message="slow down"))
    run_id = run_once(project)

    record = trace_json(run_id)

    assert record == recorded(run_id)  # `--json` is the record, nothing else
    assert (record["run_id"], record["outcome"], record["definition"]["name"]) == (run_id, "completed", project.stem)
    assert [p["name"] for p in record["phases"]] == ["Draft", "Polish"]
    for phase in record["phases"]:
        assert phase["state"] == "completed"
        ran = [s for s in phase["stages"] if s["state"] != "skipped"]
        assert [s["name"] for s in ran] == STAGES
        assert all(s["state"] == "completed" and s["duration_s"] is not None for s in ran)
    (draft_call,), (polish_call,) = ([c for s in p["stages"] for c in s["calls"]] for p in record["phases"])
    assert (draft_call["agent"], draft_call["attempts"], draft_call["model"]) == ("writer", 2, "openai/fake-model")
    assert (draft_call["prompt_tokens"], draft_call["completion_tokens"]) == (11, 7)
    assert [(r["outcome"], r["status_code"]) for r in draft_call["requests"]] == [("failed", 429), ("answered", None)]
    assert polish_call["attempts"] == 1
    totals = record["totals"]
    assert totals["requests"] == fake_llm.count == 3
    assert (totals["calls"], totals["failed_calls"], totals["prompt_tokens"], totals["completion_tokens"]) == (
        2,
        0,
        22,
        14,
    )

    text = trace_text(run_id)
    assert f"{name_of(project)} ({run_id}) — completed in " in text
    assert "2 calls · 3 requests · 36 tokens (22 in, 14 out) · unpriced" in text  # fake-model has no price
    assert "writer — completed" in text
    assert "openai/fake-model · 2 requests · 1 failed (HTTP 429) · 18 tokens (11 in, 7 out)" in text
    assert all(f"{stage} — completed" in text for stage in STAGES)
    assert text.count(SKIPPED) == 2


def test_trace_of_a_failed_run_names_the_phase_stage_and_reason_without_secrets(
    project: Path, fake_llm: FakeOpenAIServer
) -> None:
    # The server echoes the key in its error, as some providers do; Polish's call fails after its retries.
    fake_llm.default = answer_by_prompt(
        {"Polish": Reply(status=503, error_message=f"overloaded for {KEY}")}, Reply(content="drafted")
    )
    run_id = run_once(project, exit_code=1)

    record = trace_json(run_id)
    text = trace_text(run_id)

    assert record == recorded(run_id) and record["outcome"] == "failed"
    draft, polish = record["phases"]
    assert draft["state"] == "completed" and polish["state"] == "failed"
    assert "phase 'Polish' failed in inference" in polish["error"]
    ran = [s for s in polish["stages"] if s["state"] != "skipped"]
    assert [(s["name"], s["state"]) for s in ran] == [
        ("ingestion", "completed"),
        ("promptTemplating", "completed"),
        ("inference", "failed"),
    ]
    [call] = ran[2]["calls"]
    assert (call["state"], call["status_code"], call["attempts"]) == ("failed", 503, 3)
    assert "overloaded for" in call["error"] and "gave up after 3 attempts" in call["error"]
    totals = record["totals"]
    assert (totals["calls"], totals["failed_calls"], totals["requests"]) == (1, 1, fake_llm.count) == (1, 1, 4)
    assert "— failed in " in text and "phase 'Polish' failed in inference" in text
    assert "writer — failed" in text and "gave up after 3 attempts" in text
    for output in (json.dumps(record), text):
        assert KEY not in output and KEY[3:] not in output


def test_trace_of_a_refine_loop_ending_at_its_limit_says_accepted_with_errors(
    project: Path, fake_llm: FakeOpenAIServer
) -> None:
    loop = write(project.parent, LOOP)
    fake_llm.default = answer_by_prompt(
        {"Critique": Reply(content="too small"), "Revise": Reply(content=json.dumps({"n": 3}))},
        Reply(content=json.dumps({"n": 1})),
    )
    run_id = run_once(loop)

    record = trace_json(run_id)
    text = trace_text(run_id)

    assert record == recorded(run_id) and record["outcome"] == "accepted_with_errors"
    [phase] = record["phases"]
    assert phase["state"] == "accepted_with_errors" and list(phase["failed_checks"]) == ["writer"]
    assert record["totals"]["requests"] == fake_llm.count == 3
    assert "— accepted with errors in " in text and "Loop — accepted with errors" in text
    assert "writer still fails: " in text and "output.n > 100" in text
    assert "writer — completed" in text and " · round 1 · " in text
    assert "critique — completed" in text and "refine — completed" in text


def test_trace_of_a_timed_out_run_is_its_record(project: Path, fake_llm: FakeOpenAIServer) -> None:
    never = threading.Event()  # Polish's request is answered only once the test is over

    def reply(request: RecordedRequest) -> Reply:
        if "Polish" in request.messages[-1]["content"]:
            never.wait(120)
        return Reply(content="drafted")

    fake_llm.default = reply
    slow = write(project.parent, DEFINITION.replace("retry:", "maxExecutionTime: 20s\nretry:"))
    try:
        run_id = run_once(slow, exit_code=1)
    finally:
        never.set()

    record = trace_json(run_id)
    text = trace_text(run_id)

    assert record == recorded(run_id) and record["outcome"] == "timed_out"
    assert [(p["name"], p["state"]) for p in record["phases"]] == [("Draft", "completed"), ("Polish", "timed_out")]
    assert record["phases"][0]["outputs"] == "drafted"  # the finished phase keeps its output
    assert record["totals"]["requests"] == 1  # Polish's request never came back
    assert "— timed out in " in text and "Polish — timed out" in text


def test_trace_of_a_retried_run_shows_each_attempt(project: Path, fake_llm: FakeOpenAIServer) -> None:
    fake_llm.default = answer_by_prompt({"Polish": Reply(status=400, error_message="bad")}, Reply(content="drafted"))
    run_id = run_once(project, exit_code=1)
    fake_llm.default = lambda _r: Reply(content="polished")
    retried = runner.invoke(app, ["retry", run_id, "--json"])
    assert retried.exit_code == 0, retried.output

    record = trace_json(run_id)
    text = trace_text(run_id)

    assert record == recorded(run_id)
    assert (record["outcome"], record["attempts"]) == ("completed", 2)
    assert [(p["name"], p["state"], p["run_attempt"]) for p in record["earlier"]] == [
        ("Draft", "completed", 1),
        ("Polish", "failed", 1),
    ]
    assert [(p["name"], p["state"], p["run_attempt"]) for p in record["phases"]] == [
        ("Draft", "completed", 2),
        ("Polish", "completed", 2),
    ]
    assert record["totals"]["requests"] == fake_llm.count == 3  # Draft's answer was reused, not asked again
    assert (record["totals"]["calls"], record["totals"]["failed_calls"], record["totals"]["cached_calls"]) == (2, 1, 1)
    first, second = text.index("attempt 1 · "), text.index("attempt 2 — completed · ")
    assert first < text.index("Polish — failed") < second < text.index("Polish — completed")
    assert "writer — completed" in text[second:] and "cached" in text[second:]


def test_trace_context_shows_what_each_call_sent_and_its_bundle(project: Path, fake_llm: FakeOpenAIServer) -> None:
    path = write(project.parent, WITH_DOCUMENTS)
    (project.parent / "docs").mkdir()
    (project.parent / "docs" / "tides.md").write_text("Tides rise twice a day. The moon pulls the sea.")
    (project.parent / "docs" / "bread.md").write_text("Sourdough needs a starter, flour and patience.")
    run_id = run_once(path)

    shown = trace_json(run_id, "--context")
    text = trace_text(run_id, "--context")

    assert set(shown) == {"record", "bundles"} and shown["record"] == recorded(run_id)
    [call] = [c for s in shown["record"]["phases"][0]["stages"] for c in s["calls"]]
    sent = json.dumps(fake_llm.requests[-1].messages, sort_keys=True, ensure_ascii=False).encode()
    assert call["messages_sha256"] == hashlib.sha256(sent).hexdigest()
    assert list(shown["bundles"]) == [call["context"]]
    bundle = shown["bundles"][call["context"]]
    assert [i["id"] for i in bundle["items"]] == ["doc:docs/tides.md"] and bundle["budget"] == 400
    assert "Tides rise twice a day" in bundle["items"][0]["text"]  # the text is there, as it was sent
    assert f"sent: temperature default · max_tokens default · messages sha256 {call['messages_sha256'][:12]}" in text
    assert f"context {call['context'][:12]} · " in text and "doc:docs/tides.md — document" in text
    assert "sent:" not in trace_text(run_id)


@pytest.mark.parametrize(("run_id", "message"), [(str(uuid.UUID(int=7)), "no such run"), ("not-a-run", "not a run id")])
def test_trace_of_an_unknown_run_exits_2(project: Path, run_id: str, message: str) -> None:
    result = runner.invoke(app, ["trace", run_id])
    assert result.exit_code == 2
    assert f"error: {run_id}: {message}" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("options", [[], ["--json"]])
def test_trace_of_a_run_without_a_record_says_an_older_taskmark_ran_it(project: Path, options: list[str]) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Completed

    @flow(name=f"older-{uuid.uuid4().hex[:8]}")
    def older() -> None:
        """A run as a taskmark older than the run record left it: a flow run, no record."""

    async def create() -> str:
        async with get_client() as client:
            run = await client.create_flow_run(older)
            await client.set_flow_run_state(run.id, Completed(), force=True)
            return str(run.id)

    run_id = asyncio.run(create())
    result = runner.invoke(app, ["trace", run_id, *options])
    assert result.exit_code == 1
    assert result.stderr == (
        f"Error: run {run_id} has no run record: it was recorded by a taskmark older than the run record\n"
    )
    assert result.stdout == ""


def test_trace_of_a_phase_subflow_id_shows_its_run(project: Path) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    run_id = run_once(project)

    async def phases() -> list[str]:
        async with get_client() as client:
            found = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[uuid.UUID(run_id)]))
            )
        return [str(r.id) for r in found]

    subflows = asyncio.run(phases())
    assert len(subflows) == 2
    assert all(trace_json(phase_id) == trace_json(run_id) for phase_id in subflows)


def _kill_mid_phase(project: Path, fake_llm: FakeOpenAIServer) -> str:
    """Start `taskmark run` in a child process, SIGKILL it while Draft's call waits; the run id."""
    fake_llm.default = lambda _r: Reply(content="late", delay_s=60)
    child = subprocess.Popen(
        [str(BIN / "taskmark"), "run", str(project), "-p", "topic=tides"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: fake_llm.count >= 1, "the child's first LLM request")
        listed = runner.invoke(app, ["runs", "--definition", name_of(project), "--json"])
        [run] = json.loads(listed.stdout)
        assert run["state"] == "RUNNING"

        def draft_running() -> bool:
            return bool(trace_json(run["id"])["phases"][0]["state"] == "running")

        wait_for(draft_running, "the record of the phase in flight")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    return str(run["id"])


@pytest.mark.parametrize("final", ["Crashed", "Cancelled"])
def test_trace_of_a_run_that_ended_abruptly_shows_where_it_stopped(
    project: Path, fake_llm: FakeOpenAIServer, final: str
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelled, Crashed

    run_id = _kill_mid_phase(project, fake_llm)

    async def end() -> None:
        # What Prefect's server does for a run whose process died (or an operator's cancel).
        state = (
            Crashed(message="the process was killed")
            if final == "Crashed"
            else Cancelled(message="cancelled by an operator")
        )
        async with get_client() as client:
            await client.set_flow_run_state(uuid.UUID(run_id), state, force=True)

    asyncio.run(end())
    record = trace_json(run_id)

    kind = final.lower()
    assert record == recorded(run_id)
    assert record["outcome"] == kind and record["error"] in ("the process was killed", "cancelled by an operator")
    assert [(p["name"], p["state"]) for p in record["phases"]] == [("Draft", kind), ("Polish", "not_run")]
    assert record["totals"]["requests"] == 0 and fake_llm.count == 1  # the request never came back
    text = trace_text(run_id)
    assert f"— {kind} in " in text and f"Draft — {kind}" in text and "Polish — not run" in text


@pytest.mark.slow
def test_runs_filters_by_definition_and_state_newest_first_within_limit(
    project: Path, fake_llm: FakeOpenAIServer
) -> None:
    ok_1 = run_once(project)
    fake_llm.default = lambda _r: Reply(status=400, error_message="bad prompt")
    failed = run_once(project, exit_code=1)
    fake_llm.default = lambda _r: Reply(content="fine")
    ok_2 = run_once(project)
    name = name_of(project)

    def ids(*args: str) -> list[str]:
        result = runner.invoke(app, ["runs", "--definition", name, *args, "--json"])
        assert result.exit_code == 0, result.output
        return [r["id"] for r in json.loads(result.stdout)]

    assert ids() == [ok_2, failed, ok_1]
    assert ids("--limit", "2") == [ok_2, failed]
    assert ids("--state", "failed") == [failed]
    assert ids("--state", "COMPLETED", "--state", "FAILED", "-n", "1") == [ok_2]
    assert ids("--state", "CRASHED") == []

    [latest] = json.loads(runner.invoke(app, ["runs", "-d", name, "-n", "1", "--json"]).stdout)
    assert set(latest) == {
        "id",
        "name",
        "definition",
        "state",
        "state_name",
        "outcome",
        "start",
        "duration_s",
        "calls",
        "failed_calls",
        "cost_usd",
        "unpriced_calls",
    }
    assert (latest["definition"], latest["state"], latest["outcome"], latest["calls"], latest["failed_calls"]) == (
        name,
        "COMPLETED",
        "completed",
        2,
        0,
    )
    assert latest["duration_s"] > 0 and latest["cost_usd"] == 0.0
    [bad] = json.loads(runner.invoke(app, ["runs", "-d", name, "-s", "FAILED", "--json"]).stdout)
    assert (bad["calls"], bad["failed_calls"]) == (0, 1)

    table = runner.invoke(app, ["runs", "--definition", name])
    assert table.exit_code == 0
    assert [line.split()[0] for line in table.stdout.splitlines()[1:]] == [ok_2, failed, ok_1]
    assert "completed" in table.stdout and "failed" in table.stdout and "(1 failed)" in table.stdout


def test_runs_rejects_an_unknown_state(project: Path) -> None:
    result = runner.invoke(app, ["runs", "--state", "FINISHED"])
    assert result.exit_code == 2
    assert "unknown state 'FINISHED'" in result.output
